"""The examples people copy: every ```python block of docs/guide.md (run in order, in one
namespace) and the docstring examples of the public API (doctest)."""

import contextlib
import doctest
import io
import re
import tomllib
from pathlib import Path

import pytest
import torch

import negspace.api.recommender
import negspace.data.frames
from negspace.config import RECIPE_CHOICES

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "guide.md"
# The guide's blocks that print checks: (a line of the block, booleans it prints). Every one
# must print True; faiss is in the test extra, so the index block runs too.
GUIDE_CHECKS = {"interactions_from(matrix).nnz == matrix.nnz": 1,
                "again.recommend(": 1, "fast.item.tolist() == exact.item.tolist()": 1,
                "{1, 2}.isdisjoint(items)": 2}


def test_guide_python_blocks_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.S)
    assert len(blocks) >= 10
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)
    namespace: dict = {}
    checked = 0
    for number, code in enumerate(blocks, 1):
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(code, f"{GUIDE.name} block {number}", "exec"), namespace)
        except Exception as e:  # name the block in the failure
            pytest.fail(f"guide block {number} failed: {type(e).__name__}: {e}\n{code}")
        booleans = re.findall(r"\b(True|False)\b", out.getvalue())
        wanted = sum(n for line, n in GUIDE_CHECKS.items() if line in code)
        assert booleans == ["True"] * wanted, f"guide block {number} printed {out.getvalue()!r}"
        checked += wanted
    assert checked == sum(GUIDE_CHECKS.values())  # every check was found in the guide


def test_make_run_line_says_what_the_demo_trains():
    demo = tomllib.loads((ROOT / "configs" / "demo.toml").read_text())
    readme = (ROOT / "README.md").read_text()
    line = readme[readme.index("make run "):readme.index("make test ")]
    assert f"`{demo['dataset']}`" in line, line
    # the demo names no model, loss or sampler: it trains the default recipe, and says so
    assert not set(demo) & set(RECIPE_CHOICES) and "default recipe" in line, line


@pytest.mark.parametrize("module", [negspace.api.recommender, negspace.data.frames])
def test_docstring_examples(module):
    torch.set_num_threads(1)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_the_repository_cites_no_file_it_does_not_hold():
    """The docs stand alone: nothing points at the task's SPEC.md or at notes beside the
    repository (../shared/notes) instead of saying what it needs in its own words."""
    files = [ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("configs/**/*.toml"),
             *ROOT.glob("src/**/*.py"), *ROOT.glob("tests/**/*.py"), *ROOT.glob("bench/*.py")]
    this = Path(__file__).resolve()
    cited = [f"{path.relative_to(ROOT)}: {word}" for path in files if path.resolve() != this
             for word in ("SPEC.md", "shared/notes") if word in path.read_text(errors="replace")]
    assert not cited, cited


def test_the_slow_marker_marks_the_real_data_tests():
    from tests.data import test_loaders
    from tests.training import test_training

    for test in (test_training.test_learns_on_movielens_100k, test_loaders.test_named_dataset_counts,
                 test_loaders.test_kgat_notes_users_without_test):
        assert "slow" in {mark.name for mark in getattr(test, "pytestmark", [])}, test.__name__
