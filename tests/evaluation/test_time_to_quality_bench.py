"""bench/time_to_quality.py: each curve point is the test value of the model validation prefers
so far, not the best test value."""

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def ttq():
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("bench_ttq", BENCH / "time_to_quality.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCH))


def test_curve_follows_validation_not_test(ttq):
    points = []
    for seconds, val, test in [(1, 0.10, 0.20), (2, 0.30, 0.25), (3, 0.20, 0.40), (4, 0.35, 0.30)]:
        ttq.curve_point(points, seconds, val, test)
    # epoch 3 has the best test value but a worse validation one: the curve keeps epoch 2's
    assert [p["recall@20"] for p in points] == [0.20, 0.25, 0.25, 0.30]
    assert [p["seconds"] for p in points] == [1, 2, 3, 4]
