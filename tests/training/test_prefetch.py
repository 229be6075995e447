"""Negatives drawn in a background thread (TrainerOptions.prefetch) give the same run, and a state
taken while a draw is pending continues bit for bit."""

import copy

import pytest
import torch

from negspace.pipeline.build import build_model, build_objective, build_sampler
from negspace.pipeline.fit import split_for
from negspace.data.loaders import load_dataset
from negspace.config import make_config
from negspace.training import trainer as trainer_module
from negspace.training.trainer import Trainer, TrainerOptions

CASES = {
    "uniform": dict(model="cml", sampler="uniform"),
    "popularity": dict(model="cml", sampler="popularity"),
    "shared": dict(model="mf", loss="mml", sampler="uniform", negative_mode="shared", negatives=20),
    "two-stage": dict(model="cml", sampler="two-stage"),  # reads the model: never prefetched
}


@pytest.fixture(autouse=True)
def two_cores(monkeypatch):
    """Prefetching needs a second core: these tests run as on a machine with two, whatever this
    one has (the draw thread still runs for real)."""
    monkeypatch.setattr(trainer_module, "usable_cores", lambda: 2)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _trainer(toy_csv, case, prefetch):
    cfg = make_config({**dict(dataset=str(toy_csv), dim=8, batch_size=16, negatives=3, lr=0.01,
                              seed=5, progress=False, validation=0.0), **CASES[case]})
    train, _ = split_for(cfg, load_dataset(cfg.dataset))
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, train.n_users, train.n_items, history=train)
    options = TrainerOptions(batch_size=cfg.batch_size, negatives=cfg.negatives, epochs=2,
                             lr=cfg.lr, seed=cfg.seed, progress=False, prefetch=prefetch)
    return Trainer(model, build_sampler(cfg), build_objective(cfg), train, options, None)


@pytest.mark.parametrize("case", list(CASES))
def test_prefetch_gives_the_same_run(toy_csv, case):
    runs = []
    for prefetch in (False, True):
        trainer = _trainer(toy_csv, case, prefetch)
        assert trainer.can_prefetch == (prefetch and case != "two-stage")
        calls = []
        draw = trainer._draw
        trainer._draw = lambda *a: calls.append(1) or draw(*a)
        trainer.fit()
        assert len(calls) == 2 * trainer.n_steps  # one draw per step, none twice
        runs.append([p.detach().clone() for p in trainer.model.parameters()]
                    + [trainer.result.history[-1]["loss"]])
    assert all(torch.equal(a, b) if torch.is_tensor(a) else a == b for a, b in zip(*runs))


def test_prefetch_needs_a_second_core(toy_csv, monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.setattr(trainer_module, "usable_cores", lambda: 1)
    assert not _trainer(toy_csv, "uniform", True).can_prefetch
    monkeypatch.setattr(trainer_module, "usable_cores", lambda: 2)
    assert _trainer(toy_csv, "uniform", True).can_prefetch  # one torch thread, one core to spare


@pytest.mark.parametrize("case", ["uniform", "shared"])
def test_state_with_a_pending_draw_resumes_bit_for_bit(toy_csv, case, tmp_path):
    reference = _trainer(toy_csv, case, True)
    reference.fit()
    # A run that checkpoints every 3 steps: each mid-epoch state is taken while the next batch's
    # draw is pending in the background.
    run = _trainer(toy_csv, case, True)
    run.opt.checkpoint, run.opt.checkpoint_every = tmp_path / "checkpoint.pt", 3
    states = []
    def save():
        if run.step_in_epoch not in (0, run.n_steps):
            assert run._pending is not None
        states.append(copy.deepcopy(run.state()))
    run.save_checkpoint = save
    run.fit()
    mid = [s for s in states if s["position"]["step"] not in (0, run.n_steps)]
    assert mid
    for a, b in zip(reference.model.parameters(), run.model.parameters()):
        assert torch.equal(a, b)  # taking the states changed nothing
    resumed = _trainer(toy_csv, case, True)
    resumed.load_state(mid[len(mid) // 2])
    resumed.fit()
    for a, b in zip(reference.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
