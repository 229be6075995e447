"""--device, --precision and the device step (training/device.py, device_step.py), on the CPU."""

import numpy as np
import pandas as pd
import pytest
import torch

from negspace import Recommender
from negspace.cli import main
from negspace.errors import NegspaceError
from negspace.models import CML, MF, TwoTower
from negspace.samplers import (PopularitySampler, SharedNegativeSampler, TwoStageSampler,
                               UniformSampler)
from negspace.samplers.in_batch import FullCatalogueSampler
from negspace.samplers.memory_bank import MemoryBankSampler
from negspace.training.device import autocast, cuda_available, resolve_device
from negspace.training.objective import Objective
from negspace.training.trainer import Trainer, TrainerOptions

from ..conftest import random_interactions

no_cuda = pytest.mark.skipif(cuda_available(), reason="checks the refusal without a GPU")


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if cuda_available() else "cpu")
    assert resolve_device(None) == resolve_device("auto")
    for bad in ("gpu", "cuda:x", "cuda:-1", ""):
        with pytest.raises(NegspaceError):
            resolve_device(bad)


@no_cuda
def test_cuda_without_a_gpu_is_a_one_line_error():
    with pytest.raises(NegspaceError, match="no CUDA device"):
        resolve_device("cuda")
    with pytest.raises(NegspaceError, match="no CUDA device"):
        resolve_device("cuda:1")


@no_cuda
@pytest.mark.parametrize("argv", [
    ["train", "--dataset", "movielens-100k", "--out", "{tmp}/run", "--device", "cuda"],
    ["evaluate", "{tmp}/run", "--device", "cuda"],
    ["recommend", "{tmp}/run", "--user", "1", "--device", "cuda:0"],
    ["export", "{tmp}/run", "--faiss", "--device", "cuda"],
])
def test_cli_device_cuda_exits_2_in_one_line(argv, tmp_path, capsys):
    args = [a.format(tmp=tmp_path) for a in argv]
    if args[0] != "train":  # a finished run to point at
        df = pd.DataFrame({"user": [1, 1, 2, 2, 3], "item": list("abbca")})
        Recommender("mf", dim=4, epochs=1, validation=0, progress=False, threads=1,
                    device="cpu").fit(df).save(tmp_path / "run")
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cuda" in err.lower()


def test_autocast_is_a_no_op_on_the_cpu():
    with autocast(torch.device("cpu"), "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


CASES = {
    "cml-uniform": lambda inter: (CML(inter.n_users, inter.n_items, 8), UniformSampler(1), Objective()),
    "cml-popularity": lambda inter: (CML(inter.n_users, inter.n_items, 8), PopularitySampler(1.0, 1),
                                     Objective()),
    "cml-2stage": lambda inter: (CML(inter.n_users, inter.n_items, 8),
                                 TwoStageSampler(20, temperature=64.0, cap=0.875, seed=1), Objective()),
    "mf-shared": lambda inter: (MF(inter.n_users, inter.n_items, 8, measure="cosine"),
                                SharedNegativeSampler("uniform", seed=1), Objective(loss="mml")),
    "two-tower-bank": lambda inter: (TwoTower(inter.n_users, inter.n_items, 8, inter),
                                     MemoryBankSampler(32, seed=1), Objective(loss="softmax")),
    # the default recipe: the full softmax batched by users (TrainerOptions.batch_by "user")
    "mf-user-softmax": lambda inter: (MF(inter.n_users, inter.n_items, 8, measure="cosine"),
                                      FullCatalogueSampler(seed=1),
                                      Objective(loss="softmax", temperature=0.2)),
}
OPTIONS = {"mf-user-softmax": {"batch_by": "user"}}


def _trainer(case: str, inter, epochs: int = 2, device_step: bool = True) -> Trainer:
    torch.manual_seed(0)
    model, sampler, objective = CASES[case](inter)
    return Trainer(model, sampler, objective, inter,
                   TrainerOptions(batch_size=16, negatives=5, epochs=epochs, lr=0.01,
                                  progress=False, device_step=device_step,
                                  **OPTIONS.get(case, {})), validation=inter)


@pytest.mark.parametrize("case", list(CASES))
def test_device_step_trains_and_resumes_bit_for_bit(case):
    inter = random_interactions(n_users=30, n_items=50, seed=3)
    full = _trainer(case, inter)
    assert full.device_step is not None
    full.fit()
    # the same run, stopped after epoch 1 and continued in a fresh trainer from its state
    first = _trainer(case, inter)
    first.opt.epochs = 2
    first._epoch(None)
    state = first.state()
    second = _trainer(case, inter)
    second.load_state(state)
    second.fit()
    for a, b in zip(full.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)
    assert [h["loss"] for h in full.result.history] == [h["loss"] for h in second.result.history]
    assert all(np.isfinite(h["loss"]) and h["loss"] > 0 for h in full.result.history)


def _dense(grad):
    return None if grad is None else (grad.to_dense() if grad.is_sparse else grad)


@pytest.mark.parametrize("case", list(CASES))
def test_device_step_matches_the_host_step_on_the_same_batch(case):
    """One step of the device path and of the host path (Trainer.step with the host objective)
    from the same weights, on the same batch and the same draws: the same loss, the same
    gradients (autograd steps) and the same weights after the update."""
    inter = random_interactions(n_users=30, n_items=50, seed=3)
    dev, host = _trainer(case, inter), _trainer(case, inter, device_step=False)
    assert dev.device_step is not None and host.device_step is None
    ds, drawn = dev.device_step.sampler, {}
    for name in ("sample", "sample_shared", "candidates"):
        if hasattr(ds, name):
            def recorded(*a, _name=name, _real=getattr(ds, name), **k):
                drawn[_name] = _real(*a, **k)
                return drawn[_name]
            setattr(ds, name, recorded)
    rows = torch.randperm(len(dev.users), generator=torch.Generator().manual_seed(5))[:16]
    users, items = dev.users[rows], dev.items[rows]  # many users (the first rows are user 0's)
    dev.step(users, items)
    device_loss = dev.device_step.flush()
    # the host path, given the device path's draws
    host._negatives = lambda *a, **k: drawn.get("sample_shared", drawn.get("sample"))
    if "candidates" in drawn:
        host.sampler.candidates = lambda *a, **k: drawn["candidates"]
        host.sampler.sample = lambda *a, **k: drawn["sample"]
    host_loss = host.step(users, items)
    assert device_loss == pytest.approx(host_loss, rel=1e-5, abs=1e-7)
    grads = 0
    for (name, a), b in zip(dev.model.named_parameters(), host.model.parameters()):
        ga, gb = _dense(a.grad), _dense(b.grad)
        if ga is not None and gb is not None:  # the host's hand-written steps keep no .grad
            grads += 1
            torch.testing.assert_close(ga, gb, rtol=1e-5, atol=1e-7, msg=name)
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-5, atol=1e-7, msg=name)
    # CML's and the shared negatives' hand-written host steps update without autograd
    assert grads or dev.fused is not None or host.shared_step is not None


