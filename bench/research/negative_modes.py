"""Seconds per training step (and per epoch, extrapolated) of per-row vs shared negatives for the
cosine losses, on one thread.

    python bench/research/negative_modes.py [--dataset movielens-1m-lcfn] [--steps 60]
"""

from __future__ import annotations

import argparse
import time

import negspace  # noqa: F401  -- sets the OpenMP policy before torch starts
import torch

from negspace.data.splits import holdout_split
from negspace.samplers.base import SamplerKind
from negspace.pipeline.build import build_model, build_objective, build_sampler
from negspace.pipeline.fit import load_for, split_for
from negspace.samplers.base import to_tensor
from negspace.config import make_config
from negspace.training.optim import SparseFriendlyAdam


def seconds_per_step(cfg, fit_on, steps: int) -> float:
    model = build_model(cfg, fit_on.n_users, fit_on.n_items, history=fit_on)
    sampler = build_sampler(cfg).fit(fit_on)
    objective = build_objective(cfg)
    optimizer = SparseFriendlyAdam(model, cfg.lr)
    users, items = (to_tensor(a) for a in fit_on.pairs())
    perm = torch.randperm(len(users), generator=torch.Generator().manual_seed(0))
    times = []
    for s in range(steps + 5):
        idx = perm[s * cfg.batch_size:(s + 1) * cfg.batch_size]
        u, i = users[idx], items[idx]
        t0 = time.perf_counter()
        if sampler.kind is SamplerKind.SHARED:
            neg, keep = sampler.sample_shared(u.numpy(), i.numpy(), cfg.negatives)
            loss = objective(model, u, i, to_tensor(neg), to_tensor(keep))
        else:
            loss = objective(model, u, i, to_tensor(sampler.sample(u.numpy(), i.numpy(), cfg.negatives)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if s >= 5:  # warm-up steps excluded
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="movielens-1m-lcfn")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--negatives", default="10,100,800")
    ap.add_argument("--models", default="mf,simplex")
    args = ap.parse_args()
    torch.set_num_threads(1)
    base = make_config({"dataset": args.dataset})
    train, _ = split_for(base, load_for(base))
    fit_on, _ = holdout_split(train, 0.1, 0)
    n_steps = -(-fit_on.nnz // 512)
    print(f"| model | N | per-row s/step | shared s/step | per-row s/epoch | shared s/epoch | speed-up |")
    print("|---|---|---|---|---|---|---|")
    for model in args.models.split(","):
        for n in map(int, args.negatives.split(",")):
            t = {}
            for mode in ("per-row", "shared"):
                cfg = make_config({"dataset": args.dataset, "model": model, "loss": "ccl",
                                   "sampler": "uniform", "negative_mode": mode, "negatives": n,
                                   "batch_size": 512, "dim": 64, "lr": 1e-3})
                t[mode] = seconds_per_step(cfg, fit_on, args.steps)
            print(f"| {model} | {n} | {t['per-row']:.4f} | {t['shared']:.4f} | "
                  f"{t['per-row'] * n_steps:.1f} | {t['shared'] * n_steps:.1f} | "
                  f"{t['per-row'] / t['shared']:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
