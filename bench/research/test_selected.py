"""The published SimpleX protocol, for comparison with its figures only: train on the whole
training file and pick the epoch on the TEST file (RecZoo's configs validate on it). The numbers
this prints are optimistic by construction; negspace's own protocol carves a validation split
from the training data and reads the test file once (docs/results.md, issue 4).

    python bench/research/test_selected.py configs/grid-mml-ml1m-mf.toml --set negatives=800 loss=mml \
        --epochs 20 --out runs/test-selected/mf-mml-800.json

Prints the test Recall@20 / NDCG@20 after every epoch and the best epoch by test Recall@20.
"""

from __future__ import annotations

import argparse
import json
import tomllib
from pathlib import Path

import negspace  # noqa: F401  -- first: its OpenMP setting must precede torch
import torch

from negspace.pipeline.build import build_model, build_objective, build_sampler
from negspace.pipeline.fit import load_for, split_for
from negspace.config import make_config
from negspace.training.trainer import Trainer, TrainerOptions


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("grid", type=Path, help="a grid TOML file; its [base] is the configuration")
    ap.add_argument("--set", nargs="*", default=[], help="KEY=VALUE overrides (e.g. negatives=800)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    values = tomllib.loads(args.grid.read_text())["base"]
    values.update({k: _value(v) for k, v in (s.split("=", 1) for s in args.set)})
    values.update(epochs=args.epochs, validation=0.0, progress=False)
    cfg = make_config(values)
    torch.set_num_threads(cfg.threads or 1)
    train, test = split_for(cfg, load_for(cfg))
    model = build_model(cfg, train.n_users, train.n_items, history=train)
    options = TrainerOptions(batch_size=cfg.batch_size, negatives=cfg.negatives, epochs=args.epochs,
                             lr=cfg.lr, seed=cfg.seed, patience=args.epochs, min_epochs=args.epochs,
                             select_metric="recall@20", progress=False)
    # The test file stands in for the validation split: that is the published protocol.
    result = Trainer(model, build_sampler(cfg), build_objective(cfg), train, options, test).fit()
    rows = [{"epoch": int(h["epoch"]), "recall@20": h["val_recall@20"], "ndcg@20": h["val_ndcg@20"],
             "seconds": h["seconds"]} for h in result.history]
    best = max(rows, key=lambda r: r["recall@20"])
    for r in rows:
        print(f"epoch {r['epoch']:3d}  test recall@20 {r['recall@20']:.4f}  ndcg@20 {r['ndcg@20']:.4f}"
              f"  ({r['seconds']:.1f}s)", flush=True)
    print(f"best by test recall@20: epoch {best['epoch']}: {best['recall@20']:.4f} / {best['ndcg@20']:.4f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"config": cfg.to_dict(), "epochs": rows, "best": best}, indent=1))
    tmp.replace(args.out)


if __name__ == "__main__":
    main()
