"""The item-item graph filter of a run (`--item-filter`): its weight resolved after the validated
training (auto: chosen on the validation split) and the ranking scorer that blends it in."""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import torch

from negspace.config import TrainConfig
from negspace.data.interactions import Interactions
from negspace.evaluation.filter_choice import choose_weight
from negspace.models.base import EmbeddingModel
from negspace.retrieval.item_filter import ItemFilter, blended_scorer
from negspace.training.trainer import score_fn

ScoreFn = Callable[[torch.Tensor], torch.Tensor]


def resolve_item_filter(cfg: TrainConfig, model: EmbeddingModel, fit_on: Interactions,
                        validation: Interactions | None, select: str
                        ) -> tuple[TrainConfig, float, float]:
    """`cfg` with --item-filter auto replaced by the weight chosen on the validation split.

    Args:
        cfg: the run's configuration.
        model: the validated model, still on the graph it was trained on (`fit_on`).
        fit_on: its training interactions; validation: the held-out split (None: no choice,
            auto means 0).
        select: the validation metric.

    Returns:
        (the configuration with the weight written as a number, the weight, the seconds the
        choice took).
    """
    weight = cfg.item_filter_weight
    if weight is not None:
        return cfg, weight, 0.0
    started = time.perf_counter()
    weight = 0.0
    if validation is not None and validation.nnz:
        model.eval()
        weight, values = choose_weight(score_fn(model), ItemFilter(fit_on), fit_on, validation,
                                       select)
        if cfg.progress:
            tried = ", ".join(f"{w:g}: {v:.4f}" for w, v in values.items())
            print(f"item filter: weight {weight:g} chosen on validation {select} ({tried}) in "
                  f"{time.perf_counter() - started:.1f} s", flush=True)
    return (dataclasses.replace(cfg, item_filter=f"{weight:g}"), weight,
            time.perf_counter() - started)


def ranking_scorer(model_scores: ScoreFn, train: Interactions, weight: float) -> ScoreFn:
    """The scores a run ranks by: the model's, blended with the filter of `train` when
    weight > 0 (user indices of `train` in, [n, n_items] out)."""
    if weight == 0:
        return model_scores
    return blended_scorer(model_scores, ItemFilter(train), train.matrix, weight)


__all__ = ["ranking_scorer", "resolve_item_filter"]
