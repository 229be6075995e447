"""Does a given split's test set look like a random split of the same interactions? A diagnostic
for the gap between validation and test rankings of methods on a published split.

    python bench/research/split_skew.py --dataset gowalla-lightgcn [--resplit DIR] [--seed 0]

Validation is carved from training at random (10% of each user's items), so settings chosen on
it transfer to the test split only as far as the test split is random too. This prints, for the
given test split, for a random resplit of the same interactions (each user's training and test
items pooled and redrawn, each user keeping their number of test items) and for the validation
carve of the given training split, the Recall@20 of ranking by popularity (training degree) and
the mean training degree of the held-out items. With `--resplit DIR` the resplit is written
there as train.txt.gz / test.txt.gz (the LightGCN format `negspace train --dataset DIR` reads),
so that any method can be measured on both splits. Nothing is chosen here.
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np
import torch

from negspace.data import load_dataset
from negspace.data.interactions import Interactions
from negspace.data.splits import holdout_split
from negspace.data.synth import write_lists
from negspace.evaluation.evaluator import evaluate


def resplit(train: Interactions, test: Interactions, seed: int) -> tuple[Interactions, Interactions]:
    """Each user's training and test items pooled and redrawn at random, the user's number of
    test items kept."""
    rng = np.random.default_rng(seed)
    pooled = (train.matrix.tocsr() + test.matrix.tocsr()).tocsr()
    pooled.data[:] = 1.0
    rows_tr, cols_tr, rows_te, cols_te = [], [], [], []
    n_test = np.diff(test.matrix.tocsr().indptr)
    for u in range(pooled.shape[0]):
        items = pooled.indices[pooled.indptr[u]:pooled.indptr[u + 1]]
        items = items[rng.permutation(len(items))]
        k = int(n_test[u])
        rows_te += [u] * k
        cols_te += items[:k].tolist()
        rows_tr += [u] * (len(items) - k)
        cols_tr += items[k:].tolist()

    return (Interactions.from_indices(rows_tr, cols_tr, train.user_ids, train.item_ids),
            Interactions.from_indices(rows_te, cols_te, train.user_ids, train.item_ids))


def popularity(train: Interactions, held: Interactions) -> dict[str, float]:
    """Recall@20 of ranking every user's unseen items by training degree, and the held-out
    items' mean training degree."""
    degree = torch.from_numpy(np.asarray(train.matrix.sum(axis=0)).ravel().astype(np.float32))
    recall = evaluate(lambda users: degree.expand(len(users), -1).clone(), train, held,
                      ks=(20,))["recall@20"]
    held_items = held.matrix.tocsr().indices
    return {"most-popular recall@20": round(recall, 4),
            "held-out items' mean training degree": round(float(degree[held_items].mean()), 1)}


def write(train: Interactions, test: Interactions, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", train), ("test", test)):
        m = part.matrix.tocsr()  # the external ids, as the given files have them
        users = np.repeat(part.user_ids, np.diff(m.indptr))
        with gzip.open(out / f"{name}.txt.gz", "wt") as f:
            write_lists(f, users, part.item_ids[m.indices])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True, help="a dataset with a given train/test split")
    p.add_argument("--resplit", type=Path, help="write the random resplit to this folder")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    data = load_dataset(a.dataset)
    if data.protocol != "given":
        raise SystemExit(f"{a.dataset} has no given test split")
    train, test = data.interactions.binarized(), data.test.binarized()
    again_train, again_test = resplit(train, test, a.seed)
    fit_on, validation = holdout_split(train, 0.1, a.seed)
    for name, (tr, held) in {"given test split": (train, test),
                             "random resplit's test split": (again_train, again_test),
                             "validation carve of the given training split": (fit_on, validation),
                             }.items():
        print(f"{name}: {popularity(tr, held)}", flush=True)
    if a.resplit:
        write(again_train, again_test, a.resplit)
        print(f"resplit written to {a.resplit}")


if __name__ == "__main__":
    main()
