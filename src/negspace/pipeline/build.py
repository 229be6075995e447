"""The one place a configuration becomes a model, a sampler, an objective and their Trainer:
`negspace train`, `Recommender.fit`, the tuner, the grid, `--nproc` ranks and the benchmarks all
build here (the names come from registry.py)."""

from __future__ import annotations

from typing import Any, Callable

import torch

from negspace.config import TrainConfig
from negspace.data.interactions import Interactions
from negspace.models.base import EmbeddingModel
from negspace.registry import MODELS, build_model, build_sampler
from negspace.samplers.base import NegativeSampler
from negspace.training.objective import Objective
from negspace.training.options import TrainerOptions
from negspace.training.trainer import Trainer

ModelFactory = Callable[[int, int], EmbeddingModel]
"""(n_users, n_items) -> an initialised model."""


def build_objective(cfg: TrainConfig) -> Objective:
    """The configured loss with its regularisers."""
    return Objective(loss=cfg.resolved_loss, margin=cfg.resolved_margin,
                     rank_weight=cfg.rank_weight, gor_weight=cfg.resolved_gor_weight,
                     cov_weight=cfg.cov_weight, l2_weight=cfg.l2_weight,
                     margins=tuple(cfg.margin_list), margin_weights=tuple(cfg.margin_weight_list),
                     negative_weight=cfg.negative_weight, positive_weight=cfg.positive_weight,
                     temperature=cfg.temperature, logq_strength=cfg.logq_strength,
                     split_bank_gradient=cfg.split_bank_gradient,
                     negative_temperature=cfg.negative_temperature,
                     bf16_scores=cfg.precision == "bf16")


def build_trainer(cfg: TrainConfig, n_users: int, n_items: int, fit_on: Interactions,
                  validation: Interactions | None, options: TrainerOptions,
                  device: torch.device, features: Any = None,
                  model_factory: ModelFactory | None = None,
                  sampler: NegativeSampler | None = None,
                  objective: Callable[..., torch.Tensor] | None = None,
                  sampler_cfg: TrainConfig | None = None) -> Trainer:
    """Builds the configured model (on `device`), sampler and objective, and their Trainer.

    Args:
        cfg: the configuration (resolved for the data).
        n_users, n_items: the sizes of the id maps.
        fit_on: the interactions trained on (the models that read histories read them).
        validation: held-out interactions for early stopping, or None.
        options: the training loop's options.
        device: where the model trains.
        features: the two-tower model's encoded side features.
        model_factory, sampler, objective: a caller's own model factory, sampler or objective
            (the Python API), used instead of the configured ones; with a factory, `cfg.model`
            becomes the registry name of the built model's class (its default loss and the
            saved config.json follow the model actually built).
        sampler_cfg: the configuration the sampler is built from, when it differs (a `--nproc`
            rank's seed).

    Returns:
        The Trainer; its `model`, `sampler` and `objective` are the built ones.
    """
    if model_factory is not None:
        torch.manual_seed(cfg.seed)
        model = model_factory(n_users, n_items)
        cfg.model = model_name(model, cfg.model)
    else:
        model = build_model(cfg, n_users, n_items, history=fit_on, features=features)
    model = model.to(device)
    sampler = sampler or build_sampler(sampler_cfg or cfg)
    return Trainer(model, sampler, objective or build_objective(cfg), fit_on, options, validation)


def model_name(model: EmbeddingModel, default: str) -> str:
    """The registry name of a model built by a caller's factory (its class's), else `default`."""
    return next((n for n, s in MODELS.items() if s.cls is type(model)), default)


__all__ = ["ModelFactory", "build_model", "build_objective", "build_sampler", "build_trainer",
           "model_name"]
