"""The repository names no path of a particular machine and keeps no development diary: data
comes through $NEGSPACE_DATA or --data-dir, outputs are relative, history is in git."""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# written in pieces so that this file does not match itself
MACHINE_PATH = re.compile("/" + "(?:work|home|root)/|/tmp/[a-z]")
DIARY = re.compile(r"session [0-9]", re.IGNORECASE)


def tracked_text_files() -> list[Path]:
    try:
        names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                               check=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    files = []
    for name in filter(None, names):
        path = ROOT / name
        if path.is_file() and b"\0" not in path.read_bytes()[:8192]:  # text only (no PNGs)
            files.append(path)
    return files


def test_no_machine_paths_and_no_session_diary():
    found = []
    for path in tracked_text_files():
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for pattern in (MACHINE_PATH, DIARY):
                if pattern.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert not found, "\n".join(found)


def test_the_check_finds_what_it_looks_for():
    assert MACHINE_PATH.search("--out /" + "tmp/run") and MACHINE_PATH.search("/" + "home/x")
    assert DIARY.search("Session " + "4 added") and not MACHINE_PATH.search("$NEGSPACE_DATA/ml")
