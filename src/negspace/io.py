"""Atomic file output: a reader never sees a half-written file, an interrupted write never
destroys the previous one."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Calls write(tmp_path) on a temporary file beside `path`, then renames it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path: str | Path, text: str) -> None:
    def _w(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    atomic_write(path, _w)


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def _jsonable(x: Any) -> Any:
    if hasattr(x, "item"):
        return x.item()
    if hasattr(x, "tolist"):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def read_toml(path: str | Path, kind: str) -> dict[str, Any]:
    """A TOML file's tables; a missing file, a directory or invalid TOML is a one-line error
    naming the `kind` of file ("config", "grid", "space")."""
    import tomllib

    from negspace.errors import NegspaceError
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise NegspaceError(f"{kind} file not found: {path}") from None
    except IsADirectoryError:
        raise NegspaceError(f"{kind} file is a directory: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise NegspaceError(f"{path}: invalid TOML: {e}") from None
