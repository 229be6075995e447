"""Querying a fitted recommender: top-k for known users, new users (fold-in or the two-tower cold
start), similar items, the array ranking behind them (`negspace serve`) and the faiss index.
Mixed into `api.recommender.Recommender`, whose attributes these methods read (`train`, `config`,
`user_vectors`, `item_vectors`, `measure`, `index`, `model`, ...) and whose `_need_fitted` and
`_device` they call."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Self, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from negspace.data.interactions import Interactions
from negspace.errors import NegspaceError
from negspace.pipeline.towers import cold_vectors
from negspace.models.base import score_matrix
from negspace.models.two_tower import TwoTower
from negspace.retrieval import ann
from negspace.retrieval.foldin import fold_in
from negspace.retrieval.item_filter import ItemFilter, blended_scorer
from negspace.retrieval.topk import csr_entries, topk_items

class RecommenderQueries:
    """`Recommender`'s rankings (a mixin: the vectors, id maps and options are set by
    `Recommender.fit` / `Recommender.load`)."""

    # -- serving --------------------------------------------------------------------------------

    def recommend(self, users: Any, k: int = 10, filter_seen: bool = True,
                  items: Iterable[Any] | None = None, exclude: Iterable[Any] | None = None,
                  use_index: bool | None = None) -> pd.DataFrame:
        """Top-k items for known users, ranked by the model's score.

        Args:
            users: one external user id or a sequence of them.
            k: items per user.
            filter_seen: never recommend a user's training items.
            items: restrict the ranking to these item ids.
            exclude: item ids never recommended in this call (to anyone).
            use_index: rank with the faiss index (`build_index` / a loaded items.faiss). Default:
                when one is present and neither `items` nor `exclude` is given (those rank
                exactly). Seen items are filtered exactly either way.

        Returns:
            DataFrame with columns user, rank (1 = best), item, score; a user gets fewer than k
            rows only when fewer admissible items exist.
        """
        train = self._need_fitted()
        user_list = _as_list(users)
        rows = np.array([train.user_index(u) for u in user_list], np.int64)
        return self._rank(self.user_vectors[rows], rows if filter_seen else None, user_list, k,
                          items, exclude, use_index, history_rows=rows)

    def recommend_new(self, histories: Mapping[Any, Sequence[Any]] | Sequence[Sequence[Any]],
                      k: int = 10, filter_seen: bool = True, items: Iterable[Any] | None = None,
                      exclude: Iterable[Any] | None = None, steps: int = 150,
                      seed: int | None = None, use_index: bool | None = None,
                      features: Mapping[Any, Mapping] | Sequence[Mapping | None] | None = None
                      ) -> pd.DataFrame:
        """Recommendations for users who were not in training, from the items they interacted
        with, without retraining: each user vector is fitted to its items with the item vectors
        fixed (`retrieval/foldin.py`), with the model's loss family and sampled negatives.

        Args:
            histories: {new user key: [item ids]} or a list of item-id lists (keys 0, 1, ...).
                Unknown item ids raise an error.
            k, filter_seen, items, exclude, use_index: as in `recommend` (seen = the given
                history).
            steps: gradient steps of the fold-in.
            seed: seeds the fold-in negatives (default: the config's seed).
            features: two-tower models only: per new user, side features {column: value}
                (keyed like `histories`, or a list in its order). A two-tower model does not
                fit anything: its user tower reads the features and the items (a history may be
                empty), as `negspace recommend --features` does.

        Returns:
            DataFrame with columns user (the keys), rank, item, score.
        """
        train = self._need_fitted()
        keys = list(histories) if isinstance(histories, Mapping) else list(range(len(histories)))
        lists = [histories[key] for key in keys]
        idx = [[train.item_index(i) for i in _as_list(h)] for h in lists]
        vectors = self.new_user_vectors(idx, features, keys, steps=steps, seed=seed)
        seen = Interactions.from_indices(np.repeat(np.arange(len(idx)), [len(h) for h in idx]),
                                         np.concatenate([np.asarray(h, np.int64) for h in idx])
                                         if idx else np.empty(0, np.int64),
                                         np.asarray(keys, dtype=object), train.item_ids)
        return self._rank(vectors, np.arange(len(keys)) if filter_seen else None, keys, k, items,
                          exclude, use_index, seen=seen, history_rows=np.arange(len(keys)))

    def new_user_vectors(self, histories: list[list[int]],
                         features: Mapping[Any, Mapping] | Sequence[Mapping | None] | None = None,
                         keys: list | None = None, steps: int = 150,
                         seed: int | None = None) -> torch.Tensor:
        """Vectors of new users from item-index histories: the towers' cold start for a
        two-tower model (with `features`), the fold-in for every other model."""
        towers = self.model if isinstance(self.model, TwoTower) else None
        if towers is None:
            if features is not None:
                raise NegspaceError("features are read by two-tower models only")
            return self.fold_in(histories, steps=steps, seed=seed)
        if isinstance(features, Mapping):
            rows = [features.get(key) for key in (keys or range(len(histories)))]
        else:
            rows = list(features) if features is not None else [None] * len(histories)
        if len(rows) != len(histories):
            raise NegspaceError(f"{len(rows)} feature rows for {len(histories)} new users")
        encoder = (self._features.user_encoder.to_json()
                   if self._features is not None and self._features.user_encoder is not None
                   else self._user_encoder)
        return cold_vectors(towers, encoder, rows, histories)

    def fold_in(self, histories: Sequence[Sequence[int]], steps: int = 150,
                seed: int | None = None) -> torch.Tensor:
        """User vectors for item-index histories (see `recommend_new`); [len, d] float32."""
        cfg = self.config
        loss = ("triplet" if cfg.resolved_loss == "triplet" and self._objective is None
                else "bpr")
        return fold_in(self.item_vectors, histories, self.measure, self._constraint(), loss=loss,
                       margin=cfg.to_dict()["margin"], hard=cfg.sampler.startswith("two-stage"),
                       steps=steps, seed=cfg.seed if seed is None else seed)

    def _constraint(self) -> str:
        """Where user vectors live, read off the trained ones so that any model (a factory's
        too, or a loaded run) gets the right one: the unit sphere, the unit ball, or anywhere."""
        if self.measure != "l2":
            return "none"
        norms = self.user_vectors.norm(dim=1)
        if torch.allclose(norms, torch.ones_like(norms), atol=1e-4):
            return "sphere"
        return "ball" if bool((norms <= 1 + 1e-4).all()) else "none"

    def similar_items(self, items: Any, k: int = 10) -> pd.DataFrame:
        """The k items closest to each given item, the item itself left out: by L2 distance for
        L2 models, by cosine otherwise (a plain dot product would favour long, popular vectors).

        Args:
            items: one external item id or a sequence of them.
            k: neighbours per item.

        Returns:
            DataFrame with columns item, rank, similar, score.
        """
        train = self._need_fitted()
        item_list = _as_list(items)
        rows = np.array([train.item_index(i) for i in item_list], np.int64)
        measure = "l2" if self.measure == "l2" else "cosine"
        vectors = self.item_vectors
        itself = Interactions(sp.identity(train.n_items, np.float32, format="csr"),
                              np.arange(train.n_items), train.item_ids)
        top, scores = topk_items(lambda r: score_matrix(vectors[r], vectors, measure), rows, k,
                                 exclude=itself)
        frame = _frame(item_list, top, scores, train.item_ids)
        return frame.rename(columns={"user": "item", "item": "similar"})

    def _rank(self, vectors: torch.Tensor, seen_rows: np.ndarray | None, keys: list, k: int,
              items: Iterable[Any] | None, exclude: Iterable[Any] | None,
              use_index: bool | None, seen: Interactions | None = None,
              history_rows: np.ndarray | None = None) -> pd.DataFrame:
        top, scores = self.rank_vectors(vectors, seen_rows, k, items, exclude, use_index, seen,
                                        history_rows)
        return _frame(keys, top, scores, self._need_fitted().item_ids)

    def rank_vectors(self, vectors: torch.Tensor, seen_rows: np.ndarray | None, k: int,
                     items: Iterable[Any] | None = None, exclude: Iterable[Any] | None = None,
                     use_index: bool | None = None, seen: Interactions | None = None,
                     history_rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ranking behind `recommend` and `recommend_new`, as arrays (for `negspace serve`,
        which answers without building a DataFrame).

        Args:
            vectors: [n, d] user vectors.
            seen_rows: the row of `seen` of each vector whose items are filtered out, or None.
            k, items, exclude, use_index: as in `recommend`.
            seen: the interactions filtered (default: the training interactions).
            history_rows: the row of `seen` holding each vector's history, which a run with
                an item filter (`item_filter` > 0) scores (default: `seen_rows`).

        Returns:
            (item indices [n, k] int64, scores [n, k] float32), -1 / -inf padding.
        """
        train = self._need_fitted()
        keys = range(len(vectors))
        if k < 1:
            raise NegspaceError(f"k must be >= 1; got {k}")
        seen = train if seen is None else seen
        cand = None
        if items is not None or exclude is not None:
            cand = (np.arange(train.n_items) if items is None
                    else np.unique([train.item_index(i) for i in _as_list(items)]))
            if exclude is not None:
                cand = np.setdiff1d(cand, [train.item_index(i) for i in _as_list(exclude)])
        rows = np.arange(len(keys)) if seen_rows is None else seen_rows
        weight = self.config.item_filter_weight or 0.0
        if weight and use_index:
            raise NegspaceError(f"this model blends an item filter into its scores (item_filter "
                                f"{weight:g}), which a faiss index over the vectors cannot rank: "
                                "rank exactly, or train with --item-filter 0 for an index")
        exact = cand is not None or use_index is False or self.index is None or weight > 0
        if use_index and exact and self.index is None:
            raise NegspaceError("no faiss index: call build_index() or save one with "
                                "negspace export --faiss")
        if exact:
            # score_fn receives positions into `rows`; the mask reads the matching seen rows
            positions = np.arange(len(keys))
            mask = None if seen_rows is None else _reindex(seen, rows)
            scorer = self._scorer(vectors)
            if weight:
                history_rows = seen_rows if history_rows is None else history_rows
                if history_rows is None:
                    raise NegspaceError("this model's item filter scores each user's history: "
                                        "pass the rows of the users' histories")
                scorer = blended_scorer(scorer, self._item_filter(),
                                        _reindex(seen, history_rows).matrix, weight)
            top, scores = topk_items(scorer, positions, k, exclude=mask, candidates=cand)
        else:
            top, scores = ann.search(self.index, self.measure, vectors.numpy(), k,
                                     exclude=seen if seen_rows is not None else None, rows=rows)
        return top, scores

    def _scorer(self, vectors: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """positions -> scores of those rows of `vectors` against every item, on the device."""
        device = self._device()
        if device.type == "cpu":
            return lambda p: score_matrix(vectors[p], self.item_vectors, self.measure)
        if self._items_on_device is None or self._items_on_device.device != device:
            self._items_on_device = self.item_vectors.to(device)
        items = self._items_on_device
        return lambda p: score_matrix(vectors[p].to(device), items, self.measure)

    def _item_filter(self) -> ItemFilter:
        """The item filter of the training graph, built on first use and kept."""
        train = self._need_fitted()
        cached = getattr(self, "_filter_of", None)
        if cached is None or cached[0] is not train:
            cached = self._filter_of = (train, ItemFilter(train))
        return cached[1]

    # -- faiss ----------------------------------------------------------------------------------

    def build_index(self, kind: str = "flat", **params: Any) -> Self:
        """Builds a faiss index over the item vectors ("flat" exact, "ivf" or "hnsw"); see
        `negspace.retrieval.ann.build_index` for `params`. Needs the `faiss` extra."""
        self._need_fitted()
        self.index = ann.build_index(self.item_vectors.numpy(), self.measure, kind, **params)
        return self



def _as_list(values: Any) -> list:
    if isinstance(values, (str, bytes)) or np.ndim(values) == 0:
        return [values]
    return list(values)


def _reindex(inter: Interactions, rows: np.ndarray) -> Interactions:
    """The given rows of `inter` as a mask (values 1), renumbered 0..len-1 (row i = rows[i])."""
    # built from the row slices directly: scipy's fancy row indexing cost a server a quarter of
    # a millisecond per single-user request
    rows = np.asarray(rows, np.int64)
    lengths = inter.indptr[rows + 1].astype(np.int64) - inter.indptr[rows]
    indptr = np.zeros(len(rows) + 1, np.int64)
    np.cumsum(lengths, out=indptr[1:])
    _, cols = csr_entries(inter.indptr, inter.indices, rows)
    m = sp.csr_matrix((np.ones(len(cols), np.float32), cols, indptr),
                      shape=(len(rows), inter.n_items))
    return Interactions(m, np.arange(len(rows)), inter.item_ids)


def _frame(keys: list, top: np.ndarray, scores: np.ndarray, item_ids: np.ndarray) -> pd.DataFrame:
    valid = top >= 0
    n_per = valid.sum(axis=1)
    return pd.DataFrame({
        "user": np.repeat(np.asarray(keys, dtype=object), n_per),
        "rank": np.concatenate([np.arange(1, n + 1) for n in n_per]) if len(n_per) else [],
        "item": item_ids[top[valid]],
        "score": scores[valid].astype(np.float64),
    })
