"""Spectral start for embedding tables: the leading singular vectors of the degree-normalised
interaction matrix (the "ideal low-pass filter" of graph-filter recommenders such as GF-CF,
Shen et al., CIKM 2021), as the first user and item vectors of a model trained by a loss.

Why: a randomly started MF spends its first epochs finding what a truncated SVD computes in
seconds. On gowalla-lightgcn's validation split, MF with the full softmax at d 64 reached
Recall@20 0.114 after one epoch from this start against 0.022 from a random one, and 0.190
after six against 0.181 (docs/results.md, "Accuracy: defaults, recipes and tuned peers").
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch

from negspace.data.interactions import Interactions


def normalised_matrix(matrix: sp.spmatrix) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray]:
    """(R, R~, item degrees): the binary matrix R, R~ = D_u^-1/2 R D_i^-1/2, and D_i's
    diagonal (degrees 0 read as 1, so that empty rows and columns stay 0)."""
    r = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
    r.data[:] = 1.0
    du = np.maximum(np.asarray(r.sum(axis=1)).ravel(), 1.0)
    di = np.maximum(np.asarray(r.sum(axis=0)).ravel(), 1.0)
    return r, (sp.diags(1 / np.sqrt(du)) @ r @ sp.diags(1 / np.sqrt(di))).tocsr(), di


def torch_csr(matrix: sp.spmatrix, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """`matrix` as a torch CSR tensor of `dtype` (for sparse @ dense products)."""
    m = sp.csr_matrix(matrix, dtype=np.float64 if dtype == torch.float64 else np.float32)
    m.sort_indices()
    with warnings.catch_warnings():  # "CSR support is in beta": products and .to() are all we use
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(torch.from_numpy(m.indptr.astype(np.int64)),
                                       torch.from_numpy(m.indices.astype(np.int64)),
                                       torch.from_numpy(m.data), size=m.shape,
                                       check_invariants=False)


def leading_item_vectors(normalised: sp.spmatrix, k: int, seed: int = 0, niter: int = 4,
                         dtype: torch.dtype = torch.float64) -> np.ndarray:
    """The top `k` right singular vectors of `normalised` (items x k, largest first), by the
    randomized SVD of Halko et al. (at 4 power iterations on gowalla-lightgcn half the time of
    ARPACK's exact one at k 256, and its filter validated no worse); seeded, so the same seed
    gives the same vectors.

    The steps are torch.svd_lowrank's (a Gaussian sketch, `niter` power iterations each
    re-orthonormalised, then the SVD of the projected matrix), done cheaper where the sketch is
    wide: products with a CSR copy of the transpose (not the transposed view), each basis by a
    Cholesky QR of its Gram matrix, the last SVD from the Gram's eigenvectors (float32,
    2 iterations: ML-1M at k 512 0.73 s against torch.svd_lowrank's 1.04, the same subspace;
    gowalla-lightgcn at k 192 0.89 s against 1.44, closer to the exact subspace;
    bench/research/spectral_svd.py).

    Args:
        niter: power iterations (each costs two sparse products with k + 10 columns).
        dtype: of the computation (float32 halves its time; a start needs no more).
    """
    # CSR, not COO: the same vectors to float rounding in 40% of the time (ML-1M at k 512:
    # 1.9 s against 4.6; gowalla-lightgcn at k 64: 0.7 s against 1.9)
    a, a_t = torch_csr(normalised, dtype), torch_csr(normalised.T, dtype)
    q = min(k + 10, min(normalised.shape))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sketch = torch.randn(normalised.shape[1], q, dtype=dtype)
    basis = _orthonormal(a @ sketch)  # users x q: the range of A
    for _ in range(niter):
        basis = _orthonormal(a @ _orthonormal(a_t @ basis))
    projected_t = a_t @ basis  # (Q^T A)^T, items x q: its left singular vectors are V
    return _leading_left_vectors(projected_t, k).double().numpy()


def _orthonormal(y: torch.Tensor) -> torch.Tensor:
    """An orthonormal basis of y's columns: y R^-1 with R the Cholesky factor of y^T y (the
    Gram formed in y's dtype, factored in float64), the same span as a Householder QR's at a
    third of the passes; Householder where the Gram is too ill-conditioned to factor (columns
    nearly dependent)."""
    gram = (y.T @ y).double()
    factor, info = torch.linalg.cholesky_ex(gram)
    if int(info) != 0 or not _well_conditioned(torch.diagonal(factor)):
        return torch.linalg.qr(y).Q
    return torch.linalg.solve_triangular(factor.T.to(y.dtype), y, upper=True, left=False)


def _well_conditioned(diagonal: torch.Tensor) -> bool:
    # the ratio of R's diagonal bounds y's conditioning from below (the Gram's is about its
    # square); past 1e5 R^-1 would amplify the Gram's rounding into the basis
    return bool(diagonal.min() > diagonal.max() * 1e-5)


def _leading_left_vectors(m: torch.Tensor, k: int) -> torch.Tensor:
    """The top `k` left singular vectors of a tall matrix m (n x q, q small), from the
    eigenvectors of its q x q Gram (formed in m's dtype, decomposed in float64); a full SVD where
    a singular value is too small to divide by."""
    values, vectors = torch.linalg.eigh((m.T @ m).double())
    values, vectors = values.flip(0)[:k], vectors.flip(1)[:, :k]
    if not bool(values[-1] > values[0] * 1e-10):  # also a rounding's negative eigenvalue
        return torch.linalg.svd(m, full_matrices=False)[0][:, :k]
    return (m.double() @ (vectors / values.sqrt())).to(m.dtype)


def low_pass_factors(r: sp.spmatrix, item_degrees: np.ndarray, v: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(r D_i^-1/2 V, V D_i^1/2): the user and item factors whose dot products are GF-CF's
    ideal low-pass scores r D_i^-1/2 V V^T D_i^1/2 (r: the binary rows, V: items x k)."""
    return (r @ sp.diags(1 / np.sqrt(item_degrees))) @ v, v * np.sqrt(item_degrees)[:, None]


def spectral_vectors(history: Interactions, dim: int, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm user and item vectors whose dot products rank as the low-pass filter does.

    With R the binary training matrix and D_u, D_i its user and item degrees, R~ = D_u^-1/2 R
    D_i^-1/2 has top singular vectors V (items x k). GF-CF scores a user's row r as
    r D_i^-1/2 V V^T D_i^1/2: users get r D_i^-1/2 V, items V D_i^1/2. Rows are scaled to unit
    norm (a cosine ignores the scale, and unit rows are large against Adam's steps, so training
    turns them without first erasing them); a dot-product model starts from the same directions.

    Args:
        history: the training interactions.
        dim: vector size; the columns beyond the matrix's rank (tiny data) are seeded noise.
        seed: seeds the SVD (leading_item_vectors) and the noise.

    Returns:
        (users [n_users, dim], items [n_items, dim]) float32 arrays.
    """
    r, normalised, di = normalised_matrix(history.matrix)
    n_users, n_items = r.shape
    rng = np.random.default_rng(seed)
    k = max(min(dim, min(n_users, n_items) - 1), 0)
    # a little noise: rows without interactions still get a direction (and no zero norm)
    users = rng.normal(0.0, 1e-6, (n_users, dim))
    items = rng.normal(0.0, 1e-6, (n_items, dim))
    if k >= 1 and r.nnz:
        # 2 power iterations in float32: a quarter of the time of 4 in float64 (5.6 against
        # 15.7 cpu-s at d 512 on ML-1M), and training refines the start anyway
        v = leading_item_vectors(normalised, k, seed, niter=2, dtype=torch.float32)
        user_factors, item_factors = low_pass_factors(r, di, v)
        users[:, :k] += user_factors
        items[:, :k] += item_factors
    if k < dim:  # more columns than the matrix has rank: seeded noise, as a random start
        users[:, k:] += rng.normal(0.0, 1e-2, (n_users, dim - k))
        items[:, k:] += rng.normal(0.0, 1e-2, (n_items, dim - k))
    for table in (users, items):
        table /= np.maximum(np.linalg.norm(table, axis=1, keepdims=True), 1e-12)
    return users.astype(np.float32), items.astype(np.float32)
