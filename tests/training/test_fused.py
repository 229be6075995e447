"""The hand-written CML step (training/fused.py) against the autograd step it replaces."""


import pytest
import torch

from negspace.data.loaders import load_dataset
from negspace.pipeline.build import build_model, build_objective, build_sampler
from negspace.pipeline.fit import split_for
from negspace.models.cml import CML
from negspace.models.mf import MF
from negspace.training import kernels
from negspace.config import make_config
from negspace.training.fused import CMLTripletStep
from negspace.training.objective import Objective
from negspace.training.optim import RowAdam, sum_rows
from negspace.training.trainer import Trainer, TrainerOptions

OBJECTIVES = {
    "plain": Objective(),
    "margin and GOR": Objective(margin=0.5, gor_weight=1.0),
    "rank weight and GOR": Objective(rank_weight=True, gor_weight=0.1),
    "all hinges active": Objective(margin=4.0, gor_weight=0.01),
}


def _batch(n_users, n_items, b=64, n=5, seed=0):
    gen = torch.Generator().manual_seed(seed)  # small tables: rows repeat within the batch
    return (torch.randint(n_users, (b,), generator=gen), torch.randint(n_items, (b,), generator=gen),
            torch.randint(n_items, (b, n), generator=gen))


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_loss_and_gradients_equal_autograd(name):
    torch.manual_seed(1)
    model, objective = CML(30, 40, 8), OBJECTIVES[name]
    users, items, negatives = _batch(30, 40)
    loss = objective(model, users, items, negatives)
    loss.backward()
    step = CMLTripletStep(model, objective, RowAdam(model.parameters()))
    mine, (g_u, g_p, g_n) = step.loss_and_grads(users, items, negatives)
    assert mine.item() == pytest.approx(loss.item(), rel=1e-5)
    assert 0 < loss.item()
    for weight, ids, grads in ((model.users.weight, users, g_u),
                               (model.items.weight, torch.cat([items, negatives.reshape(-1)]),
                                torch.cat([g_p, g_n]))):
        ref = weight.grad.coalesce()
        rows, summed = sum_rows(ids, grads)
        assert torch.equal(rows, ref.indices()[0])
        torch.testing.assert_close(summed, ref.values(), rtol=1e-4, atol=1e-6)
        assert summed.abs().max() > 0


def _trainer(toy_csv, fused, compiled=None, **options):
    cfg = make_config({**dict(dataset=str(toy_csv), model="cml", dim=8, batch_size=16,
                              negatives=3, lr=0.01, seed=3, progress=False, validation=0.0),
                       **options})
    train, _ = split_for(cfg, load_dataset(cfg.dataset))
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, train.n_users, train.n_items, history=train)
    opts = TrainerOptions(batch_size=cfg.batch_size, negatives=cfg.negatives, epochs=2,
                          lr=cfg.lr, seed=cfg.seed, progress=False, fused=fused)
    trainer = Trainer(model, build_sampler(cfg), build_objective(cfg), train, opts, None)
    if trainer.fused is not None and compiled is not None:
        trainer.fused.compiled = compiled
    return trainer


@pytest.mark.parametrize("compiled", [False, pytest.param(True, marks=pytest.mark.skipif(
    not kernels.AVAILABLE, reason="numba (the fast extra) missing"))])
@pytest.mark.parametrize("options", [dict(sampler="uniform", gor_weight=1.0),
                                     dict(sampler="two-stage", gor_weight=1.0),
                                     dict(sampler="popularity", rank_weight=True)])
def test_training_runs_agree(toy_csv, options, compiled):
    runs = []
    for fused in (False, True):
        trainer = _trainer(toy_csv, fused, compiled, **options)
        assert (trainer.fused is not None) == fused
        trainer.fit()
        runs.append(trainer)
    plain, fused = runs
    for a, b in zip(plain.model.parameters(), fused.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for a, b in zip(plain.result.history, fused.result.history):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    # the optimiser's state is the one a checkpoint saves, in the same layout
    sa, sb = plain.optimizer.state_dict(), fused.optimizer.state_dict()
    assert [s["state"][0]["step"] for s in sa] == [s["state"][0]["step"] for s in sb]


@pytest.mark.parametrize("options", [dict(norm="ball"), dict(cov_weight=1.0), dict(l2_weight=0.1),
                                     dict(loss="bpr"), dict(sampler="in-batch", loss="softmax"),
                                     dict(model="mf"), dict(loss="mml", negative_mode="shared")])
def test_other_set_ups_keep_the_autograd_step(toy_csv, options):
    assert _trainer(toy_csv, True, **options).fused is None


def test_applies_to_the_exact_class_only():
    class Sub(CML):  # a subclass may change the vectors: the closed form would not follow
        pass
    opt = RowAdam(CML(3, 3, 2).parameters())
    assert CMLTripletStep.applies(CML(3, 3, 2), Objective(), build_sampler(make_config({})), opt)
    assert not CMLTripletStep.applies(Sub(3, 3, 2), Objective(), build_sampler(make_config({})), opt)
    assert not CMLTripletStep.applies(MF(3, 3, 2), Objective(), build_sampler(make_config({})), opt)
    assert not CMLTripletStep.applies(CML(3, 3, 2), Objective(), build_sampler(make_config({})), None)
