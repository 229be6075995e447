"""Interaction strength as confidence: values 1 + c x weight, epochs that draw pairs in
proportion to them, the in-batch log q of that draw, and the option from the CLI and Python."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from negspace import NegspaceError, Recommender
from negspace.data.confidence import confidence
from negspace.data.interactions import Interactions
from negspace.models import MF
from negspace.samplers import UniformSampler
from negspace.samplers.candidates import popularity_log_q
from negspace.training.objective import Objective
from negspace.training.trainer import Trainer, TrainerOptions


def _weighted() -> Interactions:
    # 3 users x 4 items; weights 0, 1, 4, 9 so confidences at c = 1 are 1, 2, 5, 10
    users = np.array([0, 0, 1, 1, 2, 2])
    items = np.array([0, 1, 1, 2, 2, 3])
    weights = np.array([0, 1, 4, 9, 0, 4], np.float64)
    return Interactions.from_indices(users, items, np.arange(3), np.arange(4), weights)


def test_confidence_values():
    inter = _weighted()
    assert confidence(inter, 1.0).matrix.data.tolist() == [1, 2, 5, 10, 1, 5]
    assert confidence(inter, 0.5).matrix.data.tolist() == [1, 1.5, 3, 5.5, 1, 3]
    assert confidence(inter, 0.0).matrix.data.tolist() == [1] * 6
    negative = inter.select(np.ones(6, bool))
    negative.matrix.data[0] = -1
    with pytest.raises(NegspaceError, match="weights >= 0"):
        confidence(negative, 1.0)


class _Recorder(Trainer):
    """Counts how often each (user, item) pair is a positive of a step; no update."""

    def step(self, users: torch.Tensor, items: torch.Tensor) -> float:
        self.seen.append(users.numpy() * 10 + items.numpy())
        return 0.0


def _epoch_counts(train: Interactions, weighted: bool, epochs: int) -> dict[int, int]:
    trainer = _Recorder(MF(3, 4, 4), UniformSampler(seed=0), Objective(loss="bpr"), train,
                        TrainerOptions(batch_size=4, negatives=1, seed=0, progress=False, epochs=20,
                                       prefetch=False, weighted=weighted))
    trainer.seen = []
    for _ in range(epochs):
        trainer.run_epoch(None)
        trainer.step_in_epoch = 0  # as Trainer._epoch does between epochs
    keys, counts = np.unique(np.concatenate(trainer.seen), return_counts=True)
    return dict(zip(keys.tolist(), counts.tolist()))


def test_weighted_epochs_draw_pairs_in_proportion_to_confidence():
    train = confidence(_weighted(), 1.0)
    plain = _epoch_counts(train, weighted=False, epochs=5)
    assert plain == {0: 5, 1: 5, 11: 5, 12: 5, 22: 5, 23: 5}  # each pair once an epoch
    counts = _epoch_counts(train, weighted=True, epochs=2000)  # 12000 draws
    assert sum(counts.values()) == 12000  # as many pairs an epoch as without weights
    share = np.array([counts.get(k, 0) for k in (0, 1, 11, 12, 22, 23)]) / 12000
    want = np.array([1, 2, 5, 10, 1, 5]) / 24
    assert np.abs(share - want).max() < 0.01, share  # binomial sd <= 0.0045
    again = _epoch_counts(train, weighted=True, epochs=2000)
    assert again == counts  # seeded


def test_in_batch_log_q_follows_the_weighted_draw():
    train = confidence(_weighted(), 1.0)
    per_item = np.array([1, 2 + 5, 10 + 1, 5], np.float64)
    assert np.allclose(popularity_log_q(train), np.log(per_item / per_item.sum()))
    assert np.allclose(popularity_log_q(train.binarized()), np.log(np.array([1, 2, 2, 1]) / 6))


def _plays() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"i{i}", int(rng.integers(0, 20)))
            for u in range(30) for i in rng.choice(40, 6, replace=False)]
    return pd.DataFrame(rows, columns=["user", "item", "plays"])


def test_python_uses_the_weight_column_or_refuses_to_drop_it():
    df = _plays()
    options = dict(dim=4, epochs=1, validation=0, progress=False, threads=1)
    rec = Recommender("mf", confidence=0.5, **options).fit(df, weight="plays")
    row = rec.train.matrix[rec.train.user_index("u0")].toarray()[0]
    mine = df[df.user == "u0"]
    want = 1 + 0.5 * mine.plays.to_numpy()
    assert np.allclose(row[[rec.train.item_index(i) for i in mine.item]], want)
    with pytest.raises(NegspaceError, match="only with confidence > 0"):
        Recommender("mf", **options).fit(df, weight="plays")
    filtered = Recommender("mf", **options).fit(df, weight="plays", min_weight=5)  # a filter
    assert filtered.train.nnz == (df.plays >= 5).sum()
    assert set(filtered.train.matrix.data) == {1.0}


def test_cli_confidence_reads_the_files_weights(tmp_path):
    from negspace.cli import main
    from negspace.data.loaders import load_dataset
    from negspace.pipeline.split import split_parts
    from negspace.config import make_config

    path = tmp_path / "plays.csv"
    _plays().to_csv(path, index=False)
    cfg = make_config(dict(dataset=str(path), confidence=2.0, weight_col="plays"))
    train, test, _ = split_parts(cfg, load_dataset(str(path)))
    loaded = load_dataset(str(path)).interactions
    keys = train.keys()
    u, i = keys // train.n_items, keys % train.n_items
    assert np.allclose(train.matrix.data, 1 + 2.0 * np.asarray(loaded.matrix[u, i]).ravel())
    assert set(test.matrix.data) == {1.0}  # the test set stays binary
    out = tmp_path / "run"
    assert main(["train", "--dataset", str(path), "--model", "mf", "--confidence", "2",
                 "--dim", "4", "--epochs", "1", "--no-progress", "--threads", "1",
                 "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["confidence"] == 2.0


def test_confidence_needs_pair_batches():
    from negspace.config import make_config, resolve_for_data

    auto = make_config(dict(model="mf", loss="softmax", sampler="auto", confidence=1.0))
    assert resolve_for_data(auto, 100, 100).batch_by == "pair"  # small data, yet pairs
    train = confidence(_weighted(), 1.0)
    with pytest.raises(NegspaceError, match="batch_by user draws users"):
        Trainer(MF(3, 4, 4), UniformSampler(seed=0), Objective(loss="bpr"), train,
                TrainerOptions(batch_by="user", weighted=True, progress=False, epochs=20))
