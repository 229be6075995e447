"""Losses computing per-element terms; the caller reduces them."""

from negspace.losses.bpr import bpr
from negspace.losses.triplet import triplet_hinge

__all__ = ["bpr", "triplet_hinge"]
