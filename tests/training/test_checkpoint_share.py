"""Checkpoints that take long to write are spaced so that writing them stays near
checkpoint_share of the run; cheap ones are written at every epoch's end; the last epoch always
writes one."""

from __future__ import annotations

import types

import pytest
import torch

from negspace.models import MF
from negspace.samplers.uniform import UniformSampler
from negspace.training import trainer_state
from negspace.training.checkpoint import load_checkpoint
from negspace.training.objective import Objective
from negspace.training.trainer import Trainer, TrainerOptions

from ..conftest import random_interactions

EPOCH_S, WRITE_S = 80.0, 10.0  # the 8M-pair synthetic set's epoch and checkpoint, roughly


def _epochs_written(tmp_path, monkeypatch, share: float, write_s: float) -> list[int]:
    """Trains 8 epochs on a clock where an epoch takes EPOCH_S and a write `write_s`; returns
    the epochs whose end wrote a checkpoint."""
    clock = types.SimpleNamespace(now=0.0)
    monkeypatch.setattr(trainer_state, "time", types.SimpleNamespace(
        perf_counter=lambda: clock.now))
    written: list[int] = []
    save = trainer_state.save_checkpoint

    def timed_save(path, state):
        save(path, state)
        clock.now += write_s
        written.append(state["position"]["epoch"] - 1)  # the position is the next epoch's

    monkeypatch.setattr(trainer_state, "save_checkpoint", timed_save)

    def on_epoch(row):
        clock.now += EPOCH_S

    train = random_interactions(n_users=30, n_items=40, density=0.2, seed=1, dense_user=False)
    torch.manual_seed(0)
    opts = TrainerOptions(batch_size=64, negatives=2, epochs=8, lr=0.01, seed=1, progress=False,
                          prefetch=False, checkpoint=tmp_path / "checkpoint.pt",
                          checkpoint_share=share, on_epoch=on_epoch, lr_schedule="none")
    trainer = Trainer(MF(train.n_users, train.n_items, 8), UniformSampler(seed=0),
                      Objective(loss="bpr"), train, opts, None)
    trainer.fit()
    assert load_checkpoint(tmp_path / "checkpoint.pt")["position"]["finished"]
    return written


def test_slow_writes_are_spaced_to_their_share(tmp_path, monkeypatch):
    # 10 s a write at 5%: 200 s between writes, every third epoch of 80 s; the last one always
    assert _epochs_written(tmp_path, monkeypatch, 0.05, WRITE_S) == [1, 4, 7, 8]
    assert _epochs_written(tmp_path, monkeypatch, 0.25, WRITE_S) == [1, 2, 3, 4, 5, 6, 7, 8]


@pytest.mark.parametrize("share, write_s", [(0.0, WRITE_S), (0.05, 0.5)])
def test_cheap_writes_or_share_0_write_every_epoch(tmp_path, monkeypatch, share, write_s):
    assert _epochs_written(tmp_path, monkeypatch, share, write_s) == list(range(1, 9))
