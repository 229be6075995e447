"""Item-embedding drift: how far the item tower's outputs move over 1, 5 and 10 steps.

Cross-batch negatives reuse item vectors computed up to M / B steps earlier; the CBNS paper
argues this is sound because, after a short warm-up, the vectors change little from step to step.
This meter measures that on a fixed sample of items.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch

from negspace.models.base import EmbeddingModel

LAGS = (1, 5, 10)


class DriftMeter:
    """Records the outputs of a fixed item sample after every step and accumulates, per lag k,
    sum_i ||v_i(t) - v_i(t - k)||_2 (the summed change over the sample) for each step t with a
    snapshot k steps back; `epoch_summary` returns the epoch's mean of each.

    Args:
        n_items: catalogue size.
        sample: number of items followed.
        seed: seeds the choice of items.
    """

    def __init__(self, n_items: int, sample: int = 256, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        chosen = rng.choice(n_items, size=min(sample, n_items), replace=False)
        self.items = torch.from_numpy(np.sort(chosen))
        self.snapshots: deque[torch.Tensor] = deque(maxlen=max(LAGS) + 1)
        self.sums = {k: 0.0 for k in LAGS}
        self.counts = {k: 0 for k in LAGS}

    def record(self, model: EmbeddingModel) -> None:
        """Takes the snapshot after a step (call it once per step)."""
        with torch.no_grad():
            device = next(model.parameters()).device
            if self.items.device != device:
                self.items = self.items.to(device)
            now = model.item_vectors(self.items).detach().float().clone()
        if self.snapshots and self.snapshots[0].device != now.device:  # resumed elsewhere
            self.snapshots = deque((v.to(now.device) for v in self.snapshots),
                                   maxlen=self.snapshots.maxlen)
        self.snapshots.append(now)
        for k in LAGS:
            if len(self.snapshots) > k:
                change = (now - self.snapshots[-1 - k]).norm(dim=1).sum()
                # on an accelerator the sums stay there (read once an epoch, not every step)
                self.sums[k] += float(change) if device.type == "cpu" else change.double()
                self.counts[k] += 1

    def epoch_summary(self) -> dict[str, float]:
        """{"drift_1": ..., "drift_5": ..., "drift_10": ...}: the epoch's mean summed change (NaN
        for a lag with no pair of snapshots yet); resets the sums, keeps the snapshots."""
        out = {f"drift_{k}": (float(self.sums[k]) / self.counts[k] if self.counts[k] else float("nan"))
               for k in LAGS}
        self.sums = {k: 0.0 for k in LAGS}
        self.counts = {k: 0 for k in LAGS}
        return out

    def state_dict(self) -> dict:
        return {"snapshots": list(self.snapshots), "sums": {k: float(v) for k, v in self.sums.items()},
                "counts": dict(self.counts)}

    def load_state_dict(self, state: dict) -> None:
        self.snapshots = deque(state["snapshots"], maxlen=max(LAGS) + 1)
        self.sums = {int(k): float(v) for k, v in state["sums"].items()}
        self.counts = {int(k): int(v) for k, v in state["counts"].items()}
