"""SimpleX + CCL with 800 shared negatives on ML-1M: the trainer's loop per step with the margin
terms as the compiled autograd function (training/shared_loss.py) and as torch operations.

Run:  NEGSPACE_DATA=... .venv/bin/python bench/research/shared_loss_simplex.py [--steps 100]

One torch thread, no background draw, d 64, B 256; the two variants alternate, two rounds.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import negspace  # noqa: F401  -- first: its OpenMP setting must precede torch
import torch

from negspace.data.loaders import load_dataset
from negspace.pipeline.build import build_model, build_objective, build_sampler
from negspace.pipeline.fit import split_for
from negspace.training import shared_loss
from negspace.config import make_config
from negspace.training.trainer import Trainer, TrainerOptions


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=100)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cfg = make_config({"dataset": "movielens-1m-lcfn", "model": "simplex", "loss": "ccl",
                       "sampler": "uniform", "negative_mode": "shared", "negatives": 800,
                       "dim": 64, "batch_size": 256, "validation": 0.0, "lr": 1e-3})
    train, _ = split_for(cfg, load_dataset(cfg.dataset))
    applies = shared_loss.applies
    results: dict[str, list[str]] = {}
    for _ in range(2):
        for name, rule in (("compiled margin function", applies),
                           ("torch terms", lambda *a: False)):
            shared_loss.applies = rule
            model = build_model(cfg, train.n_users, train.n_items, history=train)
            opts = TrainerOptions(batch_size=256, negatives=800, epochs=1, lr=1e-3,
                                  progress=False, step_threads=1, prefetch=False)
            trainer = Trainer(model, build_sampler(cfg), build_objective(cfg), train, opts, None)
            trainer.n_steps = 5
            trainer.run_epoch(None)  # warm-up (numba compiles on first use)
            trainer.n_steps = 5 + args.steps
            c0, w0 = time.process_time(), time.perf_counter()
            trainer.run_epoch(None)
            cpu = (time.process_time() - c0) / args.steps * 1e3
            wall = (time.perf_counter() - w0) / args.steps * 1e3
            results.setdefault(name, []).append(f"{cpu:.2f} CPU / {wall:.2f} wall")
    shared_loss.applies = applies
    for name, rows in results.items():
        print(f"{name}: ms per step {', '.join(rows)}")
    print(f"load {os.getloadavg()[0]:.2f}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
