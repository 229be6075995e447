"""The served model: a run directory loaded and checked in full before it serves, and a holder
that swaps it for a new one atomically.

A request reads `holder.current` once and works on that object to the end, so a swap never
changes the model under a request in flight; the old model is freed when its last request ends.
A run directory that is unfinished (no metrics.json), half written, inconsistent or unreadable
raises NegspaceError and the holder keeps serving the model it had. Nothing is ever written to a
run directory.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from negspace.api import Recommender
from negspace.errors import NegspaceError
from negspace.pipeline.rundir import METRICS_FILE
from negspace.models.two_tower import TwoTower
from negspace.retrieval import ann


@dataclass(frozen=True)
class LoadedModel:
    """One loaded run directory, never modified after loading (requests share it).

    Args:
        rec: the Recommender (vectors, id maps, training interactions, faiss index, towers).
        path: the run directory as given (a symbolic link is followed anew at each load).
        version: 1 for the first model, +1 per successful reload.
        info: the /model answer.
        use_index: rank with the faiss index (`--faiss`).
    """

    rec: Recommender
    path: Path
    version: int
    info: dict[str, Any]
    use_index: bool
    loaded_at: float = field(default_factory=time.time)

    @property
    def two_tower(self) -> bool:
        return isinstance(self.rec.model, TwoTower)

    @property
    def feature_names(self) -> list[str]:
        """The user side-feature columns a two-tower model reads (empty: none)."""
        return [c["name"] for c in (self.rec._user_encoder or [])]


def load_model(path: str | Path, use_faiss: bool = False, version: int = 1,
               name: str | None = None) -> LoadedModel:
    """Loads and checks a finished run directory for serving.

    Args:
        path: the run directory (read only).
        use_faiss: also read RUN_DIR/items.faiss (required then) and rank with it.
        version: the version number the model will serve under.
        name: what errors call the run (a name under the model root: HTTP answers carry no
            machine path); default: the path as given.

    Returns:
        The loaded model, its id lookups built and one ranking run through it.

    Raises:
        NegspaceError: unfinished, half-written, inconsistent or unreadable run directory, or a
            missing index with `use_faiss`.
    """
    path = Path(path)
    label = name if name is not None else str(path)
    resolved = path

    def scrub(text: str) -> str:  # an exception's text names files by their full path
        text = " ".join(text.split())
        for full in sorted({str(resolved), str(path)}, key=len, reverse=True):
            text = text.replace(full, label)
        return text[:200]

    try:
        # inside the try: a NUL byte (ValueError) or an over-long name (OSError) is a refusal
        resolved = path.resolve()
        if not (resolved / METRICS_FILE).is_file():
            raise NegspaceError(f"{label} is not a finished run directory (no {METRICS_FILE}: "
                                "still training, interrupted or not a run)")
        rec = Recommender.load(resolved, index=False)
        metrics = json.loads((resolved / METRICS_FILE).read_text())
        if use_faiss:
            ann.require_faiss()
            stored = resolved / ann.INDEX_FILE
            if not stored.is_file():
                raise NegspaceError(f"{label} has no {ann.INDEX_FILE}: write one with "
                                    f"negspace export RUN_DIR --faiss --index hnsw")
            rec.index = ann.read_index(stored, rec.measure, rec.item_vectors.numpy())
        _check(rec)
        config_file = json.loads((resolved / "config.json").read_text())
        created = (resolved / METRICS_FILE).stat().st_mtime
        if not isinstance(metrics, dict) or not isinstance(config_file, dict):
            raise NegspaceError(f"{label}: metrics.json and config.json must hold JSON objects")
    except NegspaceError as e:
        raise NegspaceError(scrub(str(e))) from None
    except Exception as e:  # safetensors, scipy, json and torch raise many types on bad files
        raise NegspaceError(f"{label}: cannot load the run ({type(e).__name__}: "
                            f"{scrub(str(e))})") from None
    train = rec.train
    train.find("user", []), train.find("item", [])  # builds the id lookups before serving
    cfg = rec.config.to_dict()
    info = {
        "version": version, "run_dir": label,
        "dataset": cfg.get("dataset"), "model": cfg.get("model"), "measure": rec.measure,
        "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))},
        "counts": {"users": train.n_users, "items": train.n_items, "interactions": train.nnz,
                   "dim": int(rec.item_vectors.shape[1])},
        "created": datetime.fromtimestamp(created, timezone.utc).isoformat(timespec="seconds"),
        "commit": config_file.get("commit"),
        "index": _index_kind(rec.index) if use_faiss else None,
        "two_tower": isinstance(rec.model, TwoTower),
        "user_features": [c["name"] for c in (rec._user_encoder or [])],
    }
    model = LoadedModel(rec, path, version, info, use_faiss)
    try:
        _smoke(model)
    except Exception as e:
        raise NegspaceError(f"{label}: the loaded model cannot rank ({type(e).__name__}: "
                            f"{scrub(str(e))})") from None
    return model


def _check(rec: Recommender) -> None:
    """Refuses vectors that do not match the id maps or are not finite."""
    train = rec.train
    u, v = rec.user_vectors, rec.item_vectors
    if u.ndim != 2 or v.ndim != 2 or u.shape[1] != v.shape[1]:
        raise NegspaceError(f"vectors of shapes {tuple(u.shape)} and {tuple(v.shape)} do not match")
    if u.shape[0] != train.n_users or v.shape[0] != train.n_items:
        raise NegspaceError(f"{u.shape[0]} user and {v.shape[0]} item vectors for "
                            f"{train.n_users} users and {train.n_items} items in ids.json")
    # numpy's check: torch's isfinite took 20x longer on 70k x 64, on a reload's critical path
    if not (np.isfinite(u.numpy()).all() and np.isfinite(v.numpy()).all()):
        raise NegspaceError("the vectors hold NaN or infinite values")


def _smoke(model: LoadedModel) -> None:
    """Ranks for the first user through the path requests take, so a model that cannot answer
    is refused before it replaces one that can."""
    rec = model.rec
    rec.rank_vectors(rec.user_vectors[:1], np.zeros(1, np.int64), 1, use_index=model.use_index)


def _index_kind(index: Any) -> str:
    import faiss

    if hasattr(index, "hnsw"):
        return "hnsw"
    return "ivf" if faiss.try_extract_index_ivf(index) is not None else "flat"


class ReloadBusy(NegspaceError):
    """Another reload is still loading."""


class ReloadOff(NegspaceError):
    """Named reloads need a model root given at start."""


class UnknownRun(NegspaceError):
    """No run directory of that name under the model root."""


MAX_NAME = 255  # characters in a run name under the model root


def check_name(name: str) -> None:
    """Refuses a run name that is not a plain relative path below the model root.

    Raises:
        NegspaceError: empty, absolute, over-long, with a NUL or control character, or with a
            `.`/`..` (or any dot-leading) component.
    """
    if not name or len(name) > MAX_NAME:
        raise NegspaceError(f"a run name has 1 to {MAX_NAME} characters")
    if any(ord(c) < 32 or c == "\\" for c in name):
        raise NegspaceError("a run name has no control characters or backslashes")
    parts = name.split("/")
    if name.startswith("/") or any(not p or p.startswith(".") for p in parts):
        raise NegspaceError("a run name is relative to the model root: no leading /, no empty, "
                            "'.' or '..' components")


class ModelHolder:
    """Holds the served model and swaps in new ones.

    Args:
        model: the first model (from `load_model`).
        source: the run directory reloads read by default: a SIGHUP (and a POST /reload without
            a name) always reloads from it, whatever a named reload loaded since (a symbolic link
            lets an operator point it at a new run first).
        root: the model root: named reloads load `root/name` only; None: no named reloads.
    """

    def __init__(self, model: LoadedModel, source: str | Path | None = None,
                 root: str | Path | None = None) -> None:
        self.current = model
        self.source = Path(source) if source is not None else model.path
        self.root = Path(root) if root is not None else None
        self.reloads = {"ok": 0, "refused": 0}
        self.last_error: str | None = None
        self._lock = threading.Lock()

    def reload(self, name: str | None = None) -> LoadedModel:
        """Loads the source (or the run `name` under the model root) next to the current model
        and swaps it in. The source stays what it was.

        Returns:
            The new model.

        Raises:
            ReloadBusy: a reload is already running.
            ReloadOff: a name without a model root.
            UnknownRun: no directory of that name under the root.
            NegspaceError: a bad name or a refused run directory; the current model stays.
        """
        if not self._lock.acquire(blocking=False):
            raise ReloadBusy("a reload is already running")
        try:
            old = self.current
            try:
                if name is None:
                    new = load_model(self.source, old.use_index, old.version + 1)
                else:
                    new = load_model(self._named(name), old.use_index, old.version + 1, name)
            except NegspaceError as e:
                self.reloads["refused"] += 1
                self.last_error = str(e)
                raise
            self.current = new  # one reference assignment: requests see the old or the new
            self.reloads["ok"] += 1
            self.last_error = None
            return new
        finally:
            self._lock.release()

    def _named(self, name: str) -> Path:
        if self.root is None:
            raise ReloadOff("named reloads are off: start the server with --model-root DIR")
        check_name(name)
        path = self.root / name
        try:
            found = path.is_dir()
        except (OSError, ValueError):
            found = False
        if not found:
            raise UnknownRun(f"no run named {name} under the model root")
        return path
