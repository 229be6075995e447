"""Re-evaluating and serving a finished run directory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from negspace.evaluation.evaluator import evaluate
from negspace.experiments.rundir import load_run
from negspace.io import write_json
from negspace.models.base import score_matrix
from negspace.retrieval.topk import topk_items
from negspace.training.config import make_config


def _scorer(user_vectors: torch.Tensor, item_vectors: torch.Tensor, measure: str):
    def score(users: torch.Tensor) -> torch.Tensor:
        return score_matrix(user_vectors[users], item_vectors, measure)
    return score


def evaluate_run(run_dir: str | Path, data_dir: str | None = None) -> dict[str, float]:
    """Recomputes the test metrics of a run from its saved vectors and rewrites metrics.json."""
    from negspace.experiments.run import load_for, split_for

    run = load_run(run_dir)
    values = {k: v for k, v in run.config.items() if k != "protocol"}
    if data_dir is not None:
        values["data_dir"] = data_dir
    cfg = make_config(values)
    _, test = split_for(cfg, load_for(cfg))
    metrics = evaluate(_scorer(run.user_vectors, run.item_vectors, run.measure), run.train, test,
                       ks=(20, 50))
    old = Path(run_dir) / "metrics.json"
    previous = json.loads(old.read_text()) if old.exists() else {}
    write_json(old, {**previous, **{k: float(v) for k, v in metrics.items()}})
    return metrics


def recommend_for(run_dir: str | Path, user: str, k: int) -> tuple[list, list[float]]:
    """Top-k external item ids and scores for an external user id, never the user's training items."""
    run = load_run(run_dir)
    row = run.train.user_index(user)
    items, scores = topk_items(_scorer(run.user_vectors, run.item_vectors, run.measure),
                               np.array([row]), k, exclude=run.train)
    keep = items[0] >= 0
    return run.train.item_ids[items[0][keep]].tolist(), scores[0][keep].astype(float).tolist()
