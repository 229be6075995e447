"""The examples people copy: every ```python block of docs/guide.md (run in order, in one
namespace) and the docstring examples of the public API (doctest)."""

import doctest
import re
from pathlib import Path

import pytest
import torch

import negspace.api
import negspace.data.frames

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "guide.md"


def test_guide_python_blocks_run(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.S)
    assert len(blocks) >= 10
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)
    namespace: dict = {}
    for number, code in enumerate(blocks, 1):
        try:
            exec(compile(code, f"{GUIDE.name} block {number}", "exec"), namespace)
        except Exception as e:  # name the block in the failure
            pytest.fail(f"guide block {number} failed: {type(e).__name__}: {e}\n{code}")
    out = capsys.readouterr().out
    assert "True" in out  # the save/load and index blocks compare results


@pytest.mark.parametrize("module", [negspace.api, negspace.data.frames])
def test_docstring_examples(module):
    torch.set_num_threads(1)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
