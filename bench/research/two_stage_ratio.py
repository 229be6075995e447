"""One-run ratio of a 2-stage epoch to a uniform one (issue 13's CPU target: at most 2x).

Run:  .venv/bin/python bench/research/two_stage_ratio.py [--dataset movielens-1m-lcfn] [--rounds 2]
                                             [--batch-size 256] [--exact]

CML (d 64, N 5, lr 0.01, seed 0), one epoch each, the trainer's own loop with negspace's default
threads (one torch thread for the steps, the next batch's draw on a second core where it can
be), uniform and 2-stage alternately (`--rounds` times), in one process: each 2-stage epoch is
divided by the uniform epoch next to it. 2-stage: T = 64 with the cap 0.875 (the setting that
trains well, bench/peers.py); `--exact` adds the exact maths (T = 1, no cap), which takes the
torch path (its weights are far too peaked for the compiled rejection draw).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import negspace  # noqa: F401  -- first: its OpenMP setting must precede torch
import torch

from negspace.data.loaders import load_dataset
from negspace.pipeline.build import build_model, build_objective, build_sampler
from negspace.pipeline.fit import split_for
from negspace.config import make_config
from negspace.training.trainer import Trainer, TrainerOptions

BASE = {"model": "cml", "dim": 64, "negatives": 5, "lr": 0.01, "seed": 0, "validation": 0.0}
SAMPLERS = {"uniform": {"sampler": "uniform"},
            "2-stage T64 cap0.875": {"sampler": "two-stage", "two_stage_temperature": 64.0,
                                      "two_stage_cap": 0.875},
            "2-stage exact (T1)": {"sampler": "two-stage"}}


def epoch_seconds(cfg, train) -> tuple[float, float, float]:
    model = build_model(cfg, train.n_users, train.n_items)
    opts = TrainerOptions(batch_size=cfg.batch_size, negatives=cfg.negatives, epochs=1,
                          lr=cfg.lr, seed=cfg.seed, progress=False, step_threads=1)
    trainer = Trainer(model, build_sampler(cfg), build_objective(cfg), train, opts, None)
    trainer.fit()
    row = trainer.result.history[0]
    return row["seconds"], row["cpu_seconds"], row["loss"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="movielens-1m-lcfn")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--exact", action="store_true")
    args = p.parse_args(argv)
    names = [n for n in SAMPLERS if args.exact or "exact" not in n]
    cfg0 = make_config({**BASE, "dataset": args.dataset, "batch_size": args.batch_size})
    train, _ = split_for(cfg0, load_dataset(args.dataset))
    from negspace.training import kernels
    print(f"{args.dataset}, CML d 64, N 5, B {args.batch_size}, {train.nnz} training pairs, "
          f"numba {'yes' if kernels.AVAILABLE else 'no'}, torch {torch.__version__}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()[0]:.2f}")
    seconds: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        for name in names:
            cfg = make_config({**BASE, **SAMPLERS[name], "dataset": args.dataset,
                               "batch_size": args.batch_size})
            s, c, loss = epoch_seconds(cfg, train)
            seconds[name].append(s)
            cpu[name].append(c)
            print(f"round {r + 1}: {name}: epoch {s:.2f} s wall, {c:.2f} s CPU (loss {loss:.4f}; "
                  f"load {os.getloadavg()[0]:.2f})", flush=True)
    print("\n| sampler | epoch wall s | / uniform (same round) | epoch CPU s (all threads) "
          "| / uniform |\n|---|---|---|---|---|")
    for name in names:
        cols = []
        for table in (seconds, cpu):
            ratios = [a / b for a, b in zip(table[name], table["uniform"])]
            cols += [", ".join(f"{s:.2f}" for s in table[name]),
                     f"{', '.join(f'{x:.2f}x' for x in ratios)} (median {statistics.median(ratios):.2f}x)"]
        print(f"| {name} | {' | '.join(cols)} |")
    print(f"\nload {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
