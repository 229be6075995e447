"""The trainer's checkpointable state: what a checkpoint holds, loading it back, writing it, and
the errors that name the last good checkpoint (divergence, a stop signal). Mixed into
`training.trainer.Trainer`, whose attributes these methods read and set."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import torch

from negspace.errors import NegspaceError
from negspace.models.base import EmbeddingModel
from negspace.training.checkpoint import (TrainingInterrupted, restore_rng_states, rng_states,
                                          save_checkpoint)
from negspace.training.options import TrainResult

CHEAP_CHECKPOINT_S = 1.0  # writes faster than this happen at every epoch's end (checkpoint_due)


class TrainerCheckpoints:
    """`Trainer`'s state, checkpoints and the checks before each one (a mixin: the loop's
    attributes, `opt`, `model`, `optimizer`, `sampler`, `result`... are set by `Trainer`)."""

    def state(self) -> dict[str, Any]:
        """Everything the loop needs to continue from here, as plain containers."""
        r = self.result
        return {
            "fingerprint": self.opt.fingerprint,
            "position": {"epoch": self.epoch, "step": self.step_in_epoch,
                         "global_step": self.global_step, "finished": self.finished},
            "epoch_loss": self.epoch_loss, "epoch_seconds": self.epoch_seconds,
            "epoch_cpu": self.epoch_cpu,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            # a background draw of the next batch's negatives is not part of the state yet
            "sampler": (self._pending[3] if self._pending is not None
                        else self.sampler.state_dict()),
            **({"device_sampler": self.device_step.state_dict()}
               if self.device_step is not None else {}),
            "generator": self.gen.get_state(),
            "epoch_generator": self.epoch_gen_state, "rng": rng_states(),
            "result": {"history": r.history, "best_epoch": r.best_epoch,
                       "best_score": r.best_score, "train_seconds": r.train_seconds},
            "best_state": self.best_state, "stale": self.stale,
            **({"drift": self.drift.state_dict()} if self.drift is not None else {}),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Continues from `state()` of a trainer built with the same configuration and data."""
        if state.get("fingerprint") != self.opt.fingerprint:
            raise NegspaceError("the checkpoint was written by a run with other options or data")
        if self.dist is not None:  # this rank's own sampler and RNG states
            state = self.dist.local_state(state)
        self._drop_prefetch()
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.sampler.load_state_dict(state["sampler"])
            if self.device_step is not None and "device_sampler" in state:
                self.device_step.load_state_dict(state["device_sampler"])
            self.gen.set_state(state["generator"])
            pos = state["position"]
            self.epoch, self.step_in_epoch = pos["epoch"], pos["step"]
            self.global_step, self.finished = pos["global_step"], pos["finished"]
            self.epoch_loss, self.epoch_seconds = state["epoch_loss"], state["epoch_seconds"]
            self.epoch_cpu = state.get("epoch_cpu", 0.0)  # absent from older checkpoints
            self.epoch_gen_state = state["epoch_generator"]
            self.result = TrainResult(**state["result"])
            self.best_state, self.stale = state["best_state"], state["stale"]
            restore_rng_states(state["rng"])
            if self.drift is not None:
                self.drift.load_state_dict(state["drift"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise NegspaceError(f"the checkpoint does not fit this run ({type(e).__name__})") from None
        self.last_checkpoint = (self.epoch, self.step_in_epoch)

    def save_checkpoint(self) -> None:
        """Writes `state()` atomically; never a checkpoint holding non-finite parameters."""
        if self.device_step is not None:
            self.epoch_loss += self.device_step.flush()
        self._check_parameters()
        state = self.state() if self.dist is None else self.dist.gather_state(self.state())
        start = time.perf_counter()
        if state is not None:  # None: a rank other than 0, which does not write
            save_checkpoint(self.opt.checkpoint, state)
        self.last_checkpoint = (self.epoch, self.step_in_epoch)
        end = time.perf_counter()
        self.checkpoint_cost = (end - start, end)

    def checkpoint_due(self) -> bool:
        """Whether an epoch's end writes a checkpoint: always while writes take under a second;
        else once the seconds since the last write ended reach its cost / checkpoint_share, so
        writes stay near that share of the run (the 8M-pair synthetic set's checkpoint of
        weights, Adam moments and best weights is 1.6 GB, about 10 s, after epochs of 80)."""
        took, ended = self.checkpoint_cost
        share = self.opt.checkpoint_share
        return (share <= 0 or took < CHEAP_CHECKPOINT_S
                or (time.perf_counter() - ended) * share >= took)

    def _check_parameters(self) -> None:
        bad = first_non_finite(self.model)
        if bad is not None:
            raise self._diverged(f"parameter {bad} became non-finite by step "
                                 f"{self.global_step} of the run")

    def _diverged(self, what: str) -> NegspaceError:
        if self.last_checkpoint is not None:
            e, s = self.last_checkpoint
            kept = f"the last good checkpoint, {self.opt.checkpoint} (epoch {e}, after step {s}), is kept"
        else:
            kept = "no checkpoint had been written yet"
        return NegspaceError(f"training stopped: {what}; {kept}; lower --lr or check the data")

    def _interrupted(self, signum: int) -> TrainingInterrupted:
        return TrainingInterrupted(
            f"interrupted by {signal.Signals(signum).name} after step {self.global_step} of the "
            f"run; checkpoint saved to {self.opt.checkpoint}; continue with "
            f"`negspace train --resume {Path(self.opt.checkpoint).parent}`", signum)


def first_non_finite(model: EmbeddingModel) -> str | None:
    """Name of the first parameter holding a NaN or an infinity, None when all are finite."""
    with torch.no_grad():
        return next((name for name, p in model.named_parameters()
                     if not bool(torch.isfinite(p).all())), None)


def check_finite(model: EmbeddingModel) -> None:
    """Raises NegspaceError when a parameter holds a NaN or an infinity."""
    name = first_non_finite(model)
    if name is not None:
        raise NegspaceError(f"parameter {name} is not finite")

