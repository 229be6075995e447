"""User x item interactions held as CSR, with the external id maps."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from negspace.errors import NegspaceError


@dataclass
class Interactions:
    """Binary (or weighted) implicit feedback over a fixed user and item index space.

    Args:
        matrix: users x items CSR; duplicates merged, indices sorted per row.
        user_ids: external user id of each row.
        item_ids: external item id of each column.
    """

    matrix: sp.csr_matrix
    user_ids: np.ndarray
    item_ids: np.ndarray
    _keys: np.ndarray | None = field(default=None, repr=False, compare=False)
    _positions: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        m = self.matrix.tocsr()
        m.sum_duplicates()  # also sorts indices
        self.matrix = m
        if m.shape != (len(self.user_ids), len(self.item_ids)):
            raise ValueError(f"matrix shape {m.shape} does not match id maps "
                             f"({len(self.user_ids)}, {len(self.item_ids)})")

    @classmethod
    def from_indices(cls, users: np.ndarray, items: np.ndarray, user_ids: np.ndarray,
                     item_ids: np.ndarray, weights: np.ndarray | None = None) -> "Interactions":
        """Builds from internal row/column indices; duplicate pairs are merged (weights summed)."""
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        data = np.ones(len(users), np.float32) if weights is None else np.asarray(weights, np.float32)
        m = sp.csr_matrix((data, (users, items)), shape=(len(user_ids), len(item_ids)))
        return cls(m, np.asarray(user_ids), np.asarray(item_ids))

    @classmethod
    def from_external(cls, users: np.ndarray, items: np.ndarray,
                      weights: np.ndarray | None = None) -> "Interactions":
        """Builds from external ids; ids are numbered in sorted order."""
        if len(users) == 0:
            raise NegspaceError("no interactions left (empty dataset)")
        user_ids, u = np.unique(np.asarray(users), return_inverse=True)
        item_ids, i = np.unique(np.asarray(items), return_inverse=True)
        return cls.from_indices(u, i, user_ids, item_ids, weights)

    @property
    def n_users(self) -> int:
        return self.matrix.shape[0]

    @property
    def n_items(self) -> int:
        return self.matrix.shape[1]

    @property
    def nnz(self) -> int:
        return int(self.matrix.nnz)

    @property
    def indptr(self) -> np.ndarray:
        return self.matrix.indptr

    @property
    def indices(self) -> np.ndarray:
        return self.matrix.indices

    def item_counts(self) -> np.ndarray:
        """Number of users who interacted with each item (the popularity f(j))."""
        return np.bincount(self.matrix.indices, minlength=self.n_items).astype(np.int64)

    def user_degrees(self) -> np.ndarray:
        return np.diff(self.matrix.indptr).astype(np.int64)

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(user index, item index) of every interaction, in CSR order."""
        users = np.repeat(np.arange(self.n_users, dtype=np.int64), self.user_degrees())
        return users, self.matrix.indices.astype(np.int64)

    def keys(self) -> np.ndarray:
        """Sorted int64 keys user * n_items + item, for vectorised membership tests."""
        if self._keys is None:
            u, i = self.pairs()
            self._keys = u * self.n_items + i
        return self._keys

    def contains(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Whether each (user, item) pair is an interaction; any broadcastable shapes."""
        keys = self.keys()
        q = np.asarray(users, np.int64) * self.n_items + np.asarray(items, np.int64)
        if len(keys) == 0:
            return np.zeros(q.shape, bool)
        pos = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
        return keys[pos] == q

    def select(self, mask: np.ndarray) -> "Interactions":
        """Keeps the interactions where mask (one flag per nnz, CSR order) is true; same id space.

        Sliced in CSR order (rows stay sorted, nothing to merge): no COO round trip, which cost
        several nnz-sized int64 arrays per call on 10M interactions."""
        mask = np.asarray(mask, bool)
        m = self.matrix
        kept = np.concatenate(([0], np.cumsum(mask)))[m.indptr]  # new row pointers
        out = sp.csr_matrix((m.data[mask], m.indices[mask], kept.astype(m.indptr.dtype)),
                            shape=m.shape)
        return Interactions(out, self.user_ids, self.item_ids)

    def binarized(self) -> "Interactions":
        m = self.matrix.copy()
        m.data = np.ones_like(m.data)
        return Interactions(m, self.user_ids, self.item_ids)

    def user_index(self, external_id: object) -> int:
        """Row of an external user id; accepts the id as stored or as its string form."""
        return self._lookup("user", external_id)

    def item_index(self, external_id: object) -> int:
        return self._lookup("item", external_id)

    def find(self, what: str, external_ids: list) -> np.ndarray:
        """Rows ("user") or columns ("item") of external ids, -1 for unknown ones (no error), so a
        caller can name every unknown id at once.

        Args:
            what: "user" or "item".
            external_ids: ids as stored or in their string form.

        Returns:
            int64 array, one entry per id.
        """
        position = self._position_map(what)
        return np.array([position.get(str(x), -1) for x in external_ids], np.int64)

    def _position_map(self, what: str) -> dict[str, int]:
        # Built once per object: a lookup by comparing every id's string form cost milliseconds
        # per call on 70k users, which a server answering per request cannot pay.
        if what not in self._positions:
            ids = (self.user_ids if what == "user" else self.item_ids).astype(str).tolist()
            position = dict(zip(ids, range(len(ids))))
            if len(position) < len(ids):  # a repeated id: its first row wins, as it always did
                position = {key: j for j, key in reversed(list(enumerate(ids)))}
            self._positions[what] = position
        return self._positions[what]

    def _lookup(self, what: str, external_id: object) -> int:
        row = self._position_map(what).get(str(external_id))
        if row is None:
            raise NegspaceError(f"unknown {what} id {external_id!r}")
        return row
