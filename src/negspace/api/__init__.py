"""The Python API: `Recommender` (fit, recommend, fold in, similar items, save, load)."""

from negspace.api.recommender import Recommender

__all__ = ["Recommender"]
