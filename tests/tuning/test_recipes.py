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
