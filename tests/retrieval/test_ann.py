"""faiss retrieval: a flat index gives exactly the exact filtered top-k for every measure; IVF
searching every cell is exact too; HNSW is close; stale or foreign indexes are refused."""

import json

import numpy as np
import pytest
import torch

from negspace.errors import NegspaceError
from negspace.models.base import score_matrix
from negspace.retrieval.topk import topk_items
from tests.conftest import random_interactions

faiss = pytest.importorskip("faiss")
from negspace.retrieval import ann  # noqa: E402  -- after the skip


def _case(measure: str, seed: int = 0, n_users: int = 60, n_items: int = 40, dim: int = 8):
    rng = np.random.default_rng(seed)
    train = random_interactions(n_users, n_items, seed=seed)
    u = torch.from_numpy(rng.standard_normal((n_users, dim)).astype(np.float32))
    v = torch.from_numpy(rng.standard_normal((n_items, dim)).astype(np.float32))
    if measure == "l2":  # CML's vectors live on the unit sphere
        u, v = torch.nn.functional.normalize(u, dim=1), torch.nn.functional.normalize(v, dim=1)
    return train, u, v


@pytest.mark.parametrize("measure", ["l2", "dot", "cosine"])
@pytest.mark.parametrize("k", [1, 10, 40])
def test_flat_index_equals_exact_top_k(measure, k):
    train, u, v = _case(measure)
    users = np.arange(train.n_users)
    want, want_scores = topk_items(lambda r: score_matrix(u[r], v, measure), users, k,
                                   exclude=train)
    index = ann.build_index(v.numpy(), measure, "flat")
    got, scores = ann.search(index, measure, u.numpy(), k, exclude=train, rows=users,
                             chunk_size=7)
    assert (got == want).all()  # user 0 holds all but 8 items: padding at k = 10 and 40
    assert ((got == -1) == (want == -1)).all() and (want[0] == -1).any() == (k > 8)
    finite = want >= 0
    assert np.allclose(scores[finite], want_scores[finite], rtol=1e-4, atol=1e-4)
    assert not train.contains(users[:, None], np.maximum(got, 0))[finite].any()


def test_ivf_probing_every_cell_is_exact_and_hnsw_is_close():
    train, u, v = _case("dot", n_users=200, n_items=500, dim=16)
    users = np.arange(train.n_users)
    want, _ = topk_items(lambda r: score_matrix(u[r], v, "dot"), users, 10, exclude=train)
    ivf = ann.build_index(v.numpy(), "dot", "ivf", nlist=16)
    got, _ = ann.search(ivf, "dot", u.numpy(), 10, exclude=train, rows=users, nprobe=16)
    assert (got == want).all()
    hnsw = ann.build_index(v.numpy(), "dot", "hnsw")
    got, _ = ann.search(hnsw, "dot", u.numpy(), 10, exclude=train, rows=users, ef_search=200)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, want)])
    assert recall > 0.9


def test_read_index_refuses_other_vectors_measures_and_files(tmp_path):
    _, _, v = _case("l2")
    path = tmp_path / ann.INDEX_FILE
    ann.write_index(ann.build_index(v.numpy(), "l2", "ivf", nlist=4), path)
    assert ann.read_index(path, "l2", v.numpy()).ntotal == len(v)
    with pytest.raises(NegspaceError, match="does not index"):
        ann.read_index(path, "dot", v.numpy())
    with pytest.raises(NegspaceError, match="does not index"):
        ann.read_index(path, "l2", (v * 0.5).numpy())  # same shape, another model
    (tmp_path / "junk").write_bytes(b"not an index")
    with pytest.raises(NegspaceError, match="not a faiss index"):
        ann.read_index(tmp_path / "junk", "l2", v.numpy())
    with pytest.raises(NegspaceError, match="index must be one of"):
        ann.build_index(v.numpy(), "l2", "lsh")


