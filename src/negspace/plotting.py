"""Plots are optional (the `plot` extra): pyplot when matplotlib is installed, else None, and
one line on stderr the first time, so a run without it writes everything but its PNGs."""

from __future__ import annotations

import sys
from typing import Any

_told = False


def pyplot_or_none() -> Any:
    """matplotlib.pyplot on the Agg backend, or None (saying so once per process)."""
    global _told
    try:
        import matplotlib
    except ImportError:
        if not _told:
            _told = True
            print("negspace: matplotlib is not installed (pip install 'negspace[plot]'): "
                  "PNG plots are skipped, everything else is written", file=sys.stderr)
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt
