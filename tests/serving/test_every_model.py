"""The Python Recommender trains every model (the two-tower with side features included), and a
saved run of each loads back and is served with the same answers."""

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from negspace import NegspaceError, Recommender
from negspace.models import TwoTower
from negspace.serving.app import create_app
from negspace.serving.holder import ModelHolder, load_model
from negspace.config import MODELS

from tests.serving.conftest import OPTIONS, side_features

SAMPLERS = {"two-tower": "in-batch"}


@pytest.mark.parametrize("model", MODELS)
def test_every_model_trains_saves_loads_and_serves(model, frame, tmp_path):
    torch.set_num_threads(1)
    rec = Recommender(model, sampler=SAMPLERS.get(model, "uniform"), seed=0, **OPTIONS)
    if model == "two-tower":
        users, items = side_features()
        rec.fit(frame, user_features=users, item_features=items)
        assert isinstance(rec.model, TwoTower) and rec.model.n_user_features > 0
        assert rec.model.n_item_features > 0
    else:
        rec.fit(frame)
    expected = rec.recommend(["u0", "u9"], k=5)
    run = rec.save(tmp_path / model)
    loaded = Recommender.load(run, index=False)
    assert loaded.recommend(["u0", "u9"], k=5).item.tolist() == expected.item.tolist()
    app = TestClient(create_app(ModelHolder(load_model(run))), base_url="http://localhost")
    got = app.post("/recommend", json={"users": ["u0", "u9"], "k": 5}).json()["results"]
    assert [i for r in got for i in r["items"]] == expected.item.tolist()
    new = {"items": [1, 4]}
    if model == "two-tower":
        new["features"] = {"age": 40, "job": "doctor"}
        python = loaded.recommend_new({"n": [1, 4]}, k=5, features={"n": new["features"]})
        assert python.item.tolist() == rec.recommend_new(
            [[1, 4]], k=5, features=[new["features"]]).item.tolist()  # fitted == loaded
    else:
        python = loaded.recommend_new({"n": [1, 4]}, k=5)
    served = app.post("/recommend/new", json={**new, "k": 5}).json()
    assert served["items"] == python.item.tolist()


def test_two_tower_features_change_the_cold_start_and_are_checked(frame):
    users, items = side_features()
    rec = Recommender("two-tower", sampler="in-batch", seed=0, **OPTIONS).fit(
        frame, user_features=users, item_features=items)
    a = rec.new_user_vectors([[1, 4]], [{"age": 20, "job": "artist"}])
    b = rec.new_user_vectors([[1, 4]], [{"age": 65, "job": "doctor"}])
    assert not torch.allclose(a, b)
    assert np.isfinite(rec.new_user_vectors([[]], [{"age": 30}]).numpy()).all()  # no items
    with pytest.raises(NegspaceError, match="two-tower"):
        Recommender("mf", **OPTIONS).fit(frame, user_features=users)
    with pytest.raises(NegspaceError, match="DataFrame"):
        Recommender("two-tower", sampler="in-batch", **OPTIONS).fit(frame, user_features=[1, 2])
    plain = Recommender("mf", **OPTIONS).fit(frame)
    with pytest.raises(NegspaceError, match="two-tower"):
        plain.recommend_new([[1]], features=[{"age": 3}])


def test_runs_written_before_measure_was_mf_only_still_load_and_serve(runs, tmp_path):
    """Older runs recorded "measure": "dot" for every model; a CML one must still load."""
    import json
    import shutil
    old = tmp_path / "old-cml"
    shutil.copytree(runs["cml"], old)
    config = json.loads((old / "config.json").read_text())
    (old / "config.json").write_text(json.dumps({**config, "measure": "dot"}))
    rec = Recommender.load(old)
    assert rec.measure == "l2" and rec.config.model == "cml"
    assert load_model(old).rec.recommend("u3", k=3).item.tolist() == \
        Recommender.load(runs["cml"]).recommend("u3", k=3).item.tolist()
