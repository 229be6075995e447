"""The test split cannot influence training: the same training file with two different test files
gives the same validation curves, chosen epochs, trials, recipe and weights; only the test
metrics differ."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from negspace.pipeline.fit import run_training
from negspace.config import load_toml, make_config

from .conftest import random_interactions


def _folders(tmp_path: Path) -> list[Path]:
    """Two train/test folders: one train.txt; test.txt files holding different pairs, drawn from
    items and users the training file has (so the id maps, and the model's shape, agree)."""
    inter = random_interactions(n_users=40, n_items=60, density=0.25, seed=4, dense_user=False)
    rng = np.random.default_rng(9)
    train, tests = {}, ({}, {})
    for u in range(inter.n_users):
        items = inter.matrix.indices[inter.matrix.indptr[u]:inter.matrix.indptr[u + 1]].tolist()
        rng.shuffle(items)
        cut = max(1, len(items) - 4)
        train[u] = items[:cut]
        held = items[cut:]
        tests[0][u], tests[1][u] = held[0::2], held[1::2]  # disjoint
    seen_items = {i for items in train.values() for i in items}
    folders = []
    for k, test in enumerate(tests):
        folder = tmp_path / f"data{k}"
        folder.mkdir()
        lines = lambda rows: "".join(f"{u} {' '.join(map(str, rows[u]))}\n" for u in rows
                                     if [i for i in rows[u] if i in seen_items])
        (folder / "train.txt").write_text(lines(train))
        (folder / "test.txt").write_text("".join(
            f"{u} {' '.join(str(i) for i in items if i in seen_items)}\n"
            for u, items in test.items() if any(i in seen_items for i in items)))
        folders.append(folder)
    assert (folders[0] / "test.txt").read_text() != (folders[1] / "test.txt").read_text()
    return folders


def _values(folder: Path) -> dict:
    return dict(dataset=str(folder), model="mf", loss="softmax", sampler="full", batch_by="user",
                dim=8, epochs=6, lr=0.05, temperature=0.2, seed=2, validation=0.2, patience=2,
                progress=False)


def test_training_does_not_see_the_test_file(tmp_path):
    runs = [run_training(make_config(_values(f))) for f in _folders(tmp_path)]
    a, b = runs
    assert a.history == [{**row, "seconds": r["seconds"], "cpu_seconds": r["cpu_seconds"]}
                         for row, r in zip(b.history, a.history)]
    assert a.metrics["best_epoch"] == b.metrics["best_epoch"]
    for name, p in a.model.state_dict().items():
        assert torch.equal(p, b.model.state_dict()[name]), name
    assert a.metrics["ndcg@50"] != b.metrics["ndcg@50"]  # the test files do differ


SPACE = """
[study]
startup_trials = 2
prune_after_trials = 1
warmup_epochs = 1

[fixed]
model = "mf"
dim = 8
batch_size = 64
epochs = 4
min_epochs = 1

[search]
lr = { log = [1e-3, 0.1] }
loss = ["bpr", "softmax"]
"""


def test_tuning_does_not_see_the_test_file(tmp_path):
    pytest.importorskip("optuna")
    import optuna

    from negspace.tuning import run_tune
    space = tmp_path / "space.toml"
    space.write_text(SPACE)
    results, trials = [], []
    for k, folder in enumerate(_folders(tmp_path)):
        out = tmp_path / f"tune{k}"
        results.append(run_tune(space, "5m", trials=3, out=out,
                                overrides={"dataset": str(folder)}))
        study = optuna.load_study(study_name=f"space-{folder.name}",
                                  storage=f"sqlite:///{out / 'study.db'}")
        trials.append([(t.params, t.value, t.user_attrs.get("best_epoch")) for t in study.trials])
    a, b = results
    assert trials[0] == trials[1]
    assert (a.best_params, a.best_value, a.best_epoch) == (b.best_params, b.best_value, b.best_epoch)
    recipes = [{k: v for k, v in load_toml(r.recipe_path).items() if k != "dataset"}
               for r in results]
    assert recipes[0] == recipes[1]
    weights = [load_file(str(tmp_path / f"tune{k}" / "refit" / "model.safetensors"))
               for k in (0, 1)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][n], weights[1][n]) for n in weights[0])
    refit = [json.loads((tmp_path / f"tune{k}" / "refit" / "metrics.json").read_text())
             for k in (0, 1)]
    assert refit[0]["ndcg@50"] != refit[1]["ndcg@50"]  # the test files do differ
