"""Validation of the item-item graph filter's blend (`--item-filter`), on the default's own split.

    python bench/research/item_filter.py --dataset gowalla-lightgcn [--threads 2] [--set k=v ...]

Trains the default recipe's validated model (no refit, no filter; the test split is never read),
then prints the validation metric of (1 - W) z(model) + W z(filter) for every weight of the grid
`--item-filter auto` chooses from (evaluation/filter_choice.py), on all validation users and on
each half of them (even and odd positions), so a gain can be told from the noise.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from negspace.config import make_config, with_default_recipe
from negspace.evaluation.filter_choice import WEIGHTS, choose_weight
from negspace.pipeline.fit import load_for, run_training
from negspace.pipeline.split import resolved_split
from negspace.retrieval.item_filter import ItemFilter
from negspace.training.options import selection_metric
from negspace.training.trainer import score_fn


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--weights", type=float, nargs="+", default=list(WEIGHTS))
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="options on top of the default recipe")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    values = {"dataset": a.dataset, "progress": False, "refit": "no", "item_filter": "0",
              "threads": a.threads}
    values.update(kv.split("=", 1) for kv in a.set)
    cfg = make_config(with_default_recipe(values))
    dataset = load_for(cfg)
    resolved, _, _, fit_on, validation = resolved_split(cfg, dataset)
    select = selection_metric(resolved, dataset.protocol)
    t = time.perf_counter()
    out = run_training(cfg, None, evaluate_test=False, dataset=dataset)
    print(f"{a.dataset}: validated model, best epoch {out.metrics['best_epoch']}, "
          f"{time.perf_counter() - t:.1f} s", flush=True)
    model = out.model
    if model.reads_history:  # run_training left it on the whole training graph
        model.set_history(fit_on)
    t = time.perf_counter()
    item_filter = ItemFilter(fit_on)
    users = np.flatnonzero(validation.user_degrees() > 0)
    rows, _ = validation.pairs()
    halves = []
    for i in (0, 1):
        keep = np.zeros(validation.n_users, bool)
        keep[users[i::2]] = True
        halves.append(validation.select(keep[rows]))
    _, whole = choose_weight(score_fn(model), item_filter, fit_on, validation, select, a.weights)
    parts = [choose_weight(score_fn(model), item_filter, fit_on, h, select, a.weights)[1]
             for h in halves]
    print(f"grid {time.perf_counter() - t:.1f} s (three passes)", flush=True)
    for w in a.weights:
        print(f"  weight {w:g}: validation {select} {whole[w]:.4f}  "
              f"(halves {parts[0][w]:.4f} / {parts[1][w]:.4f})", flush=True)


if __name__ == "__main__":
    main()
