"""bench/peers.py: peers' factors are scored the way negspace scores its own vectors.

The adapters that need implicit or LightFM (the `bench` extra) are skipped without them; the
`test` extra does not install them.
"""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from negspace.data.interactions import Interactions

BENCH = Path(__file__).resolve().parents[2] / "bench" / "peers.py"


@pytest.fixture(scope="module")
def peers():
    spec = importlib.util.spec_from_file_location("bench_peers", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _groups(n_users=60, n_items=120, seed=0):
    """Users in 3 taste groups, each playing 6 of its group's 10 items; test = 2 more of them;
    items 30.. are never played."""
    rng = np.random.default_rng(seed)
    tr_u, tr_i, te_u, te_i = [], [], [], []
    for u in range(n_users):
        items = rng.permutation(10)[:8] + 10 * (u % 3)
        tr_u += [u] * 6
        tr_i += list(items[:6])
        te_u += [u] * 2
        te_i += list(items[6:])
    ids_u, ids_i = np.arange(n_users), np.arange(n_items)
    return (Interactions.from_indices(tr_u, tr_i, ids_u, ids_i),
            Interactions.from_indices(te_u, te_i, ids_u, ids_i))


def test_factor_score_fn_matches_the_dot_product_plus_item_bias(peers):
    rng = np.random.default_rng(0)
    u, v, b = rng.normal(size=(5, 3)), rng.normal(size=(7, 3)), rng.normal(size=7)
    rows = torch.tensor([4, 0, 2])
    got = peers.factor_score_fn(u, v, b)(rows).numpy()
    np.testing.assert_allclose(got, u[[4, 0, 2]] @ v.T + b, rtol=1e-5)
    np.testing.assert_allclose(peers.factor_score_fn(u, v, None)(rows).numpy(),
                               u[[4, 0, 2]] @ v.T, rtol=1e-5)


def test_csr_is_binary_users_by_items(peers):
    train, _ = _groups()
    m = peers.csr(train)
    assert m.shape == (train.n_users, train.n_items) and set(np.unique(m.data)) == {1.0}


@pytest.mark.parametrize("method", ["als", "bpr", "warp"])
def test_peer_learns_the_taste_groups(peers, method):
    pytest.importorskip("implicit" if method != "warp" else "lightfm")
    train, test = _groups()
    params = {"als": {"regularization": 0.1, "alpha": 10.0, "iterations": 10},
              "bpr": {"learning_rate": 0.05, "regularization": 0.01, "iterations": 200},
              "warp": {"learning_rate": 0.05, "item_alpha": 0.0, "user_alpha": 0.0,
                       "max_sampled": 10, "epochs": 30}}[method]
    result = peers.run_peer(method, train, test, dim=8, threads=1, seed=0, params=params)
    # ranking the 114 unseen items at random puts a test item in the top 20 with probability
    # ~0.18; a model that learnt the groups ranks its 4 unseen group items first
    assert result["metrics"]["recall@20"] > 0.9
    assert result["train_seconds"] > 0


def test_refit_trains_on_all_the_training_data_for_the_chosen_epochs(peers, tmp_path,
                                                                      monkeypatch):
    from ..conftest import random_interactions
    inter = random_interactions(n_users=40, n_items=60, density=0.15, seed=3, dense_user=False)
    users, items = inter.pairs()
    path = tmp_path / "toy.csv"
    path.write_text("user,item\n" + "\n".join(f"{u},{i}" for u, i in zip(users, items)) + "\n")
    monkeypatch.setitem(peers.NEGSPACE, "toy", {"model": "cml", "sampler": "uniform",
                                                "batch_size": 64, "lr": 0.01, "epochs": 9,
                                                "patience": 1, "min_epochs": 1})
    chosen = peers.run_negspace("toy", str(path), dim=8, threads=1, seed=0)
    refit = peers.run_negspace("toy", str(path), dim=8, threads=1, seed=0, refit_epochs=2)
    assert "validation" not in chosen["params"] and chosen["epochs_run"] >= 2
    assert refit["params"]["validation"] == 0.0 and refit["params"]["epochs"] == 2
    assert refit["epochs_run"] == 2 == refit["best_epoch"]
    assert not any("val_recall@20" in row for row in refit["history"])  # no validation split
    assert refit["train_seconds"] == pytest.approx(sum(r["seconds"] for r in refit["history"]))
    assert refit["cpu_seconds"] > 0


@pytest.mark.parametrize("shape", [(50, 30), (30, 50)])  # items <= users: primal; else users' side
def test_ease_scores_are_x_times_the_closed_form_b(peers, shape):
    import scipy.sparse as sp
    x = sp.random(*shape, density=0.2, random_state=1, format="csr", dtype=np.float32)
    x.data[:] = 1.0
    lam = 3.0
    p = np.linalg.inv((x.T @ x).toarray() + lam * np.eye(shape[1]))
    b = np.eye(shape[1]) - p / np.diag(p)[None, :]  # B = I - P / diag(P); its diagonal is 0
    model = peers.Ease(x, lam)
    assert model.primal == (shape[1] <= shape[0])
    rows = np.array([3, 0, 7])
    np.testing.assert_allclose(model.scores(rows).numpy(), x[rows].toarray() @ b, atol=1e-5)


def test_ease_refuses_large_data_and_a_bad_lambda(peers, monkeypatch):
    import scipy.sparse as sp
    monkeypatch.setattr(peers, "EASE_MAX", 20)
    with pytest.raises(ValueError, match="above 20 on both sides"):
        peers.Ease(sp.csr_matrix((30, 40), dtype=np.float32), 10.0)
    peers.Ease(sp.csr_matrix((10, 40), dtype=np.float32), 10.0)  # 10 users: the users' side
    with pytest.raises(ValueError, match="lambda"):
        peers.Ease(sp.csr_matrix((10, 4), dtype=np.float32), 0.0)


def test_ease_chooses_lambda_on_validation_and_learns_the_taste_groups(peers):
    train, test = _groups()
    result = peers.run_ease(train, test, "given", seed=0)
    tried = result["validation"]
    best = max(tried, key=lambda r: r["recall@20"])
    assert result["params"]["lambda"] == best["lambda"]
    assert len(tried) == len(peers.EASE_LAMBDAS) + 2  # the grid, then the best one's neighbours
    assert result["metrics"]["recall@20"] > 0.9 and result["train_seconds"] > 0


def test_ease_on_too_large_data_is_skipped_in_one_line(peers, monkeypatch, capsys, tmp_path):
    train, test = _groups()
    monkeypatch.setattr(peers, "EASE_MAX", 10)
    monkeypatch.setitem(peers.DATASETS, "groups", ("given", 8))
    monkeypatch.setattr(peers, "split", lambda name, seed=0: (train, test))
    monkeypatch.setattr(peers, "report", lambda out: None)
    peers.main(["--datasets", "groups", "--methods", "ease", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "skipped: EASE solves a dense" in out and "60 users x 120 items" in out
    assert not (tmp_path / "groups" / "ease.json").exists()


def test_gfcf_scores_are_the_linear_plus_low_pass_filter(peers):
    import scipy.sparse as sp
    from negspace.data.interactions import Interactions as I
    x = sp.random(30, 20, density=0.3, random_state=2, format="csr", dtype=np.float32)
    x.data[:] = 1.0
    data = I(x, np.arange(30), np.arange(20))
    model = peers.GraphFilter(data, k=19)  # k = rank - 1: nearly all of it
    du, di = np.maximum(x.sum(1).A.ravel(), 1), np.maximum(x.sum(0).A.ravel(), 1)
    rn = x.toarray() / np.sqrt(du)[:, None] / np.sqrt(di)[None, :]
    _, _, vt = np.linalg.svd(rn, full_matrices=False)
    v = vt[:19].T
    users = torch.tensor([0, 5, 11])
    r = x[users.numpy()].toarray()
    expected = r @ rn.T @ rn + 0.3 * (r / np.sqrt(di)) @ v @ (v.T * np.sqrt(di))
    np.testing.assert_allclose(model.score_fn(0.3)(users).numpy(), expected, rtol=1e-3, atol=1e-4)


def test_gfcf_chooses_alpha_on_validation_and_learns_the_taste_groups(peers):
    train, test = _groups()
    result = peers.run_gfcf(train, test, "given", seed=0)
    best = max(result["validation"], key=lambda r: r["recall@20"])
    assert result["params"]["alpha"] == best["alpha"]
    assert result["metrics"]["recall@20"] > 0.9 and result["train_seconds"] > 0
