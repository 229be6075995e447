"""GPU checks (skipped without CUDA; bench/gpu.sh runs them on the GPU machine)."""

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from negspace import Recommender
from negspace.samplers import PopularitySampler, TwoStageSampler, UniformSampler
from negspace.samplers.device import device_sampler
from negspace.samplers.popularity import popularity_weights
from negspace.training.checkpoint import load_checkpoint, save_checkpoint
from negspace.training.device import cuda_available

from .conftest import random_interactions
from .training.test_device import CASES, OPTIONS, _trainer

pytestmark = pytest.mark.skipif(not cuda_available(), reason="no CUDA device")
CUDA = torch.device("cuda")


def _frame(seed: int = 0) -> pd.DataFrame:
    inter = random_interactions(n_users=80, n_items=60, seed=seed)
    users, items = inter.pairs()
    return pd.DataFrame({"user": users, "item": items})


@pytest.mark.parametrize("case", list(CASES))
def test_device_steps_never_wait_for_the_gpu(case):
    inter = random_interactions(n_users=30, n_items=50, seed=3)
    model, sampler, objective = CASES[case](inter)
    from negspace.training.trainer import Trainer, TrainerOptions
    trainer = Trainer(model.to(CUDA), sampler, objective, inter,
                      TrainerOptions(batch_size=16, negatives=5, epochs=1, lr=0.01, progress=False,
                                     **OPTIONS.get(case, {})))
    assert trainer.device_step is not None
    trainer.device_step.sync_every = 10 ** 9
    users, items = trainer.users[:16], trainer.items[:16]
    trainer.step(users, items)  # lazy state first
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            trainer.step(users, items)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert np.isfinite(trainer.device_step.flush())


@pytest.mark.parametrize("case", list(CASES))
def test_trains_on_the_gpu_and_checkpoints_load_on_the_cpu(case, tmp_path):
    inter = random_interactions(n_users=30, n_items=50, seed=3)
    trainer = _trainer(case, inter, epochs=1, device_step=None)
    trainer.model.to(CUDA)
    from negspace.training.trainer import Trainer
    trainer = Trainer(trainer.model, trainer.sampler, trainer.objective, inter, trainer.opt,
                      trainer.validation)
    trainer.fit()
    save_checkpoint(tmp_path / "c.pt", trainer.state())
    state = load_checkpoint(tmp_path / "c.pt")  # map_location cpu
    cpu = _trainer(case, inter, epochs=1, device_step=False)
    cpu.model.load_state_dict(state["model"])
    for a, b in zip(cpu.model.state_dict().values(), trainer.model.state_dict().values()):
        assert torch.equal(a, b.cpu())


def test_recommender_trained_on_gpu_serves_on_cpu(tmp_path):
    df = _frame()
    rec = Recommender("cml", dim=8, epochs=2, validation=0, progress=False, device="cuda").fit(df)
    top = rec.recommend([1, 2], k=5)
    rec.save(tmp_path / "run")
    cpu = Recommender.load(tmp_path / "run", device="cpu")
    got = cpu.recommend([1, 2], k=5)
    assert (got.item.values == top.item.values).mean() > 0.9  # ties may order differently


@pytest.mark.parametrize("host", [UniformSampler(seed=1), PopularitySampler(beta=0.8, seed=1),
                                  TwoStageSampler(n_candidates=15, seed=1)], ids=lambda s: s.name)
def test_device_draws_are_never_positives(host):
    from negspace.models import CML
    inter = random_interactions()
    host.fit(inter)
    ds = device_sampler(host, CUDA)
    model = CML(inter.n_users, inter.n_items, 8).to(CUDA)
    users, items = inter.pairs()
    out = ds.sample(torch.from_numpy(users).to(CUDA), torch.from_numpy(items).to(CUDA), 5, model)
    out = out.cpu().numpy()
    assert not inter.contains(np.repeat(users, 5), out.ravel()).any()


def test_popularity_law_on_the_gpu():
    inter = random_interactions()
    ds = device_sampler(PopularitySampler(beta=1.0, seed=3).fit(inter), CUDA)
    user = 5
    draws = ds.sample(torch.full((30000,), user, device=CUDA), torch.zeros(30000, dtype=torch.long,
                                                                           device=CUDA), 1)
    draws = draws.cpu().numpy().ravel()
    w = popularity_weights(inter, 1.0)
    w[inter.contains(np.full(inter.n_items, user), np.arange(inter.n_items))] = 0
    obs = np.bincount(draws, minlength=inter.n_items)
    support = w > 0
    assert obs[~support].sum() == 0
    assert stats.chisquare(obs[support], w[support] / w.sum() * len(draws)).pvalue > 1e-3


def test_deterministic_runs_repeat_and_bf16_two_tower_trains():
    df = _frame(1)
    a, b = (Recommender("cml", dim=8, epochs=2, validation=0, progress=False, device="cuda",
                        deterministic=True).fit(df) for _ in range(2))
    assert torch.equal(a.item_vectors, b.item_vectors)
    tt = Recommender("two-tower", sampler="in-batch", dim=8, epochs=2, validation=0,
                     progress=False, device="cuda", precision="bf16").fit(df)
    assert torch.isfinite(tt.item_vectors).all() and tt.item_vectors.dtype == torch.float32