def test_device_step_stops_on_a_non_finite_loss():
    inter = random_interactions(n_users=30, n_items=50, seed=3)
    trainer = _trainer("cml-uniform", inter, epochs=1)
    trainer.device_step.sync_every = 1
    with torch.no_grad():
        trainer.model.users.weight.fill_(float("nan"))
    with pytest.raises(NegspaceError, match="non-finite"):
        trainer.fit()


def test_recommender_device_option(tmp_path):
    df = pd.DataFrame({"user": [1, 1, 2, 2, 3, 3, 3], "item": list("abbcacd")})
    rec = Recommender("mf", dim=4, epochs=2, validation=0, progress=False, threads=1,
                      device="cpu").fit(df)
    assert rec.user_vectors.device.type == "cpu"
    top = rec.recommend([1], k=2)
    rec.save(tmp_path / "run")
    loaded = Recommender.load(tmp_path / "run", device="cpu")
    pd.testing.assert_frame_equal(loaded.recommend([1], k=2), top)
    assert Recommender.load(tmp_path / "run").config.device == "auto"


def test_padded_row_sums_update_as_the_distinct_rows_do():
    """The accelerator's RowAdam path (no unique, so no wait for the device) on the CPU."""
    from negspace.training.optim import RowAdam, padded_sum_rows, sum_rows
    rng = np.random.default_rng(0)
    ref, mine = (torch.nn.Parameter(torch.from_numpy(rng.standard_normal((40, 3)).astype(np.float32)))
                 for _ in range(2))
    with torch.no_grad():
        mine.copy_(ref)
    opt_ref, opt = RowAdam([ref], lr=0.05), RowAdam([mine], lr=0.05)
    for _ in range(4):
        ids = torch.from_numpy(rng.integers(0, 25, 60))
        grads = torch.from_numpy(rng.standard_normal((60, 3)).astype(np.float32))
        opt_ref.update_rows(ref, *sum_rows(ids, grads))
        rows, summed, valid = padded_sum_rows(ids, grads)
        assert int(valid.sum()) == len(torch.unique(ids)) and len(rows) == 60
        opt.update_rows(mine, rows, summed, valid)
    torch.testing.assert_close(mine, ref, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(opt.state[mine]["exp_avg_sq"], opt_ref.state[ref]["exp_avg_sq"])


@pytest.mark.parametrize("case", list(CASES))
def test_device_step_never_reads_a_tensor_back_between_syncs(case, monkeypatch):
    """A stand-in for CUDA's sync check on the CPU: every way Python reads a tensor's value
    (item, float, int, bool, index, numpy, tolist, cpu) raises during the steps; the loss is read
    only at flush()."""
    inter = random_interactions(n_users=30, n_items=50, seed=3)
    trainer = _trainer(case, inter, epochs=1)
    trainer.device_step.sync_every = 10 ** 9
    monkeypatch.setattr("negspace.models.history.TRIM_ON_CPU", False)  # the accelerator's path
    monkeypatch.setattr("negspace.training.shared_loss.applies", lambda *a: False)  # CPU-only
    users, items = trainer.users[:16], trainer.items[:16]
    trainer.step(users, items)  # first step: lazy state (Adam moments, the bank) is created
    # user batches read their positives from the host CSR (host data, no device read-back):
    # computed here, before reads are made to raise
    from negspace.samplers.in_batch import positive_rows
    rows_cols = positive_rows(trainer.train, users)
    monkeypatch.setattr("negspace.training.device_step.positive_rows", lambda train, u: rows_cols)

    def read(*args, **kwargs):
        raise AssertionError("a tensor was read back on the host during a step")
    for name in ("item", "__float__", "__int__", "__bool__", "__index__", "numpy", "tolist", "cpu"):
        monkeypatch.setattr(torch.Tensor, name, read)
    for _ in range(3):
        trainer.step(users, items)
    monkeypatch.undo()
    assert np.isfinite(trainer.device_step.flush())
