"""Test metrics of an unfinished run's best validated weights (RUN_DIR/checkpoint.pt).

A one-off for runs stopped before early stopping ended them (no metrics.json yet): the weights
are the ones the plateau schedule would keep so far (`best_state`, chosen on validation), and the
test split is read once, as `negspace train` would at the end. A lower bound of the finished
run's result only while validation was still rising.

Run:  .venv/bin/python bench/research/checkpoint_test.py RUN_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import negspace  # noqa: F401  -- first: its OpenMP setting must precede torch

from negspace.evaluation.evaluator import evaluate
from negspace.pipeline.build import build_model
from negspace.pipeline.fit import load_for, split_for
from negspace.training.checkpoint import load_checkpoint
from negspace.config import make_config
from negspace.training.trainer import score_fn


def main(run_dir: str) -> None:
    run = Path(run_dir)
    stored = json.loads((run / "config.json").read_text())
    cfg = make_config({k: v for k, v in stored.items() if k not in ("protocol", "commit")})
    train, test = split_for(cfg, load_for(cfg))
    state = load_checkpoint(run / "checkpoint.pt")
    model = build_model(cfg, train.n_users, train.n_items)
    model.load_state_dict(state["best_state"] or state["model"])
    model.eval()
    result = state["result"]
    metrics = evaluate(score_fn(model), train, test, ks=(20, 50))
    print(f"{run}: best validated epoch {result['best_epoch']} of {len(result['history'])} "
          f"(val {result['best_score']:.4f}); train s {result['train_seconds']:.0f}; test "
          + "  ".join(f"{k} {metrics[k]:.4f}" for k in ("recall@20", "ndcg@20", "map@50")))


if __name__ == "__main__":
    main(sys.argv[1])
