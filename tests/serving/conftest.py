"""Small run directories for the serving tests, trained once per session through the Python API
(users are strings, items numbers, so both id forms go through the server)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from negspace import Recommender

pytest.importorskip("fastapi")


def pytest_configure(config) -> None:
    # starlette 1.x asks for httpx2 in its test client; httpx still works, FastAPI documents it
    config.addinivalue_line("filterwarnings", "ignore:Using `httpx` with `starlette.testclient`")

OPTIONS = dict(dim=16, epochs=3, validation=0, progress=False, threads=1, batch_size=256)


def interactions(n_users: int = 150, n_items: int = 60, per_user: int = 8,
                 seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [(f"u{u}", int(i)) for u in range(n_users)
            for i in rng.choice(n_items, per_user, replace=False)]
    return pd.DataFrame(rows, columns=["user", "item"])


def side_features(n_users: int = 150, n_items: int = 60, seed: int = 0
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    users = pd.DataFrame({"age": rng.integers(18, 70, n_users).astype(float),
                          "job": rng.choice(["artist", "clerk", "doctor"], n_users)},
                         index=[f"u{u}" for u in range(n_users)])
    items = pd.DataFrame({"genre": rng.choice(["drama", "comedy", "noir", "war"], n_items)},
                         index=range(n_items))
    return users, items


@pytest.fixture(scope="session")
def frame() -> pd.DataFrame:
    return interactions()


@pytest.fixture(scope="session")
def runs(tmp_path_factory, frame) -> dict[str, Path]:
    """Run directories: "mf" (with a flat faiss index), "cml" (another model, for reloads) and
    "tower" (two-tower with side features)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("runs")
    out = {}
    mf = Recommender("mf", sampler="uniform", lr=0.05, seed=0, **OPTIONS).fit(frame)
    out["mf"] = mf.build_index("flat").save(root / "mf")
    out["cml"] = Recommender("cml", sampler="uniform", seed=1, **OPTIONS).fit(frame).save(
        root / "cml")
    users, items = side_features()
    tower = Recommender("two-tower", sampler="in-batch", seed=0, **OPTIONS)
    out["tower"] = tower.fit(frame, user_features=users, item_features=items).save(root / "tower")
    return out
