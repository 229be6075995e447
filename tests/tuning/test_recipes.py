"""The shipped recipes (configs/recipes/*.toml): each one loads as a training config, names the
dataset it is for, and says at its top which tuner command found it and what it measured."""

from pathlib import Path

import pytest

from negspace.data.catalogue import REGISTRY
from negspace.config import load_toml, make_config

RECIPES = sorted((Path(__file__).resolve().parents[2] / "configs" / "recipes").glob("*.toml"))


def test_there_is_a_recipe_for_every_named_dataset():
    # the registry holds every shared dataset with interactions (movielens-1m-partial has none)
    missing = set(REGISTRY) - {p.stem for p in RECIPES}
    assert not missing, sorted(missing)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_a_recipe_is_a_valid_config_for_its_dataset(path: Path):
    values = load_toml(path)
    cfg = make_config(values)
    assert cfg.dataset == path.stem  # the file is named after the dataset it was tuned on
    assert cfg.validation == 0.0  # a refit on every training interaction, epochs fixed
    if cfg.lr_schedule == "steps":
        assert all(0 < s <= cfg.epochs for s in cfg.lr_step_list)
    header = path.read_text().splitlines()
    assert header[0].startswith("# Found by") and "negspace tune configs/spaces/" in header[0]
    assert any(line.startswith("# Measured") for line in header)


def _space_of(path: Path):
    """The space the recipe's first line names (`negspace tune configs/spaces/X.toml ...`)."""
    import re

    from negspace.tuning import load_space
    named = re.search(r"negspace tune (configs/spaces/\S+\.toml)", path.read_text().splitlines()[0])
    assert named, "the recipe names the space that found it"
    return load_space(Path(__file__).resolve().parents[2] / named[1], {"dataset": path.stem})


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_a_recipe_lies_in_the_space_that_found_it(path: Path):
    values, space = load_toml(path), _space_of(path)
    for key, fixed in space.fixed.items():  # the refit sets its own epoch count, up to the cap
        if key == "epochs":
            assert 1 <= values["epochs"] <= fixed
        elif key != "dataset":
            assert values.get(key) == fixed, key
    searched = {p.name for p in space.params}
    for p in space.params:
        if p.active({**space.fixed, **values}):
            assert p.name in values and p.contains(values[p.name]), (p.name, values.get(p.name))
        else:
            assert p.name not in values, p.name
    extra = set(values) - set(space.fixed) - searched
    # the refit's settings, and the item filter's weight chosen on the validated model after it
    assert extra <= {"dataset", "validation", "lr_schedule", "lr_steps", "item_filter"}, extra


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_a_recipe_trains(path: Path, tmp_path):
    """One epoch of the recipe's options on a small synthetic file instead of its dataset."""
    from negspace.pipeline.fit import run_training

    from ..conftest import random_interactions
    inter = random_interactions(n_users=60, n_items=80, density=0.15, seed=2, dense_user=False)
    users, items = inter.pairs()
    csv = tmp_path / "toy.csv"
    csv.write_text("user,item\n" + "\n".join(f"{u},{i}" for u, i in zip(users, items)) + "\n")
    values = {k: v for k, v in load_toml(path).items() if k not in ("lr_schedule", "lr_steps")}
    out = run_training(make_config({**values, "dataset": str(csv), "epochs": 1, "threads": 1,
                                    "progress": False}))
    assert len(out.history) == 1 and out.history[0]["loss"] == out.history[0]["loss"]  # not NaN
    assert out.metrics["ndcg@50"] > 0
