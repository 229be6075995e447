"""Plotting is an extra: without matplotlib a tuning study, a grid summary and a two-tower run
write everything but their PNGs, and say so in one line."""

import sys
from pathlib import Path

import pandas as pd
import pytest

import negspace.plotting
from negspace.tuning.grid import plot
from negspace.pipeline.towers import plot_drift

from .conftest import random_interactions

SPACE = """
[study]
startup_trials = 2
[fixed]
model = "mf"
dim = 8
batch_size = 128
epochs = 2
min_epochs = 1
[search]
lr = { log = [1e-3, 0.1] }
"""
TABLE = pd.DataFrame({"sampler": ["uniform", "uniform"], "batch_size": [64, 128],
                      "recall@20": [0.1, 0.2], "recall@20_std": [0.0, 0.0]})
HISTORY = [{"epoch": 1, "drift_1": 0.1, "drift_5": 0.2, "drift_10": 0.3},
           {"epoch": 2, "drift_1": 0.05, "drift_5": 0.1, "drift_10": 0.2}]


def _tune(tmp_path: Path) -> Path:
    pytest.importorskip("optuna")
    from negspace.tuning import run_tune

    users, items = random_interactions(n_users=40, n_items=50, density=0.15, seed=3,
                                       dense_user=False).pairs()
    toy = tmp_path / "toy.csv"
    toy.write_text("user,item\n" + "".join(f"{u},{i}\n" for u, i in zip(users, items)))
    space = tmp_path / "space.toml"
    space.write_text(SPACE)
    out = tmp_path / "tune"
    run_tune(space, "2m", trials=2, out=out, overrides={"dataset": str(toy)})
    return out


def test_without_matplotlib_everything_but_the_pngs_is_written_and_said_once(
        tmp_path, monkeypatch, capsys):
    for name in ("matplotlib", "matplotlib.pyplot", "matplotlib.ticker"):
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError
    monkeypatch.setattr(negspace.plotting, "_told", False)
    out = _tune(tmp_path)
    plot(TABLE, ["sampler", "batch_size"], ["recall@20"], tmp_path)
    plot_drift(tmp_path, HISTORY)
    report = (out / "report.md").read_text()
    assert "## Best trials" in report and "![" not in report
    assert (out / "recipe.toml").exists()
    assert not list(tmp_path.rglob("*.png"))
    err = capsys.readouterr().err
    assert err.count("matplotlib is not installed") == 1, err


def test_with_matplotlib_the_same_calls_write_the_pngs(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(negspace.plotting, "_told", False)
    plot(TABLE, ["sampler", "batch_size"], ["recall@20"], tmp_path)
    plot_drift(tmp_path, HISTORY)
    assert len(list(tmp_path.glob("*.png"))) == 2
    assert "matplotlib" not in capsys.readouterr().err
