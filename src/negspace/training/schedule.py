"""Plateau learning-rate decay with best-weights reload, and early stopping counted in decays."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

SCHEDULES = ("plateau", "none")


@dataclass(frozen=True)
class Decision:
    """What follows one epoch under a PlateauSchedule (`PlateauSchedule.decide`).

    Args:
        improved: the validation is the new best (keep these weights).
        decay: reload the best weights and decay the rate.
        stop: the schedule ends training here (a caller's minimum of epochs may still hold it).
        stale: consecutive validations without improvement, this epoch's included.
    """

    improved: bool
    decay: bool
    stop: bool
    stale: int


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

    @classmethod
    def for_rate(cls, kind: str, lr: float, decay: float, floor: float, max_decays: int = 0,
                 patience: int = 3, min_gain: float = 1e-4) -> "PlateauSchedule":
        """The schedule of a run that starts at rate `lr`, its floor raised by `max_decays`.

        Args:
            kind: "plateau" or "none".
            lr: the run's first learning rate.
            decay: factor of one decay.
            floor: the lowest rate (--lr-floor).
            max_decays: with > 0, the rate after that many decays is the floor when higher
                (`floor_after`); 0: `floor` alone.
            patience: consecutive validations without improvement that end training.
            min_gain: relative gain over the best score that counts as an improvement.

        Returns:
            The schedule, whose `floor` is the one `scale_lr` and `should_stop` read.
        """
        return cls(kind, decay, floor_after(lr, decay, floor, max_decays), patience, min_gain)

    def decide(self, score: float | None, best: float, stale: int, lr: float,
               last: bool = False) -> Decision:
        """Improve, decay or stop after an epoch: the one decision the trainer acts on and
        bench/research/stop_replay.py replays.

        Args:
            score: this epoch's validation score; None where the epoch was not validated (the
                count of stale validations stays, and only `should_stop` on it applies).
            best: the best validation score so far (-inf before the first).
            stale: consecutive validations without improvement before this epoch.
            lr: the rate this epoch trained at.
            last: the run's last epoch (no decay: nothing would train at the new rate).

        Returns:
            The Decision, with the new count of stale validations.
        """
        improved = score is not None and self.improves(score, best)
        if score is not None:
            stale = 0 if improved else stale + 1
        stop = self.should_stop(stale, lr)
        # no decay where training stops anyway (the rate is at the floor)
        decay = score is not None and not last and self.decays_now(stale) and not stop
        return Decision(improved, decay, stop, stale)

    def improves(self, score: float, best: float) -> bool:
        """Whether `score` beats `best` by more than `min_gain` (relative; 1e-4): gains below that (a tiny
        learning rate's drift) would otherwise hold training open without changing anything."""
        return best == float("-inf") or score > best + self.min_gain * abs(best)

    def should_stop(self, stale: int, lr: float) -> bool:
        """Whether training ends after `stale` consecutive validations without improvement."""
        if stale >= self.patience:
            return True
        # (a relative tolerance: 1e-2 x 0.1^4 is 1.0000000000000002e-06, one ulp above 1e-6)
        return self.kind == "plateau" and stale > 0 and lr <= self.floor * (1 + 1e-9)

    def decays_now(self, stale: int) -> bool:
        """Whether this validation (the `stale`-th without improvement) decays the rate."""
        return self.kind == "plateau" and stale > 0


def floor_after(lr: float, decay: float, floor: float, max_decays: int) -> float:
    """The plateau schedule's floor: `floor`, or with `max_decays` > 0 the rate after that many
    decays of `lr` when that is higher (reaching it, the next validation without improvement
    ends training).

    Why: after two decays of the default recipe's rate (1e-2 to 1e-4) the validated best moved by
    at most 0.04% on six curves (ML-1M, gowalla-lightgcn, the Amazon sets, the 8M-pair synthetic
    set), while the epochs spent there until patience ran out were 12% to 23% of the run's time
    (docs/results.md, "Schedules").
    """
    return max(floor, lr * decay ** max_decays) if max_decays > 0 else floor


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


def kept_epochs(history: list[dict], key: str, best_epoch: int, plateau: bool) -> list[dict]:
    """The epochs whose updates the best weights hold: those the refit must repeat.

    Without a plateau schedule that is every epoch up to the best one. With it, every validation
    that does not improve reloads the best weights before training on (training/schedule.py),
    so the epochs since the last improvement are thrown away: only the runs of epochs that end
    in an improving validation are kept.

    Args:
        history: the trial's rows, in order.
        key: the validation column (val_<metric>).
        best_epoch: the epoch of the best validation.
        plateau: whether the trial ran with the plateau schedule.

    Returns:
        The kept rows (their `lr` is the rate each was trained at, when recorded).
    """
    rows = [r for r in history if r["epoch"] <= best_epoch]
    if not plateau:
        return rows
    kept, pending, best = [], [], float("-inf")
    for r in rows:
        pending.append(r)
        if key in r:
            if r[key] > best:
                best, kept = r[key], kept + pending
            pending = []
    return kept


def replayed_decays(lrs: list[Any], decay: float) -> dict[str, Any]:
    """The refit's schedule: the decays of the best trial's kept epochs, replayed at the same
    epochs without validation (`lr_schedule = "steps"`); nothing when the rate never changed.

    Args:
        lrs: the rate each kept epoch was trained at (None where not recorded).
        decay: the factor of one decay.

    Returns:
        {"lr_schedule": "steps", "lr_steps": "e1,e2,..."} or {}.
    """
    steps: list[int] = []
    for epoch in range(1, len(lrs)):
        before, after = lrs[epoch - 1], lrs[epoch]
        if before and after and after < before and 0 < decay < 1:
            times = max(1, round(math.log(before / after) / math.log(1 / decay)))
            steps += [epoch] * times
    if not steps:
        return {}
    return {"lr_schedule": "steps", "lr_steps": ",".join(str(e) for e in steps)}


def refit_plan(history: list[dict], key: str, best_epoch: int, plateau: bool,
               decay: float) -> dict[str, Any]:
    """How to retrain on all the training data what a validated run chose: the epochs its best
    weights hold, with its decays replayed at the same epochs (the tuner's refit, `--refit`).

    Args:
        history: the validated run's rows, in order.
        key: the validation column (val_<metric>).
        best_epoch: the epoch of the best validation.
        plateau: whether that run had the plateau schedule.
        decay: the factor of one decay.

    Returns:
        {"epochs": n} plus {"lr_schedule": "steps", "lr_steps": ...} when the rate changed.
    """
    chain = kept_epochs(history, key, best_epoch, plateau)
    return {"epochs": max(1, len(chain)), **replayed_decays([r.get("lr") for r in chain], decay)}


__all__ = ["Decision", "PlateauSchedule", "SCHEDULES", "current_lr", "kept_epochs", "refit_plan",
           "replayed_decays", "scale_lr"]
