"""The trainer's loop with and without the background draw of negatives (TrainerOptions.prefetch).

Run:  NEGSPACE_DATA=... .venv/bin/python bench/research/prefetch_overlap.py [--steps 200] [--repeats 3]

For uniform and popularity CML and MF + MML with 800 shared negatives (bench/profile_steps.py's
settings: ML-1M, d = 64, B = 256, 2 torch threads), alternating without and with the background
draw: the main thread's CPU time, the process's CPU time and the wall time per step over `steps`
steps after 10 of warm-up. The main thread's CPU time is what the draw takes off the critical path,
and unlike wall time it is little inflated by a loaded machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import negspace  # noqa: F401  -- first: its OpenMP setting must precede torch
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/
from profile_steps import CASES  # noqa: E402

from negspace.data.loaders import load_dataset  # noqa: E402
from negspace.pipeline.build import build_model, build_objective, build_sampler  # noqa: E402
from negspace.pipeline.fit import split_for  # noqa: E402
from negspace.config import make_config  # noqa: E402
from negspace.training.trainer import Trainer, TrainerOptions  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    base = {"dataset": "movielens-1m-lcfn", "dim": 64, "batch_size": 256, "threads": args.threads,
            "progress": False, "validation": 0.0}
    train, _ = split_for(make_config(base), load_dataset(base["dataset"]))
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {args.threads} threads, "
          f"load average {os.getloadavg()[0]:.2f} at the start")
    cases = ["uniform", "popularity", "shared-800 (mf, mml)"]
    res: dict = {}
    for _ in range(args.repeats):
        for case in cases:
            for prefetch in (False, True):
                cfg = make_config({**base, **CASES[case]})
                torch.manual_seed(0)
                model = build_model(cfg, train.n_users, train.n_items, history=train)
                options = TrainerOptions(batch_size=256, negatives=cfg.negatives, lr=cfg.lr,
                                         progress=False, prefetch=prefetch)
                trainer = Trainer(model, build_sampler(cfg), build_objective(cfg), train,
                                  options, None)
                trainer.n_steps = 10
                trainer.run_epoch(None)
                trainer.n_steps = 10 + args.steps
                t, c, w = time.thread_time(), time.process_time(), time.perf_counter()
                trainer.run_epoch(None)
                per = [1000.0 * (x1 - x0) / args.steps for x0, x1 in
                       ((t, time.thread_time()), (c, time.process_time()), (w, time.perf_counter()))]
                res.setdefault((case, prefetch), []).append(per)
    print("| sampler | background draw | main-thread CPU ms / step | process CPU ms / step "
          "| wall ms / step |\n|---|---|---|---|---|")
    for (case, prefetch), v in res.items():
        v = np.array(v)
        cols = " | ".join(", ".join(f"{x:.2f}" for x in v[:, j]) for j in range(3))
        print(f"| {case} | {'yes' if prefetch else 'no'} | {cols} |")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    sys.exit(main())
