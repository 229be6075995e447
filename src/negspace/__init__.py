"""negspace: embedding recommenders from implicit feedback, trained with better negatives."""

import os as _os

# Torch's OpenMP threads spin while they wait for each other; on a machine where other processes
# hold the cores (a grid beside a run, a shared CI box) an epoch then took 60 times longer
# (177 s instead of 3 s, docs/design.md). Passive waiting costs little on an idle machine. Only
# takes effect when negspace is imported before torch; a caller's own setting wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

# The Python API, imported on first use (PEP 562) so that `negspace --help` and `import
# negspace.errors` do not pay for torch and pandas.
_EXPORTS = {
    "Recommender": "negspace.api",
    "interactions_from": "negspace.data.frames",
    "time_split": "negspace.data.frames",
    "Interactions": "negspace.data.interactions",
    "NegspaceError": "negspace.errors",
    "TrainConfig": "negspace.config.schema",
    "recommend_cold": "negspace.api.cold",
}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        import importlib
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'negspace' has no attribute {name!r}")
