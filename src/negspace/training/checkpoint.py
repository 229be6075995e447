"""Checkpoint files: everything a run needs to continue bit for bit, written atomically.

A checkpoint is one `torch.save` of plain containers (tensors, numbers, strings, lists, dicts), so
it loads with `weights_only=True`: reading a checkpoint never runs pickled code.
"""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path
from typing import Any

import numpy as np
import torch

from negspace.errors import NegspaceError, TrainingInterrupted
from negspace.io import atomic_write

CHECKPOINT_FILE = "checkpoint.pt"
# A --refit run's validated run, kept in memory, checkpoints here beside the run's own file
SELECTION_CHECKPOINT_FILE = "selection-checkpoint.pt"
FORMAT = 1


def rng_states() -> dict[str, Any]:
    """The process-wide generators (torch, numpy's legacy global, Python's `random`).

    Returns:
        A dict of plain values that `restore_rng_states` accepts.
    """
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {"torch": torch.get_rng_state(),
            "numpy": {"kind": kind, "keys": keys.tolist(), "pos": int(pos),
                      "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next}}


def restore_rng_states(state: dict[str, Any]) -> None:
    """Puts the process-wide generators back into the states `rng_states` returned."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], np.asarray(n["keys"], np.uint32), n["pos"], n["has_gauss"],
                         n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Writes `state` to a temporary file beside `path`, flushes it to disk, then renames it over
    `path`: a kill at any moment leaves either the previous checkpoint or the new one.

    Args:
        path: the checkpoint file (RUN_DIR/checkpoint.pt).
        state: plain containers only (see the module docstring).
    """
    def _write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())  # survive a power cut too, not only a killed process
    atomic_write(path, _write)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Reads a checkpoint written by `save_checkpoint`.

    Args:
        path: the checkpoint file.

    Returns:
        The saved state.

    Raises:
        NegspaceError: the file is missing, unreadable or of another format.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise NegspaceError(f"no checkpoint at {path}") from None
    except Exception as e:  # unpickling errors come in many types
        raise NegspaceError(f"{path}: unreadable checkpoint ({type(e).__name__}: "
                            f"{' '.join(str(e).split())[:200]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise NegspaceError(f"{path}: not a negspace checkpoint of format {FORMAT}")
    return state


class StopSignals:
    """While active, SIGINT and SIGTERM only set `received` (the trainer finishes its step, saves a
    checkpoint and stops); the previous handlers come back on exit. Outside the main thread, where
    Python cannot install handlers, it does nothing.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopSignals":
        try:
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread
            self._restore()
        return self

    def __exit__(self, *exc: object) -> None:
        self._restore()

    def _handle(self, signum: int, frame: object) -> None:
        self.received = signum

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


__all__ = ["CHECKPOINT_FILE", "SELECTION_CHECKPOINT_FILE", "TrainingInterrupted", "StopSignals", "rng_states", "restore_rng_states",
           "save_checkpoint", "load_checkpoint"]
