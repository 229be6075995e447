"""Data-parallel training (distributed/process_group.py) in 2 processes with gloo on 127.0.0.1:
parameters equal on both ranks after every step, 2 ranks x B equal to 1 process x 2B from the
same initial weights, refusals, a killed rank and --resume."""

from __future__ import annotations

import gc
import hashlib
import json
import os
import socket
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from negspace.errors import NegspaceError
from negspace.models import CML, MF, TwoTower
from negspace.models.graph import PropagatedMF
from negspace.samplers.in_batch import InBatchSampler
from negspace.samplers.memory_bank import MemoryBankSampler
from negspace.samplers.base import NegativeSampler
from negspace.samplers.shared import SharedNegativeSampler, positives_of
from negspace.distributed import process_group as distributed
from negspace.training.objective import Objective
from negspace.training.trainer import Trainer, TrainerOptions

from ..conftest import random_interactions

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")


class FixedSampler(NegativeSampler):
    """Negatives that depend only on the row (user, item): the same for a row whichever rank or
    batch holds it, so 2 x B and 1 x 2B see the same negatives."""

    name = "fixed"

    def _sample(self, users, items, n, model):
        return (users[:, None] * 7 + items[:, None] * 13 + np.arange(n) * 5) % self.train.n_items


class FixedShared(SharedNegativeSampler):
    """The k-th batch's shared negatives depend only on k (one call per step on every rank)."""

    def __init__(self) -> None:
        super().__init__("uniform", seed=0)
        self.calls = 0

    def sample_shared(self, users, items, n):
        neg = (np.arange(n) * 3 + 5 * self.calls) % self.train.n_items
        self.calls += 1
        return neg, ~positives_of(self.train, np.asarray(users, np.int64), neg)


def _setup(case: str):
    train = random_interactions(n_users=40, n_items=60, density=0.2, seed=5, dense_user=False)
    torch.manual_seed(0)
    if case == "cml":
        model = CML(train.n_users, train.n_items, 16)
        return train, model, FixedSampler(), Objective(loss="triplet", gor_weight=0.0)
    if case == "mf-user":  # user batches, the multinomial likelihood over the whole catalogue
        model = MF(train.n_users, train.n_items, 16, measure="cosine", init_std=0.1)
        return train, model, FixedSampler(), Objective(loss="softmax", temperature=0.2)
    if case == "mf-graph-user":  # the graph encoder: dense table gradients, a sparse buffer
        model = PropagatedMF(train.n_users, train.n_items, 16, train, layers=2, measure="cosine",
                             init_std=0.1)
        return train, model, FixedSampler(), Objective(loss="softmax", temperature=0.2)
    if case == "mf-shared":
        model = MF(train.n_users, train.n_items, 16, measure="cosine", init_std=0.1)
        return train, model, FixedShared(), Objective(loss="ccl", margin=0.5, negative_weight=2.0)
    model = TwoTower(train.n_users, train.n_items, 16, train, history_len=8, seed=0)
    sampler = (InBatchSampler(mask_positives=True, seed=0) if case == "two-tower-in-batch"
               else MemoryBankSampler(size=64, warmup=1, mask_positives=True, seed=0))
    return train, model, sampler, Objective(loss="softmax", temperature=0.5)


def _trainer(case: str, batch: int) -> Trainer:
    train, model, sampler, objective = _setup(case)
    # Adam moves a parameter by about lr whatever its gradient's size, so rounding-sized
    # gradient entries (of either sign) move by lr: the dense towers take a small one
    lr = 1e-3 if case.startswith("two-tower") else 0.01
    extra = {"batch_by": "user"} if case.endswith("-user") else {}
    opts = TrainerOptions(batch_size=batch, negatives=4, epochs=2, lr=lr, seed=1, **extra,
                          progress=False, prefetch=False, step_threads=1, fused=False)
    return Trainer(model, sampler, objective, train, opts, None)


def _digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for p in model.parameters():
        h.update(p.detach().numpy().tobytes())
    return h.hexdigest()


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Each parameter's gradient of the last step, dense."""
    return {name: (p.grad.to_dense() if p.grad.is_sparse else p.grad).clone()
            for name, p in model.named_parameters() if p.grad is not None}


def _rank_main(rank: int, port: int, case: str, batch: int, out: str) -> None:
    os.environ.update(OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=2, timeout=timedelta(seconds=60))
    trainer = _trainer(case, batch)
    ctx = distributed.DistContext(rank, 2)
    distributed.attach(trainer, ctx)
    digests, losses = [], []
    step = trainer.step

    def checked(users, items):
        value = step(users, items)
        mine = _digest(trainer.model)
        bank = getattr(trainer.sampler, "vectors", None)
        if bank is not None:  # the memory bank's checksum joins the parameters'
            mine += hashlib.sha256(bank.numpy().tobytes()).hexdigest()
        both = [None, None]
        dist.all_gather_object(both, mine)
        digests.append(both)
        losses.append(value)
        if len(losses) == 1:
            grads.update(_grads(trainer.model))
        return value
    grads: dict = {}
    trainer.step = checked
    trainer.fit()
    torch.save({"digests": digests, "losses": losses, "model": trainer.model.state_dict(),
                "grads": grads},
               Path(out) / f"rank{rank}.pt")
    dist.destroy_process_group()
    # gloo's and the store's threads end with the group: left running into interpreter exit, a
    # worker releasing a finished collective's tensors there aborted the rank (SIGABRT)
    (Path(out) / f"threads{rank}.json").write_text(json.dumps(_threads_left()))


