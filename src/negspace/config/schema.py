"""Every training option in one dataclass: the CLI flags and the TOML keys are its field names."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from negspace import registry
from negspace.config.values import coerce, floats
from negspace.errors import NegspaceError, did_you_mean
from negspace.io import read_toml
from negspace.samplers.base import SamplerKind

# Names and capabilities come from the registry (registry.py), the one place they are declared.
MODELS = tuple(registry.MODELS)
LOSSES = tuple(registry.LOSSES)
SOFTMAX_LOSSES = tuple(n for n, s in registry.LOSSES.items() if s.family is registry.LossFamily.SOFTMAX)
COSINE_LOSSES = tuple(n for n, s in registry.LOSSES.items() if s.needs_cosine)
INITS = ("normal", "xavier", "spectral")
NEGATIVE_MODES = ("per-row", "shared")
SHARED_MIN_NEGATIVES = 200  # default negative mode of the cosine losses: shared from here on
SAMPLER_NAMES = (*registry.SAMPLERS, registry.AUTO_SAMPLER)
# negatives scored as vectors
EMBEDDING_SAMPLERS = tuple(n for n, s in registry.SAMPLERS.items()
                           if s.kind is SamplerKind.CANDIDATES)
SHARED_LAWS = tuple(n for n, s in registry.SAMPLERS.items() if s.shared_law)

# `negspace train --help` shows this after the options; validate() enforces it.
COMBINATIONS_HELP = """\
models:   cml (score -distance^2; --norm sphere|ball), mf (--measure dot|cosine; cosine by default
          with ccl, mml, softmax, bsl), simplex (cosine), two-tower (--measure dot|cosine)
samplers: per-row: uniform, popularity, two-stage, two-stage-released;
          scored as vectors, shared by the batch: in-batch, uniform-softmax, memory-bank, full
          (every item: the full softmax)
losses:   triplet (default for cml), bpr (default for mf), ccl (default for simplex),
          softmax (default for two-tower), bsl, mml
