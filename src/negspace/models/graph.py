"""MF whose scoring vectors are propagated over the user-item graph (LightGCN, He et al.,
SIGIR 2020): K layers of e_u <- sum_i e_i / sqrt(|N_u| |N_i|) and the same for items, no weights
and no non-linearity, averaged with the layer-0 embeddings. The tables are the only parameters,
so every loss and sampler that trains MF trains it; only the vectors they read change.

Why: on sparse data (gowalla-lightgcn) the published graph encoders and graph filters score above
plain MF at equal dimension; the propagation lets a user's vector borrow from its neighbours'.
"""

from __future__ import annotations

import torch

from negspace.data.interactions import Interactions
from negspace.models.mf import MF
from negspace.models.spectral import normalised_matrix, torch_csr
from negspace.models.unit_rows import unit_rows


class _GraphProduct(torch.autograd.Function):
    """matrix @ x whose backward multiplies by the precomputed transpose: torch's own backward
    of a CSR product transposes the matrix at every call (7x the forward's time on gowalla)."""

    @staticmethod
    def forward(ctx, matrix: torch.Tensor, transposed: torch.Tensor,  # type: ignore[override]
                x: torch.Tensor) -> torch.Tensor:
        ctx.transposed = transposed
        return torch.sparse.mm(matrix, x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return None, None, torch.sparse.mm(ctx.transposed, grad.contiguous())


def propagate(users: torch.Tensor, items: torch.Tensor, graph: torch.Tensor,
              graph_t: torch.Tensor, layers: int) -> tuple[torch.Tensor, torch.Tensor]:
    """LightGCN's layer mean of (users, items) over the normalised matrix.

    Args:
        users: [n_users, d] layer-0 vectors; items: [n_items, d].
        graph: R~ = D_u^-1/2 R D_i^-1/2 as a CSR tensor [n_users, n_items]; graph_t: its transpose.
        layers: K >= 1.

    Returns:
        (users [n_users, d], items [n_items, d]): (e^0 + ... + e^K) / (K + 1) of each side.
    """
    partial, items_mean, last = propagate_items(users, items, graph, graph_t, layers)
    return users_mean(partial, last, graph, graph_t, layers), items_mean


def users_mean(partial: torch.Tensor, last: torch.Tensor, graph: torch.Tensor,
               graph_t: torch.Tensor, layers: int) -> torch.Tensor:
    """Every user's layer mean from `propagate_items`' partial sum and last item layer.

    Returns:
        [n_users, d]: (partial + R~ last) / (K + 1).
    """
    return (partial + _GraphProduct.apply(graph, graph_t, last)) / (layers + 1)


def propagate_items(users: torch.Tensor, items: torch.Tensor, graph: torch.Tensor,
                    graph_t: torch.Tensor, layers: int
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The item side's layer mean, and what each user's mean needs besides its last layer.

    Why: a step of the full softmax reads every item's vector but only its batch's users'. The
    users' last layer (R~ e_i^(K-1)) is needed for those rows alone, so a step computes it for
    them (`rows_product`) instead of for every user: 3 products over the graph instead of 4 at
    K = 2, and as many fewer in the backward.

    Returns:
        (partial = e_u^0 + ... + e_u^(K-1) [n_users, d], the items' mean [n_items, d],
        last = e_i^(K-1) [n_items, d]): user u's mean is (partial[u] + (R~ last)[u]) / (K + 1).
    """
    u_sum, i_sum, u, i = users, items, users, items
    for k in range(layers):
        last = i
        i = _GraphProduct.apply(graph_t, graph, u)
        i_sum = i_sum + i
        if k + 1 < layers:
            u = _GraphProduct.apply(graph, graph_t, last)
            u_sum = u_sum + u
    return u_sum, i_sum / (layers + 1), last


def rows_product(graph: torch.Tensor, rows: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """graph[rows] @ x for a CSR tensor, by gathering the rows' entries (differentiable in x).

    Args:
        graph: [n, m] CSR tensor; rows: [B] row indices (repeats allowed); x: [m, d].

    Returns:
        [B, d].
    """
    crow, col, val = graph.crow_indices(), graph.col_indices(), graph.values()
    starts, counts = crow[rows], crow[rows + 1] - crow[rows]
    row_of = torch.repeat_interleave(torch.arange(len(rows), device=rows.device), counts)
    first = torch.cumsum(counts, 0) - counts  # where each row's entries begin in the gather
    pos = starts[row_of] + torch.arange(len(row_of), device=rows.device) - first[row_of]
    return x.new_zeros(len(rows), x.shape[1]).index_add(0, row_of,
                                                        val[pos].unsqueeze(1) * x[col[pos]])


class PropagatedMF(MF):
    """MF scored on LightGCN-propagated vectors.

    The propagation reads every row of both tables, so their gradients are dense. Within one
    training step the propagated tables are computed once and shared by every lookup (the user
    rows, the positives, the negatives); they are recomputed when a table changes (its autograd
    version counter) or the grad mode does, and after every backward through them.

    Args:
        n_users, n_items, dim: table sizes.
        history: the training interactions: the graph (set_history replaces it).
        layers: K >= 1 propagation layers.
        **mf_options: MF's measure, init_std, init, item_bias, user_dropout.
    """

    reads_history = True

    def __init__(self, n_users: int, n_items: int, dim: int, history: Interactions,
                 layers: int = 2, **mf_options) -> None:
        if layers < 1:
            raise ValueError(f"PropagatedMF needs layers >= 1; got {layers}")
        super().__init__(n_users, n_items, dim, sparse=False, **mf_options)
        self.layers = layers
        # (key, propagate_items' three tables, the users' whole table once asked for)
        self._cache: tuple | None = None
        self.set_history(history)

    def set_history(self, history: Interactions) -> None:
        """The graph the vectors are propagated over: the training interactions (the final export
        reads the whole training data, validation interactions included, as SimpleX's does)."""
        _, normalised, _ = normalised_matrix(history.matrix)
        # Buffers, not parameters, and not in state_dict: the graph is data, not a weight.
        self.register_buffer("graph", torch_csr(normalised), persistent=False)
        self.register_buffer("graph_t", torch_csr(normalised.T), persistent=False)
        self._cache = None

    def propagated(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(users [n_users, dim], items [n_items, dim]): the propagated tables, before the
        cosine's normalisation."""
        partial, items, last = self._propagated_items()
        if self._cache[4] is None:  # type: ignore[index]  # the users' last layer, all of it
            users = users_mean(partial, last, self.graph, self.graph_t, self.layers)
            if users.requires_grad:
                users.register_hook(self._forget)
            self._cache = (*self._cache[:4], users)  # type: ignore[index]
        return self._cache[4], items  # type: ignore[index]

    def _propagated_items(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """propagate_items' three tables, computed once while the tables and grad mode stay."""
        key = (self.users.weight._version, self.items.weight._version, id(self.graph),
               self.users.weight.data_ptr(), torch.is_grad_enabled())
        if self._cache is None or self._cache[0] != key:
            tables = propagate_items(self.users.weight, self.items.weight, self.graph,
                                     self.graph_t, self.layers)
            for t in tables:  # a backward frees their graph: the next step builds anew
                if t.grad_fn is not None:  # (not a table itself: its hooks would pile up)
                    t.register_hook(self._forget)
            self._cache = (key, *tables, None)
        return self._cache[1:4]

    def _forget(self, grad: torch.Tensor) -> None:
        self._cache = None

    def _vectors(self, table: torch.nn.Embedding, idx: torch.Tensor | None) -> torch.Tensor:
        if table is self.users and idx is not None:  # the last layer for these rows only
            partial, _, last = self._propagated_items()
            flat = idx.reshape(-1)
            v = (partial.index_select(0, flat) + rows_product(self.graph, flat, last)) / (
                self.layers + 1)
            v = v.view(*idx.shape, -1)
        else:
            full = self.propagated()[0] if table is self.users else self._propagated_items()[1]
            v = full if idx is None else full.index_select(0, idx.reshape(-1)).view(*idx.shape, -1)
        return unit_rows(v) if self.cosine else v

    def train(self, mode: bool = True) -> "PropagatedMF":
        self._cache = None  # no tensor of one mode's graph serves the other
        return super().train(mode)
