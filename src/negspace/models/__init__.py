"""Models, each declaring its measure (l2, dot or cosine)."""

from negspace.models.base import EmbeddingModel, score_matrix, score_vectors
from negspace.models.cml import CML
from negspace.models.mf import MF
from negspace.models.simplex import SimpleX

__all__ = ["EmbeddingModel", "CML", "MF", "SimpleX", "score_matrix", "score_vectors"]
