"""Item retrieval with a faiss index (optional dependency): flat (exact), IVF or HNSW, with the
index's measure matching the model's, and exact seen-item filtering by over-fetching."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from negspace.data.interactions import Interactions
from negspace.errors import NegspaceError
from negspace.io import atomic_write

INDEX_FILE = "items.faiss"
INDEX_KINDS = ("flat", "ivf", "hnsw")


def require_faiss() -> Any:
    """The faiss module, or a NegspaceError saying how to install it."""
    try:
        import faiss
    except ImportError:
        raise NegspaceError("faiss is not installed: pip install 'negspace[faiss]' "
                            "(or pip install faiss-cpu)") from None
    return faiss


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _prepare(vectors: np.ndarray, measure: str) -> np.ndarray:
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if measure == "cosine":  # cosine = inner product of unit vectors
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x


def build_index(item_vectors: np.ndarray, measure: str, kind: str = "flat",
                nlist: int | None = None, hnsw_m: int = 32, seed: int = 0) -> Any:
    """A faiss index over the item vectors, row i = item i.

    Args:
        item_vectors: [n_items, d] scoring vectors.
        measure: "l2" (squared L2 distance, the CML score negated), "dot" or "cosine" (inner
            product, on unit vectors for cosine).
        kind: "flat" (exact), "ivf" (inverted lists over k-means cells) or "hnsw" (graph).
        nlist: IVF cells (default about 4 sqrt(n_items)).
        hnsw_m: HNSW neighbours per node.
        seed: seeds the IVF k-means.

    Returns:
        The trained, filled faiss index.
    """
    faiss = require_faiss()
    if kind not in INDEX_KINDS:
        raise NegspaceError(f"--index must be one of {', '.join(INDEX_KINDS)}; got {kind!r}")
    if measure not in ("l2", "dot", "cosine"):
        raise NegspaceError(f"no faiss metric for measure {measure!r}")
    x = _prepare(item_vectors, measure)
    n, d = x.shape
    metric = faiss.METRIC_L2 if measure == "l2" else faiss.METRIC_INNER_PRODUCT
    if kind == "flat":
        index = faiss.IndexFlat(d, metric)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, hnsw_m, metric)
        index.hnsw.efConstruction = 200
    else:
        cells = max(1, min(n, nlist or int(4 * np.sqrt(n))))
        index = faiss.IndexIVFFlat(faiss.IndexFlat(d, metric), d, cells, metric)
        index.cp.seed = seed
        index.train(x)
    index.add(x)
    return index


def write_index(index: Any, path: str | Path) -> None:
    faiss = require_faiss()
    atomic_write(path, lambda tmp: faiss.write_index(index, tmp))


def read_index(path: str | Path, measure: str, item_vectors: np.ndarray) -> Any:
    """Reads an index and checks that it holds these item vectors under the model's measure.

    A sample of stored rows is compared with the model's vectors, so an index left over from an
    earlier model in the same run directory (same shapes, other vectors) is refused.

    Args:
        path: the index file.
        measure: the model's measure.
        item_vectors: [n_items, d] the model's item vectors.

    Returns:
        The index.
    """
    faiss = require_faiss()
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as e:
        raise NegspaceError(f"{path}: not a faiss index ({str(e).splitlines()[0]})") from None
    x = _prepare(item_vectors, measure)
    want = faiss.METRIC_L2 if measure == "l2" else faiss.METRIC_INNER_PRODUCT
    same = index.ntotal == len(x) and index.d == x.shape[1] and index.metric_type == want
    if same and len(x):
        ivf = faiss.try_extract_index_ivf(index)
        if ivf is not None:
            ivf.make_direct_map()  # IVF rows can only be read back through a direct map
        rows = np.unique(np.linspace(0, len(x) - 1, 16).astype(np.int64))
        stored = np.stack([index.reconstruct(int(r)) for r in rows])
        same = np.allclose(stored, x[rows], rtol=1e-5, atol=1e-6)
    if not same:
        raise NegspaceError(f"{path} does not index this model's item vectors (rebuild it with "
                            "negspace export --faiss)")
    return index


def search(index: Any, measure: str, query_vectors: np.ndarray, k: int,
           exclude: Interactions | None = None, rows: np.ndarray | None = None,
           nprobe: int = 32, ef_search: int = 128, chunk_size: int = 1024
           ) -> tuple[np.ndarray, np.ndarray]:
    """Top-k items per query vector, never one of the row's items in `exclude`.

    Each query asks the index for k + (its history length) items, rounded up to a power of two,
    and drops the seen ones, so with a flat index the result is the exact filtered top-k. Queries
    are grouped by that fetch size, so that a few long histories do not inflate every query's
    fetch (nor, for HNSW, its candidate list).

    Args:
        index: from `build_index` / `read_index`.
        measure: the model's measure (scores follow it: minus the squared distance for l2).
        query_vectors: [n, d] user vectors.
        k: items per query.
        exclude: interactions whose items are filtered out; None filters nothing.
        rows: the row of `exclude` of each query (required with `exclude`).
        nprobe: IVF cells visited per query.
        ef_search: HNSW candidate list size (raised to the fetch size when smaller).
        chunk_size: queries per faiss call.

    Returns:
        (items [n, k] int64, scores [n, k] float32), best first; -1 / -inf pad rows with fewer
        than k admissible items found.
    """
    faiss = require_faiss()
    q = _prepare(query_vectors, measure)
    n, n_items = len(q), index.ntotal
    out_items = np.full((n, k), -1, np.int64)
    out_scores = np.full((n, k), -np.inf, np.float32)
    if exclude is not None and rows is None:
        raise ValueError("search needs `rows` with `exclude`")
    # the queried rows' degrees only: a server asks for one user at a time out of 70k
    deg = ((exclude.indptr[rows + 1] - exclude.indptr[rows]).astype(np.int64)
           if exclude is not None else np.zeros(n, np.int64))
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.nprobe = min(nprobe, ivf.nlist)
    need = np.minimum(n_items, 2 ** np.ceil(np.log2(np.maximum(k + deg, 1))).astype(np.int64))
    order = np.argsort(need, kind="stable")
    bounds = np.flatnonzero(np.diff(need[order])) + 1  # where the fetch size changes
    groups = [g[i:i + chunk_size] for g in np.split(order, bounds)
              for i in range(0, len(g), chunk_size)]
    for part in groups:
        fetch = int(need[part[0]])
        if hasattr(index, "hnsw"):
            index.hnsw.efSearch = max(ef_search, fetch)
        dist, idx = index.search(q[part], fetch)
        scores = -dist if measure == "l2" else dist
        bad = idx < 0
        if exclude is not None:
            bad |= exclude.contains(rows[part][:, None], np.maximum(idx, 0))
        keep = np.argsort(bad, axis=1, kind="stable")[:, :k]  # admissible first, order kept
        items = np.take_along_axis(idx, keep, 1)
        top = np.take_along_axis(scores, keep, 1).astype(np.float32)
        dropped = np.take_along_axis(bad, keep, 1)
        items[dropped], top[dropped] = -1, -np.inf
        out_items[part, :items.shape[1]] = items
        out_scores[part, :items.shape[1]] = top
    return out_items, out_scores
