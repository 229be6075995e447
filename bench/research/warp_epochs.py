"""LightFM WARP on a validation split of a dataset's training data, validated at several epoch
counts: does the ML-1M-tuned epoch count (8) hold elsewhere? (issue 6: WARP's Amazon-CDs Recall@20
came out 0.085 against the issue's "about 0.11"). Never touches the test split.

Run:  .venv/bin/python bench/research/warp_epochs.py [--dataset amazon-cds-bgcf] [--epochs 5 8 10 15 20 30 40]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import negspace  # noqa: F401  -- first: its OpenMP setting must precede torch
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/
from peers import DATASETS, PEERS, csr, factor_score_fn, split  # noqa: E402

from negspace.data.splits import holdout_split  # noqa: E402
from negspace.evaluation.evaluator import evaluate  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="amazon-cds-bgcf", choices=list(DATASETS))
    p.add_argument("--epochs", type=int, nargs="+", default=[5, 8, 10, 15, 20, 30, 40])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--lr", type=float, default=PEERS["warp"]["learning_rate"])
    p.add_argument("--out", default=None, help="JSON lines file for the rows")
    args = p.parse_args(argv)
    from lightfm import LightFM
    torch.set_num_threads(args.threads)
    train, _ = split(args.dataset)
    fit_on, val = holdout_split(train, 0.1, 0)
    coo = csr(fit_on).tocoo()
    w = PEERS["warp"]
    model = LightFM(no_components=DATASETS[args.dataset][1], loss="warp", learning_rate=args.lr,
                    item_alpha=w["item_alpha"], user_alpha=w["user_alpha"],
                    max_sampled=w["max_sampled"], random_state=0)
    done, seconds = 0, 0.0
    for target in sorted(args.epochs):
        t0 = time.perf_counter()
        model.fit_partial(coo, epochs=target - done, num_threads=args.threads)
        seconds += time.perf_counter() - t0
        done = target
        m = evaluate(factor_score_fn(model.user_embeddings, model.item_embeddings,
                                     model.item_biases), fit_on, val, ks=(20,))
        row = {"dataset": args.dataset, "lr": args.lr, "epochs": done,
               "val_recall@20": round(m["recall@20"], 4), "val_ndcg@20": round(m["ndcg@20"], 4),
               "fit_seconds": round(seconds, 1)}
        print(json.dumps(row), flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    sys.exit(main())
