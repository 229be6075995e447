"""The paired comparison of two models' per-user metrics against scipy's generic versions."""

import numpy as np
import pytest
from scipy import stats

from negspace.evaluation.significance import compare_paired


def _pair(n: int, shift: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    b = rng.random(n) * 0.2
    return b + shift + rng.normal(0.0, 0.05, n), b


def test_a_clear_difference_is_significant_and_its_interval_holds_it():
    a, b = _pair(2000, 0.01)
    c = compare_paired(a, b, "map@50")
    assert c.p_value < 0.001 and c.verdict() == "a above b"
    assert c.ci_low < c.difference < c.ci_high and c.ci_low > 0
    assert c.difference == pytest.approx(a.mean() - b.mean())
    assert c.relative == pytest.approx((a.mean() - b.mean()) / b.mean())
    assert compare_paired(b, a).verdict() == "a below b"


def test_no_difference_is_not_significant():
    a, b = _pair(2000, 0.0, seed=4)
    c = compare_paired(a, b)
    assert c.p_value > 0.05 and c.verdict() == "no significant difference"
    assert c.ci_low < 0 < c.ci_high


def test_agrees_with_scipy_permutation_test_and_bootstrap():
    a, b = _pair(300, 0.008, seed=2)
    c = compare_paired(a, b, n_resamples=20_000, seed=1)
    want_p = stats.permutation_test((a, b), lambda x, y, axis: np.mean(x - y, axis=axis),
                                    permutation_type="samples", n_resamples=20_000,
                                    vectorized=True, random_state=5).pvalue
    assert 0.005 < want_p < 0.5  # a case where the p-value is neither 0 nor 1
    assert c.p_value == pytest.approx(want_p, abs=0.015)
    want = stats.bootstrap((a - b,), np.mean, n_resamples=20_000, method="percentile",
                           random_state=6).confidence_interval
    assert c.ci_low == pytest.approx(want.low, abs=3e-4)
    assert c.ci_high == pytest.approx(want.high, abs=3e-4)


def test_seeded():
    a, b = _pair(500, 0.003)
    assert compare_paired(a, b, seed=3) == compare_paired(a, b, seed=3)


def test_equal_models():
    a, _ = _pair(50, 0.0)
    c = compare_paired(a, a.copy())
    assert (c.difference, c.ci_low, c.ci_high, c.p_value) == (0.0, 0.0, 0.0, 1.0)


@pytest.mark.parametrize("a, b, message", [
    (np.ones(3), np.ones(4), "equal 1-d"),
    (np.ones(1), np.ones(1), "at least 2"),
    (np.array([1.0, np.nan]), np.ones(2), "NaN"),
])
def test_rejects_bad_input(a, b, message):
    with pytest.raises(ValueError, match=message):
        compare_paired(a, b)
