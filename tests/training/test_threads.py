"""Threads: by default training steps run on one torch thread while a background thread draws
each row's negatives, else on every usable core; validation and evaluation on the caller's count;
`threads` sets both."""

import pytest
import torch

from negspace.pipeline.fit import run_training
from negspace.training import trainer as trainer_module
from negspace.config import make_config
from negspace.training.trainer import usable_cores


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


ALL = "all usable cores"
CML = dict(model="cml")  # uniform per-row negatives, drawn in the background
FULL = dict(model="mf", loss="softmax", sampler="full", batch_by="user")  # no draw at all
SHARED = dict(model="mf", loss="softmax", sampler="uniform", negative_mode="shared", negatives=8)


@pytest.mark.parametrize("recipe, threads, in_steps, after", [
    (CML, None, 1, 2), (CML, 2, 2, 2), (CML, 1, 1, 1),
    (FULL, None, ALL, 2), (FULL, 1, 1, 1), (SHARED, None, ALL, 2), (SHARED, 1, 1, 1)])
def test_step_threads(toy_csv, monkeypatch, two_threads, recipe, threads, in_steps, after):
    in_steps = usable_cores() if in_steps == ALL else in_steps
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
    run_training(make_config(dict(dataset=str(toy_csv), dim=8, batch_size=32, epochs=2,
                                  progress=False, threads=threads, **recipe)))
    assert seen_steps == {in_steps}
    assert seen_validation == {after} and torch.get_num_threads() == after
