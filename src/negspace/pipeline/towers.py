"""Two-tower run files: side features for training, tower weights and feature encoders in the run
directory, the drift plot, and cold-start recommendations for users unseen in training."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from negspace.data.dataset import Dataset
from negspace.data.features import FeatureEncoder, encode_side_features
from negspace.errors import NegspaceError
from negspace.io import atomic_write, write_json
from negspace.models.two_tower import TwoTower
from negspace.plotting import pyplot_or_none

TOWERS_FILE = "towers.safetensors"
FEATURES_FILE = "features.json"
DRIFT_PLOT = "drift.png"


@dataclass
class TowerFeatures:
    """Encoded side features ([n, F] float32 or None) and the encoders that produced them."""

    users: np.ndarray | None = None
    items: np.ndarray | None = None
    user_encoder: FeatureEncoder | None = None
    item_encoder: FeatureEncoder | None = None


def tower_features(dataset: Dataset) -> TowerFeatures:
    """Encodes the dataset's user and item side features (rows in the interactions' id order)."""
    users, user_encoder = encode_side_features(dataset.user_features)
    items, item_encoder = encode_side_features(dataset.item_features)
    return TowerFeatures(users, items, user_encoder, item_encoder)


def save_towers(run_dir: Path, model: TwoTower, features: TowerFeatures | None) -> None:
    """Writes the towers' weights (safetensors) and the feature encoders (JSON)."""
    f = features or TowerFeatures()
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(run_dir / TOWERS_FILE, lambda tmp: save_file(tensors, tmp))
    write_json(run_dir / FEATURES_FILE, {
        "user": f.user_encoder.to_json() if f.user_encoder else None,
        "item": f.item_encoder.to_json() if f.item_encoder else None,
        "n_user_features": model.n_user_features, "n_item_features": model.n_item_features,
        "dim": model.dim, "history_len": model.history_len, "measure": model.measure})


def plot_drift(run_dir: Path, history: list[dict]) -> None:
    """drift.png: the summed change of the followed item vectors over 1, 5 and 10 steps, per epoch."""
    plt = pyplot_or_none()
    if plt is None:
        return

    epochs = [row["epoch"] for row in history]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for k in (1, 5, 10):
        ax.plot(epochs, [row.get(f"drift_{k}", float("nan")) for row in history], marker="o",
                label=f"over {k} step{'s' if k > 1 else ''}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("summed change of item vectors")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(run_dir / DRIFT_PLOT, dpi=110)
    plt.close(fig)


def load_towers(run_dir: str | Path) -> tuple[TwoTower, dict[str, Any], Any]:
    """Rebuilds a run's two-tower model from its weights and encoders (no pickle).

    Returns:
        (model in eval mode, the features.json content, the run as `load_run` reads it).
    """
    from negspace.pipeline.rundir import load_run

    run_dir = Path(run_dir)
    run = load_run(run_dir)
    if not (run_dir / TOWERS_FILE).exists() or not (run_dir / FEATURES_FILE).exists():
        raise NegspaceError(f"{run_dir} is not a two-tower run (no {TOWERS_FILE} or {FEATURES_FILE})")
    try:
        meta = json.loads((run_dir / FEATURES_FILE).read_text())
        weights = load_file(str(run_dir / TOWERS_FILE))
    except (OSError, ValueError) as e:
        raise NegspaceError(f"{run_dir}: cannot read the tower files: {e}") from None
    n_users, n_items = run.train.n_users, run.train.n_items
    fu, fi = meta["n_user_features"], meta["n_item_features"]
    model = TwoTower(n_users, n_items, meta["dim"], run.train,
                     np.zeros((n_users, fu), np.float32) if fu else None,
                     np.zeros((n_items, fi), np.float32) if fi else None,
                     history_len=meta["history_len"], measure=meta["measure"])
    model.load_state_dict(weights)
    return model.eval(), meta, run


def read_cold_user(path: str | Path) -> tuple[dict[str, Any], list]:
    """Reads a new user's JSON file: {"features": {column: value}, "items": [external item ids]}."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise NegspaceError(f"features file not found: {path}") from None
    except (OSError, ValueError) as e:
        raise NegspaceError(f"{path}: not a JSON file ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("features", {}), dict) \
            or not isinstance(data.get("items", []), list):
        raise NegspaceError(f'{path}: expected {{"features": {{...}}, "items": [...]}}')
    return data.get("features", {}), data.get("items", [])


def cold_vectors(model: TwoTower, user_encoder: list | None, features: list,
                 histories: list[list[int]]) -> torch.Tensor:
    """User vectors of new users from their side features and known item indices (the towers'
    cold start, shared by `Recommender.recommend_new`, `negspace recommend --features` and
    `negspace serve`).

    Args:
        model: the trained towers.
        user_encoder: the user feature encoder's JSON (features.json "user"), or None when the
            model reads no user features (then `features` is ignored).
        features: per new user, {column: value} or None; missing columns encode as unknown.
        histories: per new user, item indices (may be empty).

    Returns:
        [len(histories), dim] user vectors.
    """
    x = None
    given = [f for f in features if f]
    if given and not user_encoder:
        raise NegspaceError(f"this run reads no user side features; got "
                            f"{', '.join(map(repr, given[0]))}: give the user's items only")
    if user_encoder:
        encoder = FeatureEncoder.from_json(user_encoder)
        for f in given:  # an unknown column or value is refused, never encoded as unknown
            encoder.check(f)
        names = [c["name"] for c in encoder.columns]
        rows = [{name: (f or {}).get(name) for name in names} for f in features]
        x = torch.from_numpy(encoder.transform(pd.DataFrame(rows, columns=names)))
    with torch.no_grad():
        return model.cold_user_vectors(x, histories)