def test_cli_export_and_recommend_with_the_index(tmp_path, capsys):
    from negspace.cli import main

    run = _toy_run(tmp_path, "cml", 2)
    assert main(["recommend", str(run), "--user", "u4", "-k", "6", "--faiss"]) == 2
    assert "no faiss index" in capsys.readouterr().err
    assert main(["export", str(run), "--faiss"]) == 0
    assert (run / ann.INDEX_FILE).exists()
    capsys.readouterr()
    assert main(["recommend", str(run), "--user", "u4", "-k", "6", "--json"]) == 0
    exact = json.loads(capsys.readouterr().out)
    assert main(["recommend", str(run), "--user", "u4", "-k", "6", "--json", "--faiss"]) == 0
    fast = json.loads(capsys.readouterr().out)
    assert fast["items"] == exact["items"]
    assert np.allclose(fast["scores"], exact["scores"], atol=1e-5)
    assert main(["export", str(run), "--faiss", "--index", "hnsw"]) == 0
    capsys.readouterr()
    assert main(["train", "--dataset", str(tmp_path / "toy.csv"), "--model", "mf", "--sampler",
                 "uniform", "--dim", "8", "--epochs", "1", "--threads", "1", "--no-progress",
                 "--out", str(run), "--overwrite"]) == 0
    capsys.readouterr()  # the retrained run's vectors no longer match the old index
    assert main(["recommend", str(run), "--user", "u4", "--faiss"]) == 2
    assert "does not index" in capsys.readouterr().err


def test_api_uses_the_index_with_exact_filtering(tmp_path):
    from negspace import Recommender

    rng = np.random.default_rng(1)
    rows = [(f"u{u}", f"i{i}") for u in range(40) for i in rng.choice(60, 10, replace=False)]
    import pandas as pd
    rec = Recommender("mf", sampler="uniform", dim=8, epochs=2, validation=0, progress=False,
                      threads=1).fit(pd.DataFrame(rows, columns=["user", "item"]))
    users = [f"u{u}" for u in range(40)]
    exact = rec.recommend(users, k=8)
    rec.build_index("flat")
    pd.testing.assert_frame_equal(rec.recommend(users, k=8), exact, atol=1e-5)
    loaded = Recommender.load(rec.save(tmp_path / "run"), index=True)
    assert loaded.index is not None
    pd.testing.assert_frame_equal(loaded.recommend(users, k=8, use_index=True), exact, atol=1e-5)
    restricted = loaded.recommend("u0", k=3, items=["i1", "i2", "i3", "i4"])  # exact path
    assert set(restricted.item) <= {"i1", "i2", "i3", "i4"}


def test_load_ranks_exactly_unless_the_index_is_asked_for(tmp_path, capsys):
    """After `export --index ivf`, Recommender.load(DIR) must not answer from the approximate
    index: the guide promises that an exact answer never silently becomes an approximate one."""
    from negspace import Recommender
    from negspace.cli import main

    run = _toy_run(tmp_path, "mf", 1)
    with pytest.raises(NegspaceError, match="no faiss index"):
        Recommender.load(run, index=True)
    assert main(["export", str(run), "--faiss", "--index", "ivf"]) == 0
    plain = Recommender.load(run)
    assert plain.index is None
    capsys.readouterr()
    assert main(["recommend", str(run), "--user", "u4", "-k", "6", "--json"]) == 0
    items = json.loads(capsys.readouterr().out)["items"]  # the CLI answers exactly too
    assert plain.recommend("u4", k=6).item.tolist() == items
    with pytest.raises(NegspaceError, match="no faiss index"):
        plain.recommend("u4", k=6, use_index=True)
    assert Recommender.load(run, index=True).index is not None


def _toy_run(tmp_path, model: str, epochs: int):
    """A run directory trained by the CLI on 30 users x 8 of 50 items."""
    from negspace.cli import main

    csv = tmp_path / "toy.csv"
    rng = np.random.default_rng(0)
    csv.write_text("user,item\n" + "".join(f"u{u},i{i}\n" for u in range(30)
                                           for i in rng.choice(50, 8, replace=False)))
    run = tmp_path / "run"
    assert main(["train", "--dataset", str(csv), "--model", model, "--sampler", "uniform",
                 "--dim", "8", "--epochs", str(epochs), "--threads", "1", "--no-progress",
                 "--out", str(run)]) == 0
    return run
