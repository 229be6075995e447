"""The buffered scorer gives the bits of score_matrix, and evaluation does not depend on the
chunk size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from negspace.data import Interactions
from negspace.evaluation.evaluator import auto_chunk_size, evaluate
from negspace.evaluation.scoring import BufferedScorer
from negspace.models.base import score_matrix


@pytest.mark.parametrize("measure", ["l2", "dot", "cosine"])
def test_buffered_scores_are_score_matrix_bits(measure):
    g = torch.Generator().manual_seed(0)
    users, items = torch.randn(50, 16, generator=g), torch.randn(300, 16, generator=g)
    scorer = BufferedScorer(lambda idx: users[idx], items, measure)
    for rows in (torch.arange(0, 20), torch.arange(20, 50), torch.arange(5, 12)):
        got = scorer(rows).clone()
        assert torch.equal(got, score_matrix(users[rows], items, measure))
    assert scorer.buffer.shape[0] == 30  # grown once to the largest chunk, then reused


def test_metrics_do_not_depend_on_chunks():
    rng = np.random.default_rng(0)
    dense = rng.random((80, 120)) < 0.2
    u, i = np.nonzero(dense)
    inter = Interactions.from_indices(u, i, np.arange(80), np.arange(120))
    mask = rng.random(inter.nnz) < 0.3
    train, test = inter.select(~mask), inter.select(mask)
    users, items = torch.randn(80, 8), torch.randn(120, 8)
    scorer = BufferedScorer(lambda idx: users[idx], items, "l2")
    a = evaluate(scorer, train, test, chunk_size=7)
    b = evaluate(scorer, train, test)
    assert a == b or all(np.isclose(a[k], b[k], equal_nan=True) for k in a)
    assert auto_chunk_size(3706) == 4096 and auto_chunk_size(200_000) == 167
    assert auto_chunk_size(10**9) == 64
