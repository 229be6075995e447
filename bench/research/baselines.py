"""Non-learned reference points for the k-fold protocol: ranking by training popularity and at random.

Run:  .venv/bin/python bench/research/baselines.py [DATASET ...] [--folds 4] [--seed 0]

Uses the same seeded 4-fold split as `negspace train --seed S --fold I`, so the numbers sit beside a
grid's table (mean +- sample std over the folds).
"""

from __future__ import annotations

import argparse

import negspace  # noqa: F401  -- before torch, for its OpenMP setting
import torch

from negspace.data.loaders import load_dataset
from negspace.data.splits import kfold_split
from negspace.evaluation.evaluator import evaluate, evaluate_folds

METRICS = ("map@50", "ndcg@50", "recall@50", "mmr@50")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("datasets", nargs="*", default=["lastfm-hetrec2011", "book-crossing-caserec-subset"])
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print("| dataset | ranking | " + " | ".join(METRICS) + " |")
    print("|---|---|" + "---|" * len(METRICS))
    for name in args.datasets:
        inter = load_dataset(name).interactions.binarized()
        per = {"popularity": [], "random": []}
        for fold in range(args.folds):
            train, test = kfold_split(inter, args.folds, fold, args.seed)
            counts = torch.from_numpy(train.item_counts()).float()
            per["popularity"].append(evaluate(lambda u: counts.expand(len(u), -1), train, test, ks=(50,)))
            noise = torch.Generator().manual_seed(args.seed + fold)
            per["random"].append(evaluate(lambda u: torch.rand(len(u), len(counts), generator=noise),
                                          train, test, ks=(50,)))
        for ranking, results in per.items():
            agg = evaluate_folds(results)
            cells = [f"{agg[m]:.4f} +- {agg[m + '_std']:.4f}" for m in METRICS]
            print(f"| {name} | {ranking} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
