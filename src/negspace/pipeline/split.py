"""The test and validation splits of a run: k-fold, the given split, or by time.

Leakage rules, the same for every split: the test set is cut first; validation is carved from
the training part only, by the same rule (a random per-user hold-out for k-fold and given splits,
the latest training interactions for the time splits), so validation and test are disjoint and
nothing the model selects on comes from the test set.
"""

from __future__ import annotations

import numpy as np

from negspace.data.confidence import confidence
from negspace.data.dataset import Dataset
from negspace.data.interactions import Interactions
from negspace.data.splits import (holdout_split, kfold_split, last_split, sample_users,
                                  time_split)
from negspace.errors import NegspaceError
from negspace.config import TrainConfig, resolve_for_data


def _mode(cfg: TrainConfig, dataset: Dataset) -> str:
    split = getattr(cfg, "split", "auto")
    if split == "auto":
        return "given" if dataset.protocol == "given" else "kfold"
    if split == "given" and dataset.protocol != "given":
        raise NegspaceError(f"--split given needs a dataset with a published test set; "
                            f"{dataset.name} has none (use kfold, time or last)")
    if split != "given" and dataset.protocol == "given":
        raise NegspaceError(f"{dataset.name} is a published train/test split; --split {split} "
                            "would replace its test set (use --split auto or given)")
    return split


def split_parts(cfg: TrainConfig, dataset: Dataset
                ) -> tuple[Interactions, Interactions, np.ndarray | None]:
    """(training interactions, test interactions, times of the training ones or None)."""
    mode = _mode(cfg, dataset)
    # training values: 1, or each pair's confidence 1 + c x weight (data/confidence.py)
    inter = confidence(dataset.interactions, getattr(cfg, "confidence", 0.0))
    if mode == "given":
        return inter, dataset.test.binarized(), None
    if mode == "kfold":
        train, test = kfold_split(inter, cfg.n_folds, cfg.fold, cfg.seed)
        return train, test.binarized(), None
    if mode == "time":
        train, test, times = time_split(inter, dataset.times, cfg.time_cut)
    else:
        train, test, times = last_split(inter, dataset.times, cfg.last_n)
    return train, test.binarized(), times


def resolved_split(cfg: TrainConfig, dataset: Dataset
                   ) -> tuple[TrainConfig, Interactions, Interactions, Interactions,
                              Interactions | None]:
    """A run's split in the order the run takes it: `split_parts`, then the recipe's choices by
    the training part's size (`resolve_for_data`; its val_users among them, so validation users
    are sampled once, by the resolved count), then `hold_out_validation`.

    Returns:
        (the resolved configuration, train, test, the part trained on, validation or None).
    """
    train, test, times = split_parts(cfg, dataset)
    cfg = resolve_for_data(cfg, train.n_users, train.n_items, train.nnz)
    return (cfg, train, test, *hold_out_validation(cfg, dataset, train, times))


def split_with_validation(cfg: TrainConfig, dataset: Dataset
                          ) -> tuple[Interactions, Interactions, Interactions,
                                     Interactions | None]:
    """(train, test, the part trained on, validation or None) of a run: `split_parts`, then
    `hold_out_validation` on its training part."""
    train, test, times = split_parts(cfg, dataset)
    return (train, test, *hold_out_validation(cfg, dataset, train, times))


def hold_out_validation(cfg: TrainConfig, dataset: Dataset, train: Interactions,
                        times: np.ndarray | None) -> tuple[Interactions, Interactions | None]:
    """Carves the validation split from a run's training interactions.

    Validation (when `cfg.validation` > 0) comes from `train` only: k-fold and given splits hold
    out `cfg.validation` of each user's training items at random; `--split time` holds out the
    latest `cfg.validation` share of the training interactions (a second global cut, before the
    test cut); `--split last` each user's last `cfg.last_n` training interactions. With
    `cfg.val_users` the validation keeps a seeded sample of that many users.

    Args:
        cfg: the configuration (its val_users resolved when the recipe chooses it by size).
        dataset: the run's dataset (its protocol picks the split mode).
        train: the training interactions (`split_parts`).
        times: their times, for the time splits (`split_parts`).

    Returns:
        (the part trained on, validation or None).
    """
    if cfg.validation <= 0:
        return train, None
    mode = _mode(cfg, dataset)
    if mode == "time":
        fit_on, validation, _ = time_split(train, times, 1.0 - cfg.validation, "validation")
    elif mode == "last":
        fit_on, validation, _ = last_split(train, times, cfg.last_n)
    else:
        fit_on, validation = holdout_split(train, cfg.validation, cfg.seed)
    return fit_on, sample_users(validation, getattr(cfg, "val_users", 0) or 0, cfg.seed)
