"""evaluate() of an untrained CML model with 1 and 2 torch threads, alternately (why negspace keeps
every core for evaluation while its training steps run on one thread).

Run:  NEGSPACE_DATA=... .venv/bin/python bench/research/eval_threads.py [DATASET ...] [--rounds 2]
"""

from __future__ import annotations

import argparse
import sys
import time

import negspace  # noqa: F401  -- first: its OpenMP setting must precede torch
import torch

from negspace.data.loaders import load_dataset
from negspace.evaluation.evaluator import evaluate
from negspace.pipeline.build import build_model
from negspace.pipeline.fit import split_for
from negspace.config import make_config
from negspace.training.trainer import score_fn


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("datasets", nargs="*", default=["movielens-1m-lcfn", "amazon-cds-bgcf"])
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args(argv)
    for name in args.datasets:
        cfg = make_config({"dataset": name, "dim": 64, "model": "cml", "progress": False})
        train, test = split_for(cfg, load_dataset(name))
        torch.manual_seed(0)
        model = build_model(cfg, train.n_users, train.n_items, history=train).eval()
        for r in range(args.rounds):
            for threads in (1, 2):
                torch.set_num_threads(threads)
                t0 = time.perf_counter()
                evaluate(score_fn(model), train, test, ks=(20, 50))
                print(f"{name} threads {threads} round {r}: {time.perf_counter() - t0:.2f} s",
                      flush=True)


if __name__ == "__main__":
    sys.exit(main())
