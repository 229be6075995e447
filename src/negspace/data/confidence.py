"""Interaction strength as confidence, as users of implicit expect: a pair with a larger weight
(play count, rating, clicks) is trained on more often.

The training interactions' values become each pair's sampling weight `1 + alpha * weight`, and
the trainer (`TrainerOptions.weighted`) draws each epoch's positive pairs with replacement in
proportion to them, so a pair is seen `1 + alpha * weight` times as often as a pair of weight 0,
in expectation. The loss is unchanged: sampling in proportion to the confidence has the same
expected gradient as weighting each pair's loss by it (the epoch draws as many pairs as there
are), without touching any loss or the hand-written steps. The in-batch log q follows the draw
(`samplers/candidates.popularity_log_q` counts the values).
"""

from __future__ import annotations

import numpy as np
import torch

from negspace.data.interactions import Interactions
from negspace.errors import NegspaceError


def confidence(inter: Interactions, alpha: float) -> Interactions:
    """The interactions with values `1 + alpha * weight`; alpha 0: every value 1 (binary).

    Args:
        inter: interactions whose values are weights (summed over duplicate rows, as loaded).
        alpha: the confidence scale (the `confidence` option, implicit's `alpha`), >= 0.

    Returns:
        Interactions in the same id space.
    """
    if alpha == 0:
        return inter.binarized()
    weights = inter.matrix.data.astype(np.float64)
    if len(weights) and weights.min() < 0:
        raise NegspaceError(f"--confidence needs weights >= 0; the data hold {weights.min():g} "
                            "(drop or shift negative weights, or train without --confidence)")
    m = inter.matrix.copy()
    m.data = (1.0 + alpha * weights).astype(np.float32)
    return Interactions(m, inter.user_ids, inter.item_ids)


def pair_cdf(inter: Interactions) -> torch.Tensor:
    """Cumulative sums of the values in CSR order (the order of `Interactions.pairs`), float64."""
    return torch.from_numpy(np.cumsum(inter.matrix.data.astype(np.float64)))


def draw_pairs(cdf: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """len(cdf) pair indices drawn with replacement, pair p with probability value_p / sum.

    Inverse-CDF sampling: exact for any number of pairs (torch.multinomial caps categories at
    2^24) and deterministic for the generator's state.
    """
    n = len(cdf)
    u = torch.rand(n, generator=generator, dtype=torch.float64) * cdf[-1]
    return torch.searchsorted(cdf, u, right=True).clamp_(max=n - 1)
