"""`--item-filter` through a run: the CLI trains with it (a weight, or auto chosen on validation),
the run directory records it, and every ranking of the run (its test metrics, `negspace
evaluate`, `Recommender.recommend` / `recommend_new` / `evaluate`, the server) blends it the same
way; a faiss index is refused for it; bad values are one-line errors; the default recipe chooses
it on large data only."""

import json

import numpy as np
import pytest
import torch

from negspace import NegspaceError, Recommender
from negspace.cli import main
from negspace.config import make_config, resolve_for_data, with_default_recipe
from negspace.retrieval.item_filter import ItemFilter, blend

from tests.reference import scores_of
from tests.test_api import clustered

TRAIN = ["--model", "mf", "--loss", "softmax", "--sampler", "uniform", "--dim", "8",
         "--epochs", "3", "--batch-size", "64", "--threads", "1", "--no-progress"]


@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "toy.csv"
    clustered(n_users=60, n_items=40, per_user=8).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def blended_run(csv, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "blended"
    assert main(["train", "--dataset", str(csv), *TRAIN, "--item-filter", "0.2",
                 "--out", str(run)]) == 0
    return run


def by_hand(rec: Recommender, user: str, k: int) -> list:
    """The blend written out for one known user, seen items last."""
    u = rec.train.user_index(user)
    model = torch.from_numpy(scores_of(rec.user_vectors, rec.item_vectors, rec.measure)[[u]])
    filtered = ItemFilter(rec.train).scores(rec.train.matrix[[u]])
    scores = blend(model.float(), filtered, 0.2)[0].numpy()
    scores[rec.train.matrix[u].indices] = -np.inf
    return rec.train.item_ids[np.argsort(-scores, kind="stable")[:k]].tolist()


def test_a_run_records_the_weight_and_every_ranking_blends_it(blended_run, capsys):
    config = json.loads((blended_run / "config.json").read_text())
    metrics = json.loads((blended_run / "metrics.json").read_text())
    assert config["item_filter"] == "0.2" and metrics["item_filter"] == 0.2
    rec = Recommender.load(blended_run)
    assert rec.config.item_filter_weight == 0.2
    for user in ("u3", "u17"):
        assert rec.recommend(user, k=6).item.tolist() == by_hand(rec, user, 6)
    # without the blend the same vectors rank otherwise for some user (the test can fail)
    plain = Recommender.load(blended_run)
    plain.config.item_filter = "0"
    assert any(plain.recommend(u, k=6).item.tolist() != rec.recommend(u, k=6).item.tolist()
               for u in rec.train.user_ids[:20])
    # negspace evaluate recomputes the run's own test metrics
    capsys.readouterr()
    assert main(["evaluate", str(blended_run)]) == 0
    again = json.loads((blended_run / "metrics.json").read_text())
    assert again["recall@20"] == pytest.approx(metrics["recall@20"], abs=1e-9)
    # a new user with a known user's history ranks from that history through the filter too
    history = rec.train.item_ids[rec.train.matrix[rec.train.user_index("u3")].indices].tolist()
    new = rec.recommend_new({"copy": history}, k=6)
    assert len(new) == 6 and not set(new.item) & set(history)


def test_a_faiss_index_cannot_rank_a_blend(blended_run):
    rec = Recommender.load(blended_run)
    with pytest.raises(NegspaceError, match="item filter"):
        rec.rank_vectors(rec.user_vectors[:1], np.zeros(1, np.int64), 3, use_index=True)


def test_auto_chooses_the_weight_on_validation(csv, tmp_path):
    run = tmp_path / "auto"
    assert main(["train", "--dataset", str(csv), *TRAIN, "--item-filter", "auto",
                 "--validation", "0.2", "--out", str(run)]) == 0
    chosen = json.loads((run / "config.json").read_text())["item_filter"]
    assert float(chosen) in (0.0, 0.05, 0.1, 0.15, 0.2, 0.3)
    assert json.loads((run / "metrics.json").read_text())["item_filter"] == float(chosen)
    # from Python, with a refit: the final configuration carries the validated run's choice
    rec = Recommender("mf", loss="softmax", sampler="uniform", dim=8, epochs=3, batch_size=64,
                      threads=1, progress=False, validation=0.2, refit="yes",
                      item_filter="auto").fit(clustered(n_users=60, n_items=40, per_user=8))
    assert rec.config.item_filter_weight in (0.0, 0.05, 0.1, 0.15, 0.2, 0.3)


@pytest.mark.parametrize("value", ["1", "-0.1", "abc", "nan"])
def test_bad_weights_are_one_line_errors(csv, tmp_path, capsys, value):
    assert main(["train", "--dataset", str(csv), *TRAIN, f"--item-filter={value}",
                 "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--item-filter must be auto or a weight in [0, 1)" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_the_default_recipe_chooses_the_filter_on_large_data_only():
    cfg = make_config(with_default_recipe({}))
    assert cfg.item_filter is None and cfg.item_filter_weight is None
    assert resolve_for_data(cfg, 29_858, 40_981, 810_128).item_filter == "auto"  # 1.2e9 cells
    assert resolve_for_data(cfg, 6_022, 3_043, 900_000).item_filter == "0"  # small data
    assert resolve_for_data(cfg, 70_679, 24_915, 652_514).item_filter == "auto"  # 9 a user
    assert resolve_for_data(cfg, 52_643, 91_599, 2_380_730).item_filter == "0"  # 4.8e9 cells
    assert resolve_for_data(cfg, 300_000, 100_000, 7_800_000).item_filter == "0"  # 3e10 cells
    given = make_config(with_default_recipe({"item_filter": "0.1"}))
    assert resolve_for_data(given, 6_022, 3_043, 900_000).item_filter == "0.1"
    assert make_config({"model": "mf"}).item_filter_weight == 0.0  # named: off unless asked


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_the_server_answers_with_the_blend(blended_run):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from negspace.serving.app import ServeSettings, create_app
    from negspace.serving.holder import ModelHolder, load_model
    from negspace.serving.schemas import Limits

    rec = Recommender.load(blended_run)
    app = TestClient(create_app(ModelHolder(load_model(blended_run)),
                                ServeSettings(Limits(), None)), base_url="http://localhost")
    got = app.post("/recommend", json={"users": ["u3", "u17"], "k": 6}).json()
    assert got["exact"] is True
    assert [r["items"] for r in got["results"]] == [by_hand(rec, u, 6) for u in ("u3", "u17")]
    history = rec.train.item_ids[rec.train.matrix[rec.train.user_index("u3")].indices].tolist()
    new = app.post("/recommend/new", json={"items": history, "k": 6}).json()
    assert len(new["items"]) == 6 and not set(new["items"]) & set(history)
    # with its own items allowed, a known user is still ranked from its history
    unfiltered = app.post("/recommend", json={"users": ["u3"], "k": 6, "exclude_seen": False})
    assert unfiltered.status_code == 200
    assert unfiltered.json()["results"][0]["items"] == rec.recommend(
        "u3", k=6, filter_seen=False).item.tolist()
