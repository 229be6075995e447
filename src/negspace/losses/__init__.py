"""Losses computing per-element terms; the caller reduces them."""

from negspace.losses.bpr import bpr
from negspace.losses.cosine_contrastive import cosine_contrastive
from negspace.losses.multi_margin import multi_margin
from negspace.losses.triplet import triplet_hinge

__all__ = ["bpr", "cosine_contrastive", "multi_margin", "triplet_hinge"]
