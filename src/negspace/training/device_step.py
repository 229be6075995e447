"""The training step on an accelerator: the batch, its negatives (samplers/device.py), the loss,
the update and the memory bank all stay on the device, and nothing waits on the host per step:
the losses are summed on the device and read (and checked for NaN or inf) every `sync_every`
steps and at checkpoints and epoch ends. The CPU keeps Trainer.step, bit for bit.

On CUDA the numba kernels do not apply; CML's hand-written step runs as torch operations there,
and every other model takes the autograd step. With `--precision bf16` the two-tower model's
forward (its MLPs and scores) runs under bfloat16 autocast; tables, optimiser state and the loss
stay float32.
"""

from __future__ import annotations

from typing import Any

import torch

from negspace.errors import NegspaceError
from negspace.models.two_tower import TwoTower
from negspace.registry import LossFamily
from negspace.samplers.base import SamplerKind
from negspace.samplers.device import DeviceSampler, device_sampler
from negspace.samplers.in_batch import positive_rows
from negspace.training.device import autocast, model_device

# `trainer` below is the Trainer (training/trainer.py) that builds this step.
Trainer = Any


class DeviceStep:
    """Trainer.step for a model on an accelerator (or on the CPU when asked, for tests).

    Args:
        trainer: the trainer (its model, objective, optimiser, host sampler and options).
        sampler: the device version of the trainer's sampler.
        precision: "fp32", "bf16" or "tf32" (see training/device.py).
        sync_every: read the summed loss every this many steps.
    """

    def __init__(self, trainer: Trainer, sampler: DeviceSampler, precision: str = "fp32",
                 sync_every: int = 100) -> None:
        self.trainer, self.sampler = trainer, sampler
        self.device = model_device(trainer.model)
        self.precision, self.sync_every = precision, max(1, sync_every)
        self.cast = isinstance(trainer.model, TwoTower)  # bf16 for the towers' MLPs and scores
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.pending = 0
        if trainer.fused is not None:  # the numba kernels read host memory
            trainer.fused.compiled = False

    @staticmethod
    def build(trainer: Trainer, precision: str = "fp32", force: bool | None = None,
              sync_every: int = 100) -> "DeviceStep | None":
        """A DeviceStep when the model is off the CPU (or `force`), else None."""
        device = model_device(trainer.model)
        if not (force or (force is None and device.type != "cpu")):
            return None
        sampler = device_sampler(trainer.sampler, device)
        if sampler is None:
            raise NegspaceError(f"the {trainer.sampler.name} sampler runs on the CPU only; "
                                f"use --device cpu")
        return DeviceStep(trainer, sampler, precision, sync_every)

    def __call__(self, users: torch.Tensor, items: torch.Tensor) -> float:
        """One update on the batch; returns 0.0 (the loss is summed on the device, see flush)."""
        t = self.trainer
        model, objective, n = t.model, t.objective, t.opt.negatives
        host_users = users
        users = users.to(self.device, non_blocking=True)
        items = items.to(self.device, non_blocking=True)
        ds, update, enqueue = self.sampler, None, False
        with autocast(self.device, self.precision if self.cast else "fp32"):
            if t.opt.batch_by == "user":  # the multinomial likelihood over the catalogue
                rows, cols = positive_rows(t.train, host_users)  # from the host CSR, copied over
                sample = ds.draw_items(n)  # None: the exact sum
                loss = objective.multinomial(model, users, (rows.to(self.device, non_blocking=True),
                                                            cols.to(self.device, non_blocking=True)),
                                             sample)
            elif t.sampler.kind is SamplerKind.CANDIDATES:
                cands = ds.candidates(users, items, n)
                neg = ds.sample(users, items, n, model) if objective.family is LossFamily.HINGE else None
                loss = objective.with_candidates(model, users, items, cands, neg)
                enqueue = True
            elif t.sampler.kind is SamplerKind.SHARED:
                neg, keep = ds.sample_shared(users, items, n)
                loss = objective(model, users, items, neg, keep)
            else:
                neg = ds.sample(users, items, n, model)
                if t.fused is not None:
                    loss, update = t.fused(users, items, neg)
                else:
                    loss = objective(model, users, items, neg)
        loss = loss.float()
        if enqueue:  # after the loss, before the update: the vectors this step's loss saw
            with torch.no_grad():
                ds.enqueue(items, model.item_vectors(items))
        if update is not None:
            update()
        else:
            t.optimizer.zero_grad()
            loss.backward()
            t.optimizer.step()
        if t.drift is not None:
            t.drift.record(model)
        self.loss_sum += loss.detach()
        self.pending += 1
        if self.pending % self.sync_every == 0:
            self._check()
        return 0.0

    def _check(self) -> None:
        if not torch.isfinite(self.loss_sum):
            t = self.trainer
            raise t._diverged(f"the loss became non-finite within steps {t.global_step - self.pending + 2} "
                              f"to {t.global_step + 1} of the run (checked every {self.sync_every} "
                              f"steps on {self.device})")

    def flush(self) -> float:
        """The losses summed since the last flush (checked finite), and a fresh sum."""
        if not self.pending:
            return 0.0
        self._check()
        value = float(self.loss_sum)
        self.loss_sum.zero_()
        self.pending = 0
        return value

    def state_dict(self) -> dict[str, Any]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state)


__all__ = ["DeviceStep"]
