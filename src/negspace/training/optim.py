"""Optimisers that keep sparse embedding updates sparse."""

from __future__ import annotations

import torch

from negspace.models.base import EmbeddingModel


class SparseFriendlyAdam:
    """SparseAdam (lazy Adam: only the rows a batch touches move) for embedding tables with sparse
    gradients, plain Adam for every dense parameter. One object with the optimiser interface the
    trainer needs.
    """

    def __init__(self, model: EmbeddingModel, lr: float) -> None:
        sparse = model.sparse_parameters()
        sparse_ids = {id(p) for p in sparse}
        dense = [p for p in model.parameters() if id(p) not in sparse_ids and p.requires_grad]
        self.optimizers: list[torch.optim.Optimizer] = []
        if sparse:
            self.optimizers.append(torch.optim.SparseAdam(sparse, lr=lr))
        if dense:
            self.optimizers.append(torch.optim.Adam(dense, lr=lr))

    def zero_grad(self) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()

    def state_dict(self) -> list[dict]:
        return [opt.state_dict() for opt in self.optimizers]

    def load_state_dict(self, states: list[dict]) -> None:
        for opt, state in zip(self.optimizers, states):
            opt.load_state_dict(state)
