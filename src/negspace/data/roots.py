"""Where named datasets are looked up: `--data-dir`, else $NEGSPACE_DATA, else `../shared/data`
beside the repository; then the download cache."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """`~/.cache/negspace/data`, where fetched datasets go when no data dir is given."""
    return Path.home() / ".cache" / "negspace" / "data"


def _repo_shared_data() -> Path | None:
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file():
            candidate = parent.parent / "shared" / "data"
            return candidate if candidate.is_dir() else None
    return None


def search_roots(data_dir: str | None) -> list[Path]:
    """Folders searched for a named dataset, in order."""
    env = os.environ.get("NEGSPACE_DATA")
    primary = (Path(data_dir).expanduser() if data_dir else Path(env).expanduser() if env
               else _repo_shared_data())
    roots = [primary] if primary is not None else []
    cache = default_cache_dir()
    return roots + ([cache] if cache not in roots else [])
