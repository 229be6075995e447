"""Fold-in on fixed item vectors: constraints, determinism, and recovering a planted user."""

import numpy as np
import pytest
import torch

from negspace.errors import NegspaceError
from negspace.models.base import score_matrix
from negspace.retrieval.foldin import fold_in


def test_constraints_and_determinism():
    v = torch.randn(50, 6, generator=torch.Generator().manual_seed(0))
    histories = [[1, 2, 3], [7], list(range(10, 30))]
    sphere = fold_in(v, histories, "l2", "sphere", loss="triplet", seed=3)
    assert torch.allclose(sphere.norm(dim=1), torch.ones(3), atol=1e-5)
    ball = fold_in(v * 3, histories, "l2", "ball")
    assert (ball.norm(dim=1) <= 1 + 1e-5).all()
    assert torch.equal(sphere, fold_in(v, histories, "l2", "sphere", loss="triplet", seed=3))
    assert not torch.equal(sphere, fold_in(v, histories, "l2", "sphere", loss="triplet", seed=4))


@pytest.mark.parametrize("measure,constraint,loss,hard", [
    ("dot", "none", "bpr", False), ("l2", "sphere", "triplet", False),
    ("l2", "sphere", "triplet", True), ("cosine", "none", "bpr", False)])
def test_recovers_a_planted_users_favourites(measure, constraint, loss, hard):
    # items are noisy copies of 4 directions; the user liked 6 items of direction 0
    gen = torch.Generator().manual_seed(1)
    centres = torch.nn.functional.normalize(torch.randn(4, 12, generator=gen), dim=1)
    v = centres.repeat_interleave(25, 0) + 0.1 * torch.randn(100, 12, generator=gen)
    v = torch.nn.functional.normalize(v, dim=1)
    u = fold_in(v, [[0, 3, 5, 8, 13, 21]], measure, constraint, loss=loss, hard=hard)
    top = torch.topk(score_matrix(u, v, measure), 25).indices[0]
    assert (top < 25).float().mean() >= 0.8  # the rest of direction 0 ranks first (chance: 0.25)


def test_bad_histories():
    v = torch.randn(5, 3)
    with pytest.raises(NegspaceError, match="at least one item"):
        fold_in(v, [[1], []], "dot")
    with pytest.raises(NegspaceError, match="out of range"):
        fold_in(v, [[5]], "dot")
