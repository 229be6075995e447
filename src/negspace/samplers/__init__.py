"""Negative samplers: one protocol (NegativeSampler.sample), several strategies."""

from negspace.samplers.base import NegativeSampler
from negspace.samplers.popularity import PopularitySampler
from negspace.samplers.shared import SharedNegativeSampler
from negspace.samplers.two_stage import TwoStageSampler
from negspace.samplers.uniform import UniformSampler

SAMPLERS = ("uniform", "popularity", "two-stage", "two-stage-released")

__all__ = ["NegativeSampler", "UniformSampler", "PopularitySampler", "TwoStageSampler",
           "SharedNegativeSampler", "SAMPLERS"]
