"""Models, samplers and losses by name, with what each can do: the one place a name becomes an
object (RecBole-style). `TrainConfig` takes its choices and combination rules from here, and the
pipeline builds through `build_model` and `build_sampler` (and pipeline/build.py's objective).

A new sampler is one module under samplers/ (a NegativeSampler of one SamplerKind) plus one
`SamplerSpec` line below; a new model or loss likewise (docs/design.md, "Adding a sampler").
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Callable

import torch

from negspace.data.interactions import Interactions
from negspace.errors import NegspaceError
from negspace.models import CML, MF, EmbeddingModel, SimpleX, TwoTower
from negspace.models.graph import PropagatedMF
from negspace.models.spectral import spectral_vectors
from negspace.samplers.base import NegativeSampler, SamplerKind
from negspace.samplers.in_batch import FullCatalogueSampler, InBatchSampler, UniformSoftmaxSampler
from negspace.samplers.memory_bank import MemoryBankSampler
from negspace.samplers.popularity import PopularitySampler
from negspace.samplers.shared import SharedNegativeSampler
from negspace.samplers.two_stage import TwoStageSampler
from negspace.samplers.uniform import UniformSampler

if TYPE_CHECKING:  # config/schema.py reads its choices from this module: for type checkers only
    from negspace.config.schema import TrainConfig


# ------------------------------------------------------------------------------------- models

@dataclass(frozen=True)
class ModelSpec:
    """Args:
        name: the `--model` value.
        default_loss: the loss when none is named.
        measures: the score measures it offers (`--measure`; "distance": CML's -distance^2).
        reads_history: built from the users' training histories (SimpleX, two-tower).
        cls: its class.
        build: (config, n_users, n_items, histories, side features) -> an initialised model.
    """

    name: str
    default_loss: str
    measures: tuple[str, ...]
    reads_history: bool
    cls: type
    build: Callable[..., EmbeddingModel]


def _cml(cfg: TrainConfig, n_users: int, n_items: int, history: Any, features: Any) -> CML:
    return CML(n_users, n_items, cfg.dim, norm=cfg.norm)


def _mf(cfg: TrainConfig, n_users: int, n_items: int, history: Any, features: Any) -> MF:
    cosine = cfg.resolved_measure == "cosine"
    # Cosine scores ignore the norms, so a small start makes Adam's steps large relative to the
    # vectors (SimpleX starts at 1e-4): on the validation split of MovieLens-100k, 1e-3 learnt in
    # 1 epoch what 0.1 did not in 6.
    std = cfg.init_std or (1e-3 if cosine else 0.1)
    spectral = cfg.init == "spectral"
    if (spectral or cfg.layers) and history is None:
        raise NegspaceError("--init spectral and --layers read the training interactions; none given")
    options = dict(measure="cosine" if cosine else "dot", init_std=std,
                   init="normal" if spectral else cfg.init, item_bias=cfg.item_bias,
                   user_dropout=cfg.user_dropout)
    model = (PropagatedMF(n_users, n_items, cfg.dim, history, cfg.layers, **options) if cfg.layers
             # dense tables where every step reads the whole catalogue (see MF's `sparse`); the
             # sampled softmax by users touches a few thousand rows of tables too large for a
             # dense Adam step each batch (the 8M-pair synthetic set: 400k rows)
             else MF(n_users, n_items, cfg.dim,
                     sparse=cfg.batch_by != "user" or cfg.sampler != "full", **options))
    if spectral:
        model.start_from(*spectral_vectors(history, cfg.dim, cfg.seed))
    return model


def _simplex(cfg: TrainConfig, n_users: int, n_items: int, history: Interactions,
             features: Any) -> SimpleX:
    return SimpleX(n_users, n_items, cfg.dim, history, aggregator=cfg.aggregator,
                   gamma=cfg.gamma, history_len=cfg.history_len, dropout=cfg.dropout,
                   seed=cfg.seed)


def _two_tower(cfg: TrainConfig, n_users: int, n_items: int, history: Interactions,
               features: Any) -> TwoTower:
    users = items = None
    if features is not None:
        users, items = features.users, features.items
    return TwoTower(n_users, n_items, cfg.dim, history, users, items,
                    history_len=cfg.history_len, measure=cfg.resolved_measure, seed=cfg.seed)


MODELS: dict[str, ModelSpec] = {s.name: s for s in (
    ModelSpec("cml", "triplet", ("distance",), False, CML, _cml),
    ModelSpec("mf", "bpr", ("dot", "cosine"), False, MF, _mf),
    ModelSpec("simplex", "ccl", ("cosine",), True, SimpleX, _simplex),
    ModelSpec("two-tower", "softmax", ("dot", "cosine"), True, TwoTower, _two_tower),
)}


def build_model(cfg: TrainConfig, n_users: int, n_items: int,
                history: Interactions | None = None, features: Any = None) -> EmbeddingModel:
    """The configured model, seeded by `cfg.seed`.

    Args:
        history: the training interactions; the models that read histories need them.
        features: the two-tower model's encoded side features (None: ids and history only).
    """
    spec = MODELS[cfg.model]
    if spec.reads_history and history is None:
        raise NegspaceError(f"the {spec.name} model needs the training interactions (its histories)")
    torch.manual_seed(cfg.seed)
    return spec.build(cfg, n_users, n_items, history, features)


# ------------------------------------------------------------------------------------- samplers

@dataclass(frozen=True)
class SamplerSpec:
    """Args:
        name: the `--sampler` value.
        kind: the protocol of its draws (SamplerKind).
        shared_law: can be the law of `--negative-mode shared` (one draw per batch).
        distributed: runs under `--nproc` (its draws made those of the global batch).
    Whether it also draws on an accelerator is the sampler's own `has_device_law`
    (samplers/device.py holds the laws; without one the trainer draws on the host).
        build: (config, mask every positive of the row's user) -> an unfitted sampler.
    """

    name: str
    kind: SamplerKind
    shared_law: bool
    distributed: bool
    build: Callable[[TrainConfig, bool], NegativeSampler]


SAMPLERS: dict[str, SamplerSpec] = {s.name: s for s in (
    SamplerSpec("uniform", SamplerKind.PER_ROW, True, True,
                lambda c, m: UniformSampler(seed=c.seed)),
    SamplerSpec("popularity", SamplerKind.PER_ROW, True, True,
                lambda c, m: PopularitySampler(beta=c.beta, seed=c.seed)),
    SamplerSpec("two-stage", SamplerKind.PER_ROW, False, True,
                lambda c, m: TwoStageSampler(
                    n_candidates=c.candidates, beta=c.beta, temperature=c.two_stage_temperature,
                    cap=c.two_stage_cap, released=False, refresh_every=c.refresh_every,
                    seed=c.seed)),
    SamplerSpec("two-stage-released", SamplerKind.PER_ROW, False, True,
                lambda c, m: TwoStageSampler(
                    n_candidates=c.candidates, beta=c.beta, temperature=c.two_stage_temperature,
                    cap=c.two_stage_cap, released=True, refresh_every=c.refresh_every,
                    seed=c.seed)),
    SamplerSpec("in-batch", SamplerKind.CANDIDATES, False, True,
                lambda c, m: InBatchSampler(mask_positives=m, seed=c.seed)),
    SamplerSpec("uniform-softmax", SamplerKind.CANDIDATES, False, True,
                lambda c, m: UniformSoftmaxSampler(mask_positives=m, seed=c.seed)),
    SamplerSpec("memory-bank", SamplerKind.CANDIDATES, False, True,
                lambda c, m: MemoryBankSampler(size=c.bank_size, warmup=c.warmup,
                                               mask_positives=m, seed=c.seed)),
    SamplerSpec("full", SamplerKind.CANDIDATES, False, True,
                lambda c, m: FullCatalogueSampler(mask_positives=m, seed=c.seed)),
)}
AUTO_SAMPLER = "auto"  # resolved by the data's size (config/recipe.py)


def build_sampler(cfg: TrainConfig) -> NegativeSampler:
    """The configured sampler: the named law, drawn once per batch under negative mode shared."""
    if cfg.resolved_negative_mode == "shared":
        return SharedNegativeSampler(law=cfg.sampler, beta=cfg.beta, seed=cfg.seed)
    # Only the plain softmax may leave the user's other positives among a row's candidates
    # (--no-mask-positives); the triplet loss's negatives, as per-row ones, never are positives.
    mask_all = cfg.mask_positives or cfg.resolved_loss != "softmax"
    return SAMPLERS[cfg.sampler].build(cfg, mask_all)


# --------------------------------------------------------------------------------------- losses

class LossFamily(Enum):
    """How a loss turns scores into a value; the objective's paths follow the family."""

    HINGE = "hinge"  # triplet: the hardest of N negatives against a margin, summed
    PAIRWISE = "pairwise"  # bpr: log-sigmoid of positive minus negative, averaged
    SOFTMAX = "softmax"  # softmax, bsl: the positive among the negatives, with logQ correction
    COSINE = "cosine"  # ccl, mml: margins on cosine scores


@dataclass(frozen=True)
class LossSpec:
    """Args:
        name: the `--loss` value.
        family: its LossFamily.
        needs_cosine: its margins are on cosine scores (mf/two-tower on cosine, simplex, cml on
            the sphere).
        candidates: takes negatives scored as vectors (SamplerKind.CANDIDATES).
        shared: takes one draw shared by the batch (SamplerKind.SHARED).
    """

    name: str
    family: LossFamily
    needs_cosine: bool
    candidates: bool
    shared: bool


LOSSES: dict[str, LossSpec] = {s.name: s for s in (
    LossSpec("triplet", LossFamily.HINGE, False, True, False),
    LossSpec("bpr", LossFamily.PAIRWISE, False, False, False),
    LossSpec("ccl", LossFamily.COSINE, True, True, True),
    LossSpec("mml", LossFamily.COSINE, True, True, True),
    LossSpec("softmax", LossFamily.SOFTMAX, False, True, True),
    LossSpec("bsl", LossFamily.SOFTMAX, False, True, True),
)}


__all__ = ["AUTO_SAMPLER", "LOSSES", "LossFamily", "MODELS", "SAMPLERS", "LossSpec", "ModelSpec", "SamplerSpec",
           "build_model", "build_sampler"]
