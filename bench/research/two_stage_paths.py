"""The compiled 2-stage draw (samplers/two_stage_fast.py) and the torch path train to the same
quality: CML with 2-stage negatives (T 64, cap 0.875), same seed, each path, test metrics.

Run:  NEGSPACE_DATA=... .venv/bin/python bench/research/two_stage_paths.py [--epochs 5]

ML-1M, d 64, B 256, N 5, lr 0.01, no validation (the last epoch's model); the two paths draw
from the same law with other random numbers, so the metrics should agree within seed noise.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import negspace  # noqa: F401  -- first: its OpenMP setting must precede torch

from negspace.data.loaders import load_dataset
from negspace.evaluation.evaluator import evaluate
from negspace.pipeline.build import build_model, build_objective, build_sampler
from negspace.pipeline.fit import split_for
from negspace.config import make_config
from negspace.training.trainer import Trainer, TrainerOptions, score_fn


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = p.parse_args(argv)
    print("| path | seed | map@50 | ndcg@50 | recall@20 | train s (wall) |\n|---|---|---|---|---|---|")
    for seed in args.seeds:
        cfg = make_config({"dataset": "movielens-1m-lcfn", "model": "cml", "sampler": "two-stage",
                           "two_stage_temperature": 64.0, "two_stage_cap": 0.875, "dim": 64,
                           "batch_size": 256, "negatives": 5, "lr": 0.01, "seed": seed,
                           "validation": 0.0})
        train, test = split_for(cfg, load_dataset(cfg.dataset))
        for compiled in (True, False):
            model = build_model(cfg, train.n_users, train.n_items)
            sampler = build_sampler(cfg)
            sampler.compiled = compiled
            opts = TrainerOptions(batch_size=256, negatives=5, epochs=args.epochs, lr=0.01,
                                  seed=seed, progress=False, step_threads=1)
            t0 = time.perf_counter()
            Trainer(model, sampler, build_objective(cfg), train, opts, None).fit()
            secs = time.perf_counter() - t0
            m = evaluate(score_fn(model.eval()), train, test, ks=(20, 50))
            print(f"| {'compiled' if compiled else 'torch'} | {seed} | {m['map@50']:.4f} "
                  f"| {m['ndcg@50']:.4f} | {m['recall@20']:.4f} | {secs:.1f} |", flush=True)
    print(f"\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
