"""Models, each declaring its measure (l2, dot or cosine)."""

from negspace.models.base import EmbeddingModel, score_matrix, score_vectors
from negspace.models.cml import CML
from negspace.models.mf import MF
from negspace.models.simplex import SimpleX
from negspace.models.two_tower import TwoTower

__all__ = ["EmbeddingModel", "CML", "MF", "SimpleX", "TwoTower", "score_matrix", "score_vectors"]
