"""The run directory: config.json, metrics.json, history.csv, model.safetensors, ids.json and the
training interactions (interactions.safetensors), so a run can be evaluated and served alone."""

from __future__ import annotations

import csv
import functools
import io
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp
import torch
from safetensors.torch import load_file, save_file

from negspace.data.interactions import Interactions
from negspace.errors import NegspaceError
from negspace.io import atomic_write, write_json, write_text
from negspace.training.checkpoint import CHECKPOINT_FILE, SELECTION_CHECKPOINT_FILE

MODEL_FILE = "model.safetensors"
INTERACTIONS_FILE = "interactions.safetensors"


# Files a run writes; --overwrite removes them (metrics.json first, so that a run directory is never
# a finished-looking mix of two runs).
METRICS_FILE = "metrics.json"
CONFIG_FILE = "config.json"
RUN_FILES = (METRICS_FILE, CHECKPOINT_FILE, SELECTION_CHECKPOINT_FILE, "timing.json",
             "history.csv", "selection.csv", MODEL_FILE, INTERACTIONS_FILE, "ids.json",
             CONFIG_FILE, "towers.safetensors", "features.json", "drift.png")


@functools.lru_cache(maxsize=1)
def code_commit() -> str | None:
    """The git commit of the negspace source doing the work, when it runs from a git checkout
    (recorded in config.json; `negspace serve` reports it); None otherwise."""
    try:
        out = subprocess.run(["git", "-C", str(Path(__file__).resolve().parent), "rev-parse",
                              "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) == 40 else None


def check_run_dir(path: str | Path, overwrite: bool, resumable: bool = True) -> Path:
    """Refuses a RUN_DIR that already holds anything, unless `overwrite`; creates nothing.

    Args:
        path: the run directory.
        overwrite: allow replacing an existing run.
        resumable: the caller can continue an unfinished run (training; not `Recommender.save`),
            so the refusal may suggest it.

    Returns:
        The path.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NegspaceError(f"{path} exists and is not a directory")
    if path.exists() and any(path.iterdir()) and not overwrite:
        what = "a finished run" if (path / METRICS_FILE).exists() else "an unfinished run or other files"
        raise NegspaceError(f"{path} already holds {what}; pass --overwrite to replace it"
                            + ("" if (path / METRICS_FILE).exists() or not resumable else
                               " or --resume to continue it"))
    return path


def start_run_dir(path: str | Path, overwrite: bool, resumable: bool = True) -> Path:
    """Creates RUN_DIR (see `check_run_dir`), removing the files of a previous run and leftover
    temporary files when `overwrite` is set.

    Returns:
        The path.
    """
    path = check_run_dir(path, overwrite, resumable)
    path.mkdir(parents=True, exist_ok=True)
    if overwrite:
        for name in RUN_FILES:
            (path / name).unlink(missing_ok=True)
    remove_temporaries(path)
    return path


def write_config(path: Path, config: dict[str, Any]) -> None:
    """Writes RUN_DIR/config.json: the run's options (and protocol), stamped with the code's
    commit."""
    write_json(path / CONFIG_FILE, {**config, "commit": code_commit()})


def remove_temporaries(path: Path) -> None:
    """Deletes the temporary files a killed atomic write leaves behind (`.NAME.*.tmp`)."""
    for tmp in path.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def prepare_run_dir(path: str | Path, overwrite: bool) -> Path:
    """Creates RUN_DIR for `Recommender.save`; refuses one that already holds results unless
    overwrite is set (there is nothing to resume there)."""
    return start_run_dir(path, overwrite, resumable=False)


def save_vectors(path: Path, users: torch.Tensor, items: torch.Tensor, measure: str) -> None:
    # on the host whatever the training device: the file loads on any machine
    tensors = {"user_embeddings": users.detach().float().cpu().contiguous(),
               "item_embeddings": items.detach().float().cpu().contiguous()}
    atomic_write(path / MODEL_FILE, lambda tmp: save_file(tensors, tmp, metadata={"measure": measure}))


def save_interactions(path: Path, inter: Interactions) -> None:
    tensors = {"indptr": torch.from_numpy(inter.indptr.astype(np.int64)),
               "indices": torch.from_numpy(inter.indices.astype(np.int64))}
    atomic_write(path / INTERACTIONS_FILE, lambda tmp: save_file(tensors, tmp))
    write_json(path / "ids.json", {"users": inter.user_ids.tolist(), "items": inter.item_ids.tolist()})


def write_history(path: Path, history: list[dict], name: str = "history.csv") -> None:
    """Writes `history` (one row per epoch) as CSV to `path / name` (selection.csv: the
    validated run a --refit run retrained from)."""
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(history)
    write_text(path / name, buf.getvalue())


def write_run(path: Path, user_vectors: torch.Tensor, item_vectors: torch.Tensor, measure: str,
              train: Interactions, history: list[dict], config: dict[str, Any],
              metrics: dict[str, float], timing: dict[str, Any] | None = None,
              extras: Callable[[Path], None] | None = None) -> None:
    """Writes a finished run's files, the one writer `negspace train` and `Recommender.save`
    share: vectors, training interactions, history, config.json (with the code's commit),
    timing.json, what `extras` writes (the two-tower's towers, a faiss index), then metrics.json
    last (its presence marks a finished run; the grid relies on it); then the checkpoint, which
    a finished run no longer needs, goes.

    metrics.json holds only what the seed determines (no timings), so two runs with the same
    seed, interrupted or not, write identical bytes; timings go to timing.json.
    """
    save_vectors(path, user_vectors.detach().float().cpu(), item_vectors.detach().float().cpu(),
                 measure)
    save_interactions(path, train)
    write_history(path, history)
    write_config(path, config)
    if timing is not None:
        write_json(path / "timing.json", timing)
    if extras is not None:
        extras(path)
    write_json(path / METRICS_FILE, {k: float(v) for k, v in metrics.items()})
    (path / CHECKPOINT_FILE).unlink(missing_ok=True)
    (path / SELECTION_CHECKPOINT_FILE).unlink(missing_ok=True)


@dataclass
class StoredRun:
    """What a finished run directory holds."""

    path: Path
    config: dict[str, Any]
    user_vectors: torch.Tensor
    item_vectors: torch.Tensor
    measure: str
    train: Interactions


def load_run(path: str | Path) -> StoredRun:
    path = Path(path)
    needed = ["config.json", "ids.json", MODEL_FILE, INTERACTIONS_FILE]
    missing = [f for f in needed if not (path / f).exists()]
    if not path.is_dir() or missing:
        raise NegspaceError(f"{path} is not a finished run directory (missing {', '.join(missing) or 'folder'})")
    try:
        config = json.loads((path / "config.json").read_text())
        ids = json.loads((path / "ids.json").read_text())
        from safetensors import safe_open
        with safe_open(str(path / MODEL_FILE), "pt") as f:
            measure = (f.metadata() or {}).get("measure", "dot")
        vectors = load_file(str(path / MODEL_FILE))
        csr = load_file(str(path / INTERACTIONS_FILE))
    except (OSError, ValueError, json.JSONDecodeError) as e:
        raise NegspaceError(f"{path}: cannot read run files: {e}") from None
    user_ids, item_ids = np.asarray(ids["users"]), np.asarray(ids["items"])
    indptr, indices = csr["indptr"].numpy(), csr["indices"].numpy()
    matrix = sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr),
                           shape=(len(user_ids), len(item_ids)))
    return StoredRun(path, config, vectors["user_embeddings"], vectors["item_embeddings"], measure,
                     Interactions(matrix, user_ids, item_ids))
