"""Plateau learning-rate decay with best-weights reload, and early stopping counted in decays."""

from __future__ import annotations

from dataclasses import dataclass

import torch

SCHEDULES = ("plateau", "none")


@dataclass
class PlateauSchedule:
    """What happens after a validation that does not improve on the best one so far.

    With `kind = "plateau"` (the recipe of SimpleX's published runs, RecZoo's training loop): the
    learning rate is multiplied by `decay` (never below `floor`) and the best validated weights are
    loaded back, so that the smaller steps continue from the best point rather than from the
    overshoot; training stops at the `patience`-th consecutive validation without improvement, or
    when the learning rate already sits at the floor. With `kind = "none"`: the learning rate stays
    and training stops after `patience` validations without improvement (plain early stopping).

    Args:
        kind: "plateau" or "none".
        decay: factor applied to the learning rate, in (0, 1].
        floor: the learning rate never goes below this.
        patience: consecutive validations without improvement that end training.
        min_gain: relative gain over the best score that counts as an improvement.
    """

    kind: str = "plateau"
    decay: float = 0.1
    floor: float = 1e-6
    patience: int = 3
    min_gain: float = 1e-4

    def improves(self, score: float, best: float) -> bool:
        """Whether `score` beats `best` by more than a relative 1e-4: gains below that (a tiny
        learning rate's drift) would otherwise hold training open without changing anything."""
        return best == float("-inf") or score > best + self.min_gain * abs(best)

    def should_stop(self, stale: int, lr: float) -> bool:
        """Whether training ends after `stale` consecutive validations without improvement."""
        if stale >= self.patience:
            return True
        return self.kind == "plateau" and stale > 0 and lr <= self.floor

    def decays_now(self, stale: int) -> bool:
        """Whether this validation (the `stale`-th without improvement) decays the rate."""
        return self.kind == "plateau" and stale > 0


def current_lr(optimizers: list[torch.optim.Optimizer]) -> float:
    """The learning rate of the first parameter group (all groups share one here)."""
    return float(optimizers[0].param_groups[0]["lr"])


def scale_lr(optimizers: list[torch.optim.Optimizer], factor: float, floor: float) -> float:
    """Multiplies every group's learning rate by `factor`, not below `floor`.

    Returns:
        The new learning rate of the first group.
    """
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = max(group["lr"] * factor, floor)
    return current_lr(optimizers)


__all__ = ["PlateauSchedule", "SCHEDULES", "current_lr", "scale_lr"]
