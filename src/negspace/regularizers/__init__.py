"""Regularisers on the vectors a batch touches."""

from negspace.regularizers.covariance import covariance
from negspace.regularizers.gor import gor
from negspace.regularizers.norm import embedding_l2

__all__ = ["covariance", "gor", "embedding_l2"]
