"""Re-evaluating and serving a finished run directory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from negspace.evaluation.evaluator import evaluate
from negspace.pipeline.filtering import ranking_scorer
from negspace.pipeline.rundir import load_run
from negspace.io import write_json
from negspace.evaluation.scoring import BufferedScorer
from negspace.errors import NegspaceError
from negspace.config import config_fields, make_config
from negspace.training.device import resolve_device


def _scorer(user_vectors: torch.Tensor, item_vectors: torch.Tensor, measure: str,
            device: str | torch.device | None = "cpu") -> BufferedScorer:
    """Scores on `device` (resolved as --device: auto, cpu, cuda, cuda:N); the chunks' scores
    and their top-k stay there, the users' indices and the top-k lists cross over."""
    dev = resolve_device(device)
    if dev.type == "cpu":
        return BufferedScorer(lambda users: user_vectors[users], item_vectors, measure)
    u, v = user_vectors.to(dev), item_vectors.to(dev)
    return BufferedScorer(lambda users: u[users.to(dev)], v, measure)


def evaluate_run(run_dir: str | Path, data_dir: str | None = None,
                 device: str | None = "auto") -> dict[str, float]:
    """Recomputes the test metrics of a run from its saved vectors and rewrites metrics.json.

    The run's dataset is read again by name: a run trained by `negspace train`, or one saved from
    Python after `fit` on a given-split dataset (its test part). A run fitted from Python on data
    held in memory, or on every interaction of a k-fold dataset (no test fold held out), is
    refused in one line: evaluate it with `Recommender.evaluate(test)`. `device`: where the
    scores are computed (--device; a GPU's metrics may differ from the CPU's by float rounding).
    """
    from negspace.pipeline.fit import load_for, split_for

    run = load_run(run_dir)
    known = {f.name for f in config_fields()}
    values = {k: v for k, v in run.config.items() if k in known}
    if data_dir is not None:
        values["data_dir"] = data_dir
    python = run.config.get("protocol") == "python"
    if python and (run.config.get("dataset") is None or "data" not in run.config):
        raise NegspaceError(f"{run_dir} was fitted from Python on "
                            f"{run.config.get('data', 'data held in memory')}, which negspace "
                            "evaluate cannot read again: use Recommender.evaluate(test)")
    cfg = make_config(values)
    dataset = load_for(cfg)
    if python and dataset.protocol != "given":
        raise NegspaceError(f"{run_dir} was fitted from Python on every interaction of "
                            f"{cfg.dataset} (no test fold held out): use Recommender.evaluate(test) "
                            "on interactions it has not seen")
    test = dataset.test.binarized() if python else split_for(cfg, dataset)[1]
    if not (_same_ids(test.user_ids, run.train.user_ids)
            and _same_ids(test.item_ids, run.train.item_ids)):
        raise NegspaceError(f"{cfg.dataset} no longer holds the users and items {run_dir} was "
                            "trained on (changed since, or other loading options)")
    scorer = ranking_scorer(_scorer(run.user_vectors, run.item_vectors, run.measure, device),
                            run.train, cfg.item_filter_weight or 0.0)
    metrics = evaluate(scorer, run.train, test, ks=(20, 50))
    old = Path(run_dir) / "metrics.json"
    previous = json.loads(old.read_text()) if old.exists() else {}
    write_json(old, {**previous, **{k: float(v) for k, v in metrics.items()}})
    return metrics


def _same_ids(a: np.ndarray, b: np.ndarray) -> bool:
    return len(a) == len(b) and bool((a.astype(str) == b.astype(str)).all())