what works together:
  triplet          any model, any sampler (vector samplers add their candidates to the hinge)
  bpr              any model, per-row samplers only
  softmax, bsl     any model (cml with --norm sphere); per-row samplers, --negative-mode shared with
                   uniform (the default from 200 negatives on), or any vector sampler
  ccl, mml         cosine scores (mf, simplex, cml --norm sphere, two-tower --measure cosine); per-row
                   samplers, shared uniform|popularity (the default from 200 negatives on), or any
                   vector sampler
  --item-bias, --user-dropout, --init, --layers: mf; --gamma, --aggregator, --dropout: simplex
  --batch-by user  softmax with mf or cml, --sampler full (the whole catalogue) or uniform-softmax
                   (the batch's positives plus --negatives uniform draws, scaled to the catalogue)
training runs until early stopping on the validation split (--epochs is a cap); by default the
learning rate drops 10x and the best weights come back after each validation without improvement
(--lr-schedule plateau), and the third such validation in a row ends training (--patience).
"""


# the samplers of --batch-by user: the whole catalogue, or a uniform sample scaled up to it
USER_BATCH_SAMPLERS = ("full", "uniform-softmax")
BY_SIZE = ("dim", "temperature", "batch_size")  # 0: chosen by the data's size (config/recipe.py)
# Options that change neither the numbers nor the bytes a run produces, only how this machine runs
# it: a resumed run, a grid cell or a tuner's refit may differ in them and still be the same run.
MACHINE_OPTIONS = ("threads", "progress", "checkpoint_every", "checkpoint_share", "data_dir",
                   "device")
BY_DATA = (*BY_SIZE, "negatives")  # 0 allowed with --sampler auto (negatives: by the branch)


def _opt(help: str, choices: tuple[str, ...] | None = None, low: float | None = None,
         high: float | None = None, low_open: bool = False) -> dict:
    return {"help": help, "choices": choices, "low": low, "high": high, "low_open": low_open}


@dataclass
class TrainConfig:
    dataset: str = field(default="movielens-100k", metadata=_opt("dataset name or path"))
    data_dir: str | None = field(default=None, metadata=_opt("folder holding named datasets"))
    rating_threshold: float | None = field(default=None, metadata=_opt("keep ratings >= this (dataset default if unset)"))
    min_user_interactions: int | None = field(default=None, metadata=_opt("drop users with fewer interactions", low=0))
    min_item_interactions: int | None = field(default=None, metadata=_opt("drop items with fewer interactions", low=0))
    confidence: float = field(default=0.0, metadata=_opt(
        "weight of interaction strength (implicit's alpha): each epoch draws its positive pairs, with replacement, in proportion to 1 + confidence x weight (play count, rating, --weight-col); 0: every pair once per epoch, weights ignored", low=0))
    user_col: str | None = field(default=None, metadata=_opt("a file's user id column (default: found by name: user, user_id, userId, ...)"))
    item_col: str | None = field(default=None, metadata=_opt("a file's item id column (default: found by name: item, item_id, movieId, ...)"))
    weight_col: str | None = field(default=None, metadata=_opt("a file's weight column: rating, play count... (default: found by name); see --confidence"))
    time_col: str | None = field(default=None, metadata=_opt("a file's timestamp column, for --split time|last (default: found by name: timestamp, time, date, ...)"))
    model: str = field(default="cml", metadata=_opt("model", MODELS))
    loss: str | None = field(default=None, metadata=_opt("loss (default: triplet for cml, bpr for mf, ccl for simplex)", LOSSES))
    # Uniform: the best accuracy of every sampler in every Table-2 cell we ran, and safe on any
    # data; the exact 2-stage weights collapse at temperature 1 (docs/results.md, section 1).
    sampler: str = field(default="uniform", metadata=_opt("negative sampler", SAMPLER_NAMES))
    negatives: int = field(default=5, metadata=_opt("negatives per positive (N); with --sampler auto 0 lets the data choose", low=1))
    batch_size: int = field(default=256, metadata=_opt("positive pairs per batch (users per batch with --batch-by user); 0 with --sampler auto: by the data's size", low=1))
    batch_by: str = field(default="pair", metadata=_opt(
        "pair, or user: a batch is users with all their positives, the softmax computed once per user (--loss softmax; mf or cml; --sampler full: over the catalogue, uniform-softmax: estimated from --negatives uniform draws)", ("pair", "user")))
    dim: int = field(default=128, metadata=_opt("embedding dimension d (0 with --sampler auto: by the data's size, 512 up to 1e8 user x item cells, else 256; 192 with long histories)", low=4))
    epochs: int = field(default=300, metadata=_opt("cap on epochs: training runs until early stopping (the budget itself with --validation 0)", low=1))
    lr: float = field(default=1e-3, metadata=_opt("Adam learning rate", low=0, low_open=True))
    lr_schedule: str = field(default="plateau", metadata=_opt(
        "plateau: after each validation without improvement, lr x --lr-decay and the best weights reloaded; steps: lr x --lr-decay after each epoch of --lr-steps; none: constant lr", ("plateau", "steps", "none")))
    refit: str = field(default="no", metadata=_opt(
        "yes: after the run early-stopped on the validation split, train again on every training interaction for the epochs (and lr decays) it chose, and keep that model (the tuner's refit); fold-back: instead, go on from the chosen model for --fold-back-epochs epochs on every training interaction at --lr x --fold-back-lr-scale (as accurate as a refit on validation, at a quarter to a half of its cost); auto: yes up to 1e8 user x item cells, fold-back up to 4e9, in one process (the default recipe)", ("no", "yes", "fold-back", "auto")))
    fold_back_epochs: int | None = field(default=3, metadata=_opt("--refit fold-back: epochs on every training interaction after the validated run (the default recipe: 7 up to 1e8 user x item cells, else 3)", low=1))
    fold_back_lr_scale: float | None = field(default=1.0, metadata=_opt("--refit fold-back: its rate is --lr times this (the default recipe: 0.1 up to 1e8 user x item cells, else 1)", low=0, low_open=True))
    lr_steps: str = field(default="", metadata=_opt("steps: comma-separated epochs after which the learning rate is multiplied by --lr-decay (the tuner's refit replays a plateau run's decays)"))
    lr_decay: float = field(default=0.1, metadata=_opt("plateau: learning-rate factor per decay", low=0, high=1, low_open=True))
    lr_floor: float = field(default=1e-6, metadata=_opt("plateau: the learning rate never goes below this", low=0))
    max_decays: int | None = field(default=0, metadata=_opt("plateau: after this many decays of the learning rate, the next validation without improvement ends training (0: no limit but --lr-floor; the default recipe: 2, 1 past 1e10 cells, and before a fold-back none: the floor is --lr)", low=0))
    seed: int = field(default=0, metadata=_opt("random seed (split, init, sampling)", low=0))
    fold: int = field(default=0, metadata=_opt("test fold for k-fold datasets", low=0))
    n_folds: int = field(default=4, metadata=_opt("folds for k-fold datasets", low=2))
    margin: float | None = field(default=None, metadata=_opt("triplet margin alpha (default 1), or the CCL margin m in [-1, 1] (default 0.9)"))
    margins: str = field(default="0.6,0.7,0.8,0.9", metadata=_opt("MML margins, comma-separated, each in [-1, 1]"))
    margin_weights: str = field(default="0.05,0.15,0.2,0.6", metadata=_opt("MML margin weights, comma-separated, summing to 1"))
    negative_weight: float = field(default=150.0, metadata=_opt("CCL/MML weight w of the mean over negatives", low=0))
    positive_weight: float = field(default=1.0, metadata=_opt("MML weight of the positive term", low=0))
    negative_mode: str | None = field(default=None, metadata=_opt(
        "per-row negatives, or one draw shared by the batch (default: shared for ccl/mml with uniform or popularity and N >= 200)", NEGATIVE_MODES))
    aggregator: str = field(default="mean", metadata=_opt("SimpleX history aggregator", ("mean", "user_attention", "self_attention")))
    gamma: float = field(default=0.5, metadata=_opt("SimpleX weight g of the user-id embedding", low=0, high=1))
    history_len: int = field(default=50, metadata=_opt("SimpleX: at most this many history items per user", low=1))
    dropout: float = field(default=0.1, metadata=_opt("SimpleX dropout on the user vector", low=0, high=0.9))
    bank_size: int = field(default=2048, metadata=_opt("memory bank: stored item vectors M", low=1))
    warmup: int = field(default=0, metadata=_opt("memory bank: steps before the bank is used W", low=0))
    temperature: float = field(default=1.0, metadata=_opt("softmax temperature T (0 with --sampler auto: by the data, 0.15, or 0.1 with long histories)", low=0, low_open=True))
    logq_strength: float = field(default=1.0, metadata=_opt("softmax logQ correction strength A (0: off)", low=0))
    mask_positives: bool = field(default=True, metadata=_opt("in-batch, uniform-softmax, memory-bank with softmax: mask candidates that are any training positive of the row's user, not only the row's own (--no-mask-positives: the row's own only)"))
    split_bank_gradient: bool = field(default=False, metadata=_opt(
        "memory bank + softmax: the user tower learns from positive + batch + bank with the item "
        "vectors held fixed, the item tower from the in-batch softmax alone (not in the paper)"))
    measure: str | None = field(default=None, metadata=_opt(
        "mf and two-tower score (default: cosine for mf with ccl, mml, softmax or bsl; dot otherwise)", ("dot", "cosine")))
    negative_temperature: float | None = field(default=None, metadata=_opt(
        "bsl: temperature of the negative side (default: --temperature, where bsl is softmax without the positive in the denominator)", low=0, low_open=True))
    item_bias: bool = field(default=False, metadata=_opt("mf and simplex: a learned item bias added to the score"))
    user_dropout: float = field(default=0.0, metadata=_opt("mf: dropout on the user vector in training (simplex: --dropout)", low=0, high=0.9))
    init: str = field(default="normal", metadata=_opt("mf embedding initialisation: normal, xavier, or spectral (the leading singular vectors of the normalised training matrix, unit rows)", INITS))
    layers: int | None = field(default=0, metadata=_opt("mf: propagate the vectors over the training graph this many times and average the layers, LightGCN-style (0: plain MF; the default recipe chooses by the data)", low=0))
    item_filter: str | None = field(default="0", metadata=_opt(
        "weight W in [0, 1) of an item-item graph filter (GF-CF's linear term r R~^T R~) blended into the ranking scores as (1 - W) z(model) + W z(filter), per user standardised; auto: W chosen on the validation split from 0 to 0.3 after training; 0: the vectors alone (the default recipe: auto past 1e8 user x item cells up to 4e9, else 0). Rankings with W > 0 are exact (no faiss index)"))
    init_std: float | None = field(default=None, metadata=_opt("mf normal init std (default 0.1 dot, 1e-3 cosine)", low=0, low_open=True))
    side_features: bool = field(default=True, metadata=_opt("two-tower: use the dataset's side features"))
    gor_weight: float | None = field(default=None, metadata=_opt(
        "spread-out weight lambda_g (default 0.01 for N <= 2, 0.001 otherwise; CML only)", low=0))
    rank_weight: bool = field(default=False, metadata=_opt("WARP-style rank weight on the triplet loss"))
    cov_weight: float = field(default=0.0, metadata=_opt("CML covariance regulariser weight", low=0))
    l2_weight: float = field(default=0.0, metadata=_opt("L2 penalty on the batch's embedding rows (sum of squares / batch size)", low=0))
    norm: str = field(default="sphere", metadata=_opt("CML norm constraint", ("sphere", "ball")))
    beta: float = field(default=1.0, metadata=_opt("popularity exponent (popularity and 2-stage)"))
    candidates: int = field(default=2000, metadata=_opt("2-stage candidates per batch C", low=1))
    two_stage_temperature: float = field(default=1.0, metadata=_opt("2-stage log-weight temperature", low=0, low_open=True))
    two_stage_cap: float | None = field(default=None, metadata=_opt("2-stage similarity cap (e.g. 0.875)", low=0, high=1))
    refresh_every: int = field(default=1, metadata=_opt("2-stage: refresh the embeddings it reads every K batches", low=1))
    validation: float = field(default=0.1, metadata=_opt("fraction of each user's training items held out for model selection", low=0, high=0.9))
    split: str = field(default="auto", metadata=_opt(
        "test split: auto (k-fold, or the dataset's given split), kfold, given, time (one global cut at --time-cut) or last (each user's last --last-n interactions by time); validation is carved from training the same way", ("auto", "kfold", "given", "time", "last")))
    time_cut: str = field(default="0.8", metadata=_opt("--split time: a quantile in (0, 1) of the times, a time in the file's unit (>= 1), or a date like 2015-06-01"))
    last_n: int = field(default=1, metadata=_opt("--split last: interactions held out per user", low=1))
    val_users: int | None = field(default=0, metadata=_opt("validate on a seeded sample of this many users (0: all; the default recipe samples above 2e9 user x item cells); the test evaluation always ranks for every user", low=0))
    nproc: int = field(default=1, metadata=_opt("data-parallel training in this many local processes (torch.distributed, gloo; docs/scale.md)", low=1))
    eval_every: int = field(default=1, metadata=_opt("validate every K epochs", low=1))
    patience: int = field(default=3, metadata=_opt("stop after this many validations without improvement", low=1))
    min_gain: float = field(default=1e-4, metadata=_opt("a validation improves when it beats the best by more than this relative gain", low=0))
    min_epochs: int = field(default=5, metadata=_opt("never stop early before this epoch (CML can plateau at first)", low=0))
    select_metric: str | None = field(default=None, metadata=_opt("validation metric for model selection (default ndcg@50 k-fold, recall@20 given split)"))
    threads: int | None = field(default=None, metadata=_opt("torch threads (default: all cores for the full softmax by users and shared negatives, else 1 for training steps with negatives drawn on a second core; all cores for evaluation)", low=1))
    progress: bool = field(default=True, metadata=_opt("show a progress bar"))
    checkpoint_every: int = field(default=0, metadata=_opt("also checkpoint every K steps (0: at epoch ends only)", low=0))
    checkpoint_share: float = field(default=0.05, metadata=_opt("an epoch's end skips its checkpoint while the last write, if it took a second or more, would pass this share of the time since it (0: every epoch)", low=0, high=1))
    device: str = field(default="auto", metadata=_opt("where to train and rank: auto (a GPU when there is one), cpu, cuda or cuda:N"))
    precision: str = field(default="fp32", metadata=_opt("fp32; bf16 (on a GPU the two-tower MLPs and scores in bfloat16, on a CPU the full softmax's score products); tf32 (TensorFloat-32 matmuls on a GPU); auto: bf16 on a CPU that multiplies bfloat16 natively (avx512_bf16, amx_bf16), else fp32; tables and optimiser state stay float32", ("fp32", "bf16", "tf32", "auto")))
    deterministic: bool = field(default=False, metadata=_opt("on a GPU: deterministic CUDA algorithms where torch has them (the CPU always is)"))

    @property
    def step_threads(self) -> int:
        """Torch threads for the training steps: `threads` when given, else 0: chosen by the
        trainer's path (Trainer.auto_threads; docs/design.md, "Threads")."""
        return self.threads or 0

    @property
    def resolved_loss(self) -> str:
        spec = registry.MODELS.get(self.model)  # an unknown model is refused by validate()
        return self.loss or (spec.default_loss if spec else "bpr")

    @property
    def lr_step_list(self) -> tuple[int, ...]:
        try:
            steps = tuple(int(x) for x in self.lr_steps.split(",") if x.strip())
        except ValueError:
            raise NegspaceError(f"--lr-steps expects comma-separated epoch numbers; got {self.lr_steps!r}") from None
        if any(e < 1 for e in steps):
            raise NegspaceError(f"--lr-steps must be epochs >= 1; got {self.lr_steps!r}")
        if steps and self.lr_schedule != "steps":
            raise NegspaceError("--lr-steps needs --lr-schedule steps")
        return steps

    @property
    def item_filter_weight(self) -> float | None:
        """--item-filter as a weight: None for "auto" (and the default recipe's "by the data")."""
        if self.item_filter in (None, "auto"):
            return None
        try:
            weight = float(self.item_filter)
        except ValueError:
            weight = math.nan
        if not 0 <= weight < 1:  # nan fails too
            raise NegspaceError(f"--item-filter must be auto or a weight in [0, 1); got {self.item_filter!r}")
        return weight

    @property
    def resolved_measure(self) -> str:
        if self.measure is not None:
            return self.measure
        if self.model == "mf" and self.resolved_loss in (*COSINE_LOSSES, *SOFTMAX_LOSSES):
            return "cosine"
        return "dot"

    @property
    def resolved_margin(self) -> float:
        if self.margin is not None:
            return self.margin
        return 0.9 if self.resolved_loss == "ccl" else 1.0

    @property
    def margin_list(self) -> list[float]:
        return floats("margins", self.margins)

    @property
    def margin_weight_list(self) -> list[float]:
        return floats("margin-weights", self.margin_weights)

    @property
    def resolved_negative_mode(self) -> str:
        # Shared draws cost one [B, d] x [d, N] product instead of B x N gathered vectors (19x
        # faster at N = 100, 79x at 800 on ML-1M), but a batch then pushes only N distinct items:
        # per epoch, quality dropped at N = 10 and 100 (docs/results.md, issue 4). Per-row where
        # that was measured; shared from N = 200 on, where per-row costs minutes per epoch.
        # The foundation losses keep the per-row negatives their experiments used.
        if self.negative_mode is not None:
            return self.negative_mode
        if (self.resolved_loss in COSINE_LOSSES and self.sampler in SHARED_LAWS
                and self.negatives >= SHARED_MIN_NEGATIVES):
            return "shared"
        if (self.resolved_loss in SOFTMAX_LOSSES and self.sampler == "uniform"
                and self.negatives >= SHARED_MIN_NEGATIVES):
            return "shared"
        return "per-row"

    @property
    def resolved_gor_weight(self) -> float:
        if self.model != "cml":
            return self.gor_weight or 0.0
        if self.gor_weight is not None:
            return self.gor_weight
        return 0.01 if self.negatives <= 2 else 0.001

    def validate(self) -> "TrainConfig":
        for f in fields(self):
            meta, value = f.metadata, getattr(self, f.name)
            if value is None or isinstance(value, (bool, str)) and not meta.get("choices"):
                continue
            if f.name in BY_DATA and value == 0 and self.sampler == "auto":
                continue  # chosen by the data's size when the data is loaded (resolve_for_data)
            if meta.get("choices") and value not in meta["choices"]:
                raise NegspaceError(f"--{_flag(f.name)} must be one of {', '.join(meta['choices'])}; "
                                    f"got {value!r}{did_you_mean(str(value), meta['choices'], {})}")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                low, high = meta.get("low"), meta.get("high")
                if low is not None and (value < low or (meta.get("low_open") and value == low)):
                    op = ">" if meta.get("low_open") else ">="
                    raise NegspaceError(f"--{_flag(f.name)} must be {op} {low}; got {value}")
                if high is not None and value > high:
                    raise NegspaceError(f"--{_flag(f.name)} must be <= {high}; got {value}")
        self.item_filter_weight  # noqa: B018 -- parses and checks --item-filter
        if self.fold >= self.n_folds:
            raise NegspaceError(f"--fold must be < --n-folds ({self.n_folds}); got {self.fold}")
        if self.model == "cml" and self.resolved_loss == "bpr":
            pass  # BPR on negative distances is well defined
        self._validate_cosine_losses()
        self._validate_softmax()
        self.lr_step_list  # noqa: B018 -- parses and checks --lr-steps
        if self.refit in ("yes", "fold-back") and (self.validation <= 0 or self.nproc > 1):
            raise NegspaceError(f"--refit {self.refit} trains on after a validated run: it "
                                "needs --validation > 0 and one process (--nproc 1)")
        return self

    def _validate_softmax(self) -> None:
        loss = self.resolved_loss
        spec = registry.LOSSES[loss]
        if self.sampler in EMBEDDING_SAMPLERS and not spec.candidates:
            able = [n for n, s in registry.LOSSES.items() if s.candidates]
            raise NegspaceError(f"--sampler {self.sampler} needs --loss {', '.join(able[:-1])} or "
                                f"{able[-1]}; got {loss}")
        if self.resolved_negative_mode == "shared" and not spec.shared:
            able = [n for n, s in registry.LOSSES.items() if s.shared]
            raise NegspaceError(f"--negative-mode shared needs --loss {', '.join(able[:-1])} or "
                                f"{able[-1]}; got {loss} (per-row negatives)")
        if self.sampler in EMBEDDING_SAMPLERS and self.negative_mode == "shared":
            raise NegspaceError(f"--sampler {self.sampler} already shares its negatives; "
                                "drop --negative-mode shared")
        if self.split_bank_gradient and (self.sampler != "memory-bank" or loss != "softmax"):
            raise NegspaceError("--split-bank-gradient needs --sampler memory-bank and --loss softmax")
        if loss in SOFTMAX_LOSSES and self.resolved_negative_mode == "shared" and self.sampler != "uniform":
            raise NegspaceError(f"--loss {loss} with --negative-mode shared needs --sampler uniform "
                                f"(no logQ correction of shared popularity draws); got {self.sampler}")
        if loss in SOFTMAX_LOSSES and self.model == "cml" and self.norm != "sphere":
            raise NegspaceError(f"--loss {loss} with cml needs --norm sphere (bounded scores)")
        if self.sampler == "auto" and (self.batch_by != "pair" or loss != "softmax"
                                       or self.model not in ("mf", "cml")):
            raise NegspaceError("--sampler auto (the full softmax by users on small catalogues, "
                                "shared uniform negatives on large ones) needs --loss softmax, "
                                "--model mf or cml and --batch-by pair (it chooses)")
        if self.batch_by == "user" and (self.sampler not in USER_BATCH_SAMPLERS or loss != "softmax"
                                        or self.model not in ("mf", "cml")):
            raise NegspaceError("--batch-by user needs --sampler full (or uniform-softmax: the "
                                "catalogue's softmax estimated from uniform draws), "
                                "--loss softmax and --model mf or cml (a history-reading model "
                                "would see its targets); got "
                                f"--sampler {self.sampler}, --loss {loss}, --model {self.model}")
        if self.negative_temperature is not None and loss != "bsl":
            raise NegspaceError(f"--negative-temperature is a bsl option; got --loss {loss}")
        if self.item_bias and self.model != "mf":
            raise NegspaceError(f"--item-bias is an mf option; got --model {self.model}")
        if self.layers and self.model != "mf":
            raise NegspaceError(f"--layers is an mf option; got --model {self.model}")
        if self.user_dropout and self.model != "mf":
            raise NegspaceError(f"--user-dropout is an mf option (simplex: --dropout); got --model {self.model}")
        if self.measure == "dot" and self.model not in ("mf", "two-tower"):
            self.measure = None  # what every run recorded before the option was mf/two-tower only
        if self.measure is not None and self.model not in ("mf", "two-tower"):
            raise NegspaceError(f"--measure applies to mf and two-tower; --model {self.model} "
                                f"scores by {'cosine' if self.model == 'simplex' else 'distance'}")

    def _validate_cosine_losses(self) -> None:
        loss = self.resolved_loss
        if loss == "triplet" and self.resolved_margin < 0:
            raise NegspaceError(f"--margin must be >= 0 for the triplet loss; got {self.margin}")
        if loss == "ccl" and not -1.0 <= self.resolved_margin <= 1.0:
            raise NegspaceError(f"--margin must be in [-1, 1] for ccl (a cosine); got {self.margin}")
        margins, weights = self.margin_list, self.margin_weight_list
        if len(margins) != len(weights):
            raise NegspaceError(f"--margins and --margin-weights must have the same length; "
                                f"got {len(margins)} and {len(weights)}")
        if any(not -1.0 <= m <= 1.0 for m in margins):
            raise NegspaceError(f"--margins must each be in [-1, 1] (cosines); got {self.margins}")
        if any(w < 0 for w in weights) or abs(sum(weights) - 1.0) > 1e-6:
            raise NegspaceError(f"--margin-weights must be >= 0 and sum to 1; got {self.margin_weights}")
        if loss in COSINE_LOSSES and self.model == "cml" and self.norm != "sphere":
            raise NegspaceError(f"--loss {loss} needs cosine scores: use --norm sphere with cml")
        measures = registry.MODELS[self.model].measures
        if loss in COSINE_LOSSES and len(measures) > 1 and self.resolved_measure == "dot":
            raise NegspaceError(f"--loss {loss} needs cosine scores: use --measure cosine with "
                                f"{self.model}")
        if self.resolved_negative_mode == "shared" and self.sampler not in SHARED_LAWS:
            raise NegspaceError(f"--negative-mode shared needs --sampler uniform or popularity "
                                f"(2-stage draws depend on the row's user); got {self.sampler}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["loss"] = self.resolved_loss
        d["gor_weight"] = self.resolved_gor_weight
        d["margin"] = self.resolved_margin
        d["negative_mode"] = self.resolved_negative_mode
        d["measure"] = self.resolved_measure if self.model in ("mf", "two-tower") else None
        return d


def _flag(name: str) -> str:
    return name.replace("_", "-")


def config_fields() -> list[dataclasses.Field]:
    return list(fields(TrainConfig))


def load_toml(path: str | Path) -> dict[str, Any]:
    """Reads a TOML file of TrainConfig keys (dashes or underscores); unknown keys are an error."""
    return normalise_keys(read_toml(path, "config"), str(path))


def normalise_keys(raw: dict[str, Any], where: str) -> dict[str, Any]:
    known = {f.name for f in fields(TrainConfig)}
    out = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in known:
            raise NegspaceError(f"{where}: unknown option {key!r}{did_you_mean(name, known)}")
        out[name] = value
    return out


def make_config(values: dict[str, Any]) -> TrainConfig:
    """Builds and validates a config, coercing types so that TOML ints pass for floats."""
    kwargs = {}
    types = {f.name: f.type for f in fields(TrainConfig)}
    unknown = [name for name in values if name not in types]
    if unknown:  # a misspelt keyword (Recommender(epoch=2)) or another library's name (factors=)
        raise NegspaceError(f"unknown option {unknown[0]!r}{did_you_mean(unknown[0], types)}")
    for name, value in values.items():
        kwargs[name] = coerce(name, value, types[name])
    return TrainConfig(**kwargs).validate()
