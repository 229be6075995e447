"""Threads: training steps on one torch thread by default, validation and evaluation on the
caller's count; `threads` sets both."""

import pytest
import torch

from negspace.pipeline.fit import run_training
from negspace.training import trainer as trainer_module
from negspace.config import make_config


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("threads, in_steps, after", [(None, 1, 2), (2, 2, 2), (1, 1, 1)])
def test_step_threads(toy_csv, monkeypatch, two_threads, threads, in_steps, after):
    seen_steps, seen_validation = set(), set()
    step, validate = trainer_module.Trainer.step, trainer_module.Trainer.validate

    def recording_step(self, users, items):
        seen_steps.add(torch.get_num_threads())
        return step(self, users, items)

    def recording_validate(self):
        seen_validation.add(torch.get_num_threads())
        return validate(self)
    monkeypatch.setattr(trainer_module.Trainer, "step", recording_step)
    monkeypatch.setattr(trainer_module.Trainer, "validate", recording_validate)
    run_training(make_config(dict(dataset=str(toy_csv), model="cml", dim=8, batch_size=32,
                                  epochs=2, progress=False, threads=threads)))
    assert seen_steps == {in_steps}
    assert seen_validation == {after} and torch.get_num_threads() == after