def _threads_left(wait_s: float = 10.0) -> list[str]:
    """The gloo and store threads still running once collection has run and up to wait_s has
    passed: the store can outlive the group by a garbage-collection cycle, or by the moment
    its loop takes to stop (CI once saw 'pt_tcpstore_uv' right after destroy_process_group)."""
    gc.collect()
    deadline = time.monotonic() + wait_s
    while (left := _native_threads()) and time.monotonic() < deadline:
        time.sleep(0.05)
        gc.collect()
    return left


def _native_threads() -> list[str]:
    """Names of this process's gloo and TCPStore threads (Linux; [] elsewhere)."""
    task = Path("/proc/self/task")
    if not task.is_dir():
        return []
    names = [(t / "comm").read_text().strip() for t in task.iterdir()]
    return [n for n in names if n.startswith(("pt_gloo", "gloo_", "pt_tcpstore"))]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("case", ["cml", "mf-shared", "mf-user", "mf-graph-user",
                                  "two-tower-in-batch", "two-tower-bank"])
def test_two_ranks_of_b_match_one_process_of_2b(tmp_path, case):
    b = 16
    mp.spawn(_rank_main, args=(_port(), case, b, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    for r in (0, 1):  # destroy_process_group ended the group's threads (nothing kept it alive)
        assert json.loads((tmp_path / f"threads{r}.json").read_text()) == []
    assert r0["digests"] and all(a == c for a, c in r0["digests"])  # equal after every step
    assert r0["digests"] == r1["digests"] and r0["losses"] == r1["losses"]

    single = _trainer(case, 2 * b)
    losses, grads = [], {}
    step = single.step

    def record(u, i):
        losses.append(step(u, i))
        if len(losses) == 1:
            grads.update(_grads(single.model))
        return losses[-1]
    single.step = record
    single.fit()
    # the data's size is not 1 modulo 2B, so no positive is dropped and the steps line up
    assert single.train.nnz % (2 * b) != 1 and len(losses) == len(r0["losses"])
    assert grads.keys() == r0["grads"].keys()
    for name, value in grads.items():  # the first step's reduced gradients
        torch.testing.assert_close(r0["grads"][name], value, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(r0["losses"], losses, rtol=1e-5, atol=1e-6)  # two epochs
    # The towers' output biases add the same amount to every candidate of a row, which the
    # softmax ignores: their gradients are rounding noise, and Adam moves a parameter by about
    # lr per step whatever its gradient's size, so they wander by up to lr x steps in both runs
    # alike. The losses above and the first step's gradients are the checks there.
    tower = case.startswith("two-tower")
    for name, value in single.model.state_dict().items():
        if not (tower and name.endswith("bias")):
            torch.testing.assert_close(r0["model"][name], value, rtol=1e-4,
                                       atol=5e-4 if tower else 1e-5)


def test_shard_is_the_ranks_share_of_each_global_batch():
    perm = torch.randperm(103, generator=torch.Generator().manual_seed(0))
    ranks = [distributed.DistContext(r, 3) for r in range(3)]
    parts = [c.shard(perm, 10) for c in ranks]
    steps = ranks[0].local_steps(103, 10)
    assert steps == 4 and all(-(-len(p) // 10) == steps for p in parts)
    for s in range(steps):  # rank order rebuilds global batch s
        rebuilt = torch.cat([p[s * 10:(s + 1) * 10] for p in parts])
        assert torch.equal(rebuilt, perm[s * 30:(s + 1) * 30])
    assert distributed.DistContext(0, 3).local_steps(91, 10) == 3  # a tail of 1 < 3 ranks: dropped


def _cli(args: list[str], env: dict[str, str] | None = None) -> int:
    from negspace.cli import main

    old = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        return main(args)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_killed_rank_ends_the_run_and_resume_continues(toy_csv, tmp_path, capsys):
    common = ["train", "--dataset", str(toy_csv), "--model", "cml", "--sampler", "uniform",
              "--nproc", "2", "--epochs", "3",
              "--validation", "0", "--batch-size", "32", "--dim", "8", "--no-progress",
              "--min-user-interactions", "0", "--lr-schedule", "none", "--checkpoint-every", "2"]
    env = {distributed.TIMEOUT_ENV: "60", "OMP_NUM_THREADS": "1"}
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    assert _cli([*common, "--out", str(whole)], env) == 0
    assert json.loads((whole / "config.json").read_text())["nproc"] == 2
    # rank 1 dies before step 6 (0-based 5); the checkpoint after step 4 is kept
    code = _cli([*common, "--out", str(broken)], {**env, distributed.FAULT_ENV: "1:5"})
    err = capsys.readouterr().err
    assert code == 2 and "rank 1 of 2 was killed by SIGKILL" in err and "--resume" in err
    assert (broken / "checkpoint.pt").exists() and not (broken / "metrics.json").exists()
    assert _cli(["train", "--resume", str(broken), "--no-progress"], env) == 0
    assert (broken / "metrics.json").read_bytes() == (whole / "metrics.json").read_bytes()
    # the 2-process test evaluation against the single-process one of the saved vectors
    from negspace.pipeline.evaluate import evaluate_run
    stored = json.loads((whole / "metrics.json").read_text())
    single = evaluate_run(whole, device="cpu")  # rewrites metrics.json: compared after
    for key in ("map@50", "ndcg@50", "recall@20", "hit@20", "mmr@50", "coverage@50"):
        assert stored[key] == pytest.approx(single[key], rel=1e-9, abs=1e-12), key


def test_gpu_device_with_several_processes_is_refused_in_one_line():
    with pytest.raises(NegspaceError, match="gloo"):
        distributed.check_supported("uniform", 2, "cuda")
    distributed.check_supported("uniform", 2, "auto")
    distributed.check_supported("uniform", 1, "cuda")
