"""Beyond-accuracy metrics against their definitions on small hand-checked cases."""

import numpy as np
import pytest

from negspace.evaluation.beyond import (average_popularity, coverage, exposure, gini,
                                        long_tail_mask, long_tail_share)


def test_long_tail_is_outside_the_head_holding_20_percent():
    counts = np.array([1, 50, 2, 30, 10, 7])  # 100 interactions; 50 alone is the head
    assert long_tail_mask(counts).tolist() == [True, False, True, True, True, True]
    # the head takes items while fewer than 20% are above them: item 1 (0 above) only
    assert long_tail_mask(np.full(5, 10)).tolist() == [False, True, True, True, True]
    assert long_tail_mask(counts, head_share=0.6).tolist() == [True, False, True, False, True, True]
    assert long_tail_mask(np.zeros(3)).all()


def test_per_user_popularity_and_tail_share_ignore_padding():
    counts = np.array([5, 1, 3, 0])
    top = np.array([[0, 1, 2], [3, -1, -1], [-1, -1, -1]])
    assert average_popularity(top, counts, 3)[:2].tolist() == [3.0, 0.0]
    assert average_popularity(top, counts, 2)[0] == 3.0
    assert np.isnan(average_popularity(top, counts, 3)[2])
    tail = np.array([False, True, True, True])
    assert long_tail_share(top, tail, 3)[:2].tolist() == [pytest.approx(2 / 3), 1.0]


def test_coverage_and_gini():
    top = np.array([[0, 1], [0, 2], [0, -1]])
    shown = exposure(top, 5, 2)
    assert shown.tolist() == [3, 1, 1, 0, 0]
    assert coverage(shown) == pytest.approx(0.6)
    assert gini(np.full(4, 7)) == 0.0  # equal exposure
    assert gini(np.array([0, 0, 0, 9])) == pytest.approx(0.75)  # one item: (n - 1) / n
    # mean absolute difference / (2 * mean): pairs of [3, 1, 1, 0, 0]
    x = shown.astype(float)
    want = np.abs(x[:, None] - x[None, :]).sum() / (2 * len(x) ** 2 * x.mean())
    assert gini(shown) == pytest.approx(want)
    assert np.isnan(gini(np.zeros(3)))
