"""The spectral start (models/spectral.py): what it computes, and that MF trains from it."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from negspace.config import make_config
from negspace.data.interactions import Interactions
from negspace.models.spectral import (_orthonormal, leading_item_vectors, normalised_matrix,
                                      spectral_vectors)
from negspace.registry import build_model


def _blocks(n_blocks: int = 4, users: int = 30, items: int = 20, seed: int = 0) -> Interactions:
    """Users of block b interact with about half of block b's items only."""
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for b in range(n_blocks):
        for u in range(users):
            chosen = rng.choice(items, items // 2, replace=False)
            rows += [b * users + u] * len(chosen)
            cols += list(b * items + chosen)
    return Interactions.from_indices(np.array(rows), np.array(cols), np.arange(n_blocks * users),
                                     np.arange(n_blocks * items))


def test_vectors_are_unit_rows_and_the_same_for_the_same_seed():
    data = _blocks()
    u, v = spectral_vectors(data, 8, seed=3)
    assert u.shape == (120, 8) and v.shape == (80, 8) and u.dtype == np.float32
    assert np.allclose(np.linalg.norm(u, axis=1), 1, atol=1e-5)
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    again = spectral_vectors(data, 8, seed=3)
    assert np.array_equal(u, again[0]) and np.array_equal(v, again[1])


def test_a_user_ranks_its_own_blocks_items_first():
    data = _blocks()
    u, v = spectral_vectors(data, 4, seed=0)  # rank 4: one direction per block
    scores = u @ v.T
    block_of_user = np.arange(120) // 30
    top = np.argsort(-scores, axis=1)[:, :20] // 20
    assert (top == block_of_user[:, None]).mean() > 0.99


def test_tiny_data_gets_noise_beyond_its_rank():
    data = Interactions.from_indices(np.array([0, 1, 2]), np.array([0, 1, 1]), np.arange(3), np.arange(2))
    u, v = spectral_vectors(data, 16, seed=0)
    assert u.shape == (3, 16) and np.isfinite(u).all() and np.isfinite(v).all()
    assert np.allclose(np.linalg.norm(u, axis=1), 1, atol=1e-5)


@pytest.mark.parametrize("measure", ["cosine", "dot"])
def test_mf_built_with_init_spectral_starts_from_those_vectors(measure):
    data = _blocks()
    cfg = make_config({"model": "mf", "loss": "softmax" if measure == "cosine" else "bpr",
                       "measure": measure, "init": "spectral", "dim": 8, "seed": 1})
    model = build_model(cfg, 120, 80, history=data)
    u, v = spectral_vectors(data, 8, seed=1)
    assert torch.equal(model.users.weight.detach(), torch.from_numpy(u))
    assert torch.equal(model.items.weight.detach(), torch.from_numpy(v))


def test_a_run_counts_the_start_in_its_training_seconds(tmp_path):
    from negspace.pipeline.fit import run_training

    data = _blocks()
    rows = data.matrix.tolil().rows
    (tmp_path / "train.txt").write_text("".join(f"{u} {' '.join(map(str, r[:-2]))}\n"
                                                for u, r in enumerate(rows)))
    (tmp_path / "test.txt").write_text("".join(f"{u} {' '.join(map(str, r[-2:]))}\n"
                                               for u, r in enumerate(rows)))
    out = run_training(make_config({"dataset": str(tmp_path), "model": "mf", "loss": "softmax",
                                    "sampler": "full", "batch_by": "user", "init": "spectral",
                                    "dim": 8, "epochs": 2, "progress": False}))
    assert out.start_seconds > 0
    history_seconds = sum(row["seconds"] for row in out.history)
    assert out.metrics["train_seconds"] >= history_seconds + out.start_seconds - 1e-3


def test_leading_item_vectors_match_an_exact_svd():
    rng = np.random.default_rng(0)
    u = np.linalg.qr(rng.normal(size=(300, 60)))[0]
    w = np.linalg.qr(rng.normal(size=(120, 60)))[0]
    matrix = sp.csr_matrix(u @ np.diag(0.8 ** np.arange(60)) @ w.T)  # a decaying spectrum
    for dtype in (torch.float32, torch.float64):
        v = leading_item_vectors(matrix, 10, seed=int(rng.integers(100)), niter=4, dtype=dtype)
        assert v.shape == (120, 10)
        assert np.allclose(v.T @ v, np.eye(10), atol=1e-5)
        # the same directions (up to sign) as the exact singular vectors, largest first
        assert np.abs((v * w[:, :10]).sum(0)).min() > 0.999


def test_nearly_dependent_columns_take_the_householder_paths(monkeypatch):
    """A sketch wider than the matrix's rank: the Cholesky factor and the Gram's eigenvalues
    would divide by about zero; the fallbacks return finite orthonormal vectors instead."""
    calls = {"qr": 0, "svd": 0}
    for name in calls:
        def counted(*args, _name=name, _fn=getattr(torch.linalg, name), **kwargs):
            calls[_name] += 1
            return _fn(*args, **kwargs)
        monkeypatch.setattr(torch.linalg, name, counted)
    base = np.random.default_rng(0).random((40, 3))
    low_rank = sp.csr_matrix(base @ np.random.default_rng(1).random((3, 30)))
    _, normalised, _ = normalised_matrix(low_rank)
    v = leading_item_vectors(normalised, 20, seed=0, niter=2, dtype=torch.float32)
    assert v.shape == (30, 20) and np.isfinite(v).all()
    assert np.allclose(v.T @ v, np.eye(20), atol=1e-4)
    y = torch.from_numpy(base @ np.ones((3, 6)))  # six copies of one column's span: rank 3
    q = _orthonormal(y)
    assert torch.isfinite(q).all() and torch.allclose(q.T @ q, torch.eye(6, dtype=q.dtype), atol=1e-6)
    assert calls["qr"] >= 2 and calls["svd"] == 1
