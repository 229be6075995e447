"""Validation curves of the default recipe from the spectral start and from a random one.

    python bench/research/spectral_start.py --dataset gowalla-lightgcn --init spectral \
        [--exact-svd] [--epochs 25] [--set layers=2 ...]

Trains the default recipe as resolved for the data (without its refit), from `--init`, and
prints each epoch's validation row (the test split is never read). `--exact-svd` replaces the
shipped randomized SVD by ARPACK's exact one (scipy.sparse.linalg.svds), the start the first
gowalla-lightgcn curve in bench/records/accuracy.jsonl was measured from. `--set key=value`
(repeatable) changes one more option of the recipe, e.g. `--set layers=2` (a graph encoder).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.sparse.linalg import svds

from negspace.config import make_config, resolve_for_data, with_default_recipe
from negspace.models.spectral import low_pass_factors, normalised_matrix
from negspace.pipeline.build import build_trainer
from negspace.pipeline.fit import load_for
from negspace.pipeline.split import split_with_validation
from negspace.training.options import TrainerOptions

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/
from harness import recipe_option  # noqa: E402


def exact_start(history, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    r, normalised, di = normalised_matrix(history.matrix)
    v0 = np.random.default_rng(seed).uniform(-1, 1, min(r.shape))
    _, _, vt = svds(normalised, k=dim, v0=v0)
    users, items = low_pass_factors(r, di, vt.T)
    return tuple(t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)
                 for t in (users, items))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--init", choices=["spectral", "normal"], default="spectral")
    p.add_argument("--exact-svd", action="store_true")
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--select", default="recall@20",
                   help="the validation metric that picks the best epoch (ndcg@50 on k-fold sets)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="one more recipe option (a JSON value, or a string)")
    a = p.parse_args()
    extra = dict(recipe_option(s) for s in a.set)
    torch.set_num_threads(a.threads)
    cfg = make_config(with_default_recipe({"dataset": a.dataset, "init": a.init, "refit": "no",
                                           "epochs": a.epochs, "progress": False,
                                           "threads": a.threads, **extra}))
    train, _, fit_on, validation = split_with_validation(cfg, load_for(cfg))
    cfg = resolve_for_data(cfg, train.n_users, train.n_items, train.nnz)
    print(f"d {cfg.dim}, T {cfg.temperature}, sampler {cfg.sampler}, init {cfg.init}"
          + "".join(f", {k} {v}" for k, v in extra.items()), flush=True)
    shown = ("epoch", "lr", "cpu_seconds", "val_recall@20", "val_ndcg@20", f"val_{a.select}",
             "val_map@50")
    options = TrainerOptions.from_config(cfg, a.select, on_epoch=lambda row: print(
        {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items() if k in shown},
        flush=True))
    t = time.perf_counter()
    trainer = build_trainer(cfg, train.n_users, train.n_items, fit_on, validation, options,
                            torch.device("cpu"))
    if a.exact_svd and a.init == "spectral":
        trainer.model.start_from(*(x.astype(np.float32) for x in exact_start(fit_on, cfg.dim, cfg.seed)))
    print(f"start {time.perf_counter() - t:.1f} s", flush=True)
    result = trainer.fit()
    print(f"best epoch {result.best_epoch}", flush=True)


if __name__ == "__main__":
    main()
