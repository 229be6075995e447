"""One exception type for every user-facing problem; the CLI prints it on one line.

Messages are written once, naming options as command-line flags (`--dim`, `--no-progress`). The
same error raised from Python reads in Python terms: `str(error)` turns each flag into the
keyword argument (`dim`, `progress=False`, `overwrite=True`), leaving commands quoted as
commands (`negspace export RUN --faiss`) alone; `negspace.cli.main` switches that off for its
own messages (`command_line_terms`).
"""

from __future__ import annotations

import contextlib
import difflib
import re
from contextvars import ContextVar
from typing import Iterable, Iterator, Mapping

_COMMAND_LINE: ContextVar[bool] = ContextVar("negspace_command_line", default=False)

# Flags that take no value and are only ever asked for ("pass --overwrite"): in Python they read
# `overwrite=True`. A boolean training option keeps its bare name (`progress expects bool`).
SWITCHES = {"overwrite", "resume", "faiss", "json", "dry_run"}

# Names other libraries give to our options (implicit, LightFM, common habit): suggested, never
# accepted silently.
ALIASES = {"factors": "dim", "no_components": "dim", "embedding_dim": "dim", "dimension": "dim",
           "iterations": "epochs", "n_epochs": "epochs", "num_epochs": "epochs",
           "learning_rate": "lr", "regularization": "l2_weight", "reg": "l2_weight",
           "random_state": "seed", "num_threads": "threads", "n_threads": "threads",
           "show_progress": "progress", "verbose": "progress", "num_negatives": "negatives",
           "n_negatives": "negatives", "batch": "batch_size", "alpha": "confidence"}


class NegspaceError(Exception):
    """Bad input or configuration: the message is meant for the user, without a traceback."""

    def __str__(self) -> str:
        text = super().__str__()
        return text if _COMMAND_LINE.get() else python_terms(text)


class TrainingInterrupted(NegspaceError):
    """SIGINT or SIGTERM stopped training after a checkpoint was saved.

    Args:
        message: where the checkpoint is and how to resume.
        signum: the signal received; the CLI exits with 128 + signum.
    """

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


@contextlib.contextmanager
def command_line_terms() -> Iterator[None]:
    """Within this block, errors name options as flags (the CLI's own messages)."""
    token = _COMMAND_LINE.set(True)
    try:
        yield
    finally:
        _COMMAND_LINE.reset(token)


# a quoted command (`...`) or an unquoted `negspace CMD ...` up to the end of its clause
_KEEP = re.compile(r"`[^`]*`|\bnegspace [a-z]+\b[^;,()]*")
_FLAG = re.compile(r"(?<![\w-])--(no-)?([a-z][a-z0-9]*(?:-[a-z0-9]+)*)")


def python_terms(text: str) -> str:
    """A message's command-line flags as Python keywords: `--n-folds` -> `n_folds`,
    `--no-progress` -> `progress=False`, a switch such as `--overwrite` -> `overwrite=True`."""
    def flag(m: re.Match) -> str:
        name = m[2].replace("-", "_")
        if m[1]:
            return f"{name}=False"
        return f"{name}=True" if name in SWITCHES else name

    out, last = [], 0
    for kept in _KEEP.finditer(text):
        out.append(_FLAG.sub(flag, text[last:kept.start()]))
        out.append(kept[0])
        last = kept.end()
    out.append(_FLAG.sub(flag, text[last:]))
    return "".join(out)


def did_you_mean(word: str, known: Iterable[str], aliases: Mapping[str, str] | None = None,
                 flags: bool = False) -> str:
    """"; did you mean 'epochs'?" (or "--epochs" with `flags`) for a misspelt or foreign name,
    "" when nothing is close."""
    known = list(known)
    key = word.lstrip("-").replace("-", "_")
    table = ALIASES if aliases is None else aliases
    matches = ([table[key]] if table.get(key) in known
               else difflib.get_close_matches(key, known, n=3, cutoff=0.6))
    if not matches:
        return ""
    spell = (lambda m: "--" + m.replace("_", "-")) if flags else (lambda m: repr(m))
    return "; did you mean " + " or ".join(spell(m) for m in matches[:3]) + "?"
