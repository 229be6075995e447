"""The contract every registered model x sampler x loss combination keeps (implicit-style: one
test run over every implementation the registry allows, on the CPU and, where CUDA is present,
on the GPU): it trains, a run resumed from a mid-epoch state ends bit for bit where the
uninterrupted one does, and the fitted Recommender saves, loads and recommends unseen items."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from negspace.api import Recommender
from negspace.config import make_config
from negspace.config.combinations import allowed_combinations
from negspace.config.schema import USER_BATCH_SAMPLERS
from negspace.pipeline.build import build_trainer
from negspace.training.options import TrainerOptions

from .conftest import random_interactions

COMBINATIONS = allowed_combinations()
# MF with the graph encoder (--layers): every sampler and loss it takes, once each
GRAPH = list({(c["sampler"], c["loss"]): {**c, "layers": 2}
              for c in COMBINATIONS if c["model"] == "mf"}.values())
# user batches (the multinomial likelihood): over the catalogue or estimated from uniform draws
USER_BATCHES = [{"model": model, "sampler": sampler, "loss": "softmax", "batch_by": "user", **extra}
                for model, extra in (("mf", {}), ("cml", {}), ("mf", {"layers": 2}))
                for sampler in USER_BATCH_SAMPLERS]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
SMALL = dict(dim=8, batch_size=48, negatives=4, bank_size=16, candidates=12, history_len=5,
             lr=0.01, seed=3, progress=False, threads=1, validation=0.0)


def _name(values: dict) -> str:
    return "-".join(str(v) for v in values.values())


@pytest.fixture(scope="module")
def toy():
    return random_interactions(n_users=30, n_items=45, density=0.15, seed=11, dense_user=False)


def _trainer(cfg, toy, device, checkpoint_every=0):
    options = TrainerOptions(batch_size=cfg.batch_size, negatives=cfg.negatives, epochs=2,
                             lr=cfg.lr, seed=cfg.seed, progress=False, prefetch=False,
                             batch_by=cfg.batch_by, checkpoint_every=checkpoint_every)
    return build_trainer(cfg, toy.n_users, toy.n_items, toy, None, options, torch.device(device))


def test_every_registered_name_is_covered():
    seen = {k: {c[k] for c in COMBINATIONS} for k in ("model", "sampler", "loss")}
    from negspace import registry
    assert seen == {"model": set(registry.MODELS), "sampler": set(registry.SAMPLERS),
                    "loss": set(registry.LOSSES)}
    # every model trains with every loss in some combination (simplex with its own ccl too)
    pairs = {(c["model"], c["loss"]) for c in COMBINATIONS}
    assert pairs == {(m, loss) for m in registry.MODELS for loss in registry.LOSSES}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("combo", COMBINATIONS + GRAPH + USER_BATCHES, ids=_name)
def test_trains_resumes_saves_loads_recommends(combo, device, toy, tmp_path):
    cfg = make_config({**SMALL, **combo, "device": device})
    reference = _trainer(cfg, toy, device)
    reference.fit()
    assert all(np.isfinite(row["loss"]) for row in reference.result.history)

    run = _trainer(cfg, toy, device, checkpoint_every=1)
    states = []
    run.opt.checkpoint = tmp_path / "unused.pt"
    run.save_checkpoint = lambda: states.append(copy.deepcopy(run.state()))
    run.fit()
    middle = [s for s in states if s["position"]["epoch"] == 2 and s["position"]["step"] > 0]
    resumed = _trainer(cfg, toy, device)
    resumed.load_state((middle or states)[0])
    resumed.fit()
    for a, b in zip(reference.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)

    users, items = toy.pairs()
    frame = pd.DataFrame({"user": toy.user_ids[users], "item": toy.item_ids[items]})
    rec = Recommender(**{**SMALL, **combo, "epochs": 1, "device": device}).fit(frame)
    loaded = Recommender.load(rec.save(tmp_path / "run"))
    user = toy.user_ids[users[0]]
    top = loaded.recommend([user], k=5)
    assert len(top) == 5
    assert not top.item.isin(frame.item[frame.user == user]).any()  # seen items filtered
    pd.testing.assert_frame_equal(top, rec.recommend([user], k=5))
