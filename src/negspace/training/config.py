"""Every training option in one dataclass: the CLI flags and the TOML keys are its field names."""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from negspace.errors import NegspaceError

MODELS = ("cml", "mf")
LOSSES = ("triplet", "bpr")
SAMPLER_NAMES = ("uniform", "popularity", "two-stage", "two-stage-released")


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
    model: str = field(default="cml", metadata=_opt("model", MODELS))
    loss: str | None = field(default=None, metadata=_opt("loss (default: triplet for cml, bpr for mf)", LOSSES))
    sampler: str = field(default="two-stage", metadata=_opt("negative sampler", SAMPLER_NAMES))
    negatives: int = field(default=5, metadata=_opt("negatives per positive (N)", low=1))
    batch_size: int = field(default=256, metadata=_opt("positive pairs per batch", low=1))
    dim: int = field(default=128, metadata=_opt("embedding dimension d", low=4))
    epochs: int = field(default=20, metadata=_opt("maximum epochs", low=1))
    lr: float = field(default=1e-3, metadata=_opt("Adam learning rate", low=0, low_open=True))
    seed: int = field(default=0, metadata=_opt("random seed (split, init, sampling)", low=0))
    fold: int = field(default=0, metadata=_opt("test fold for k-fold datasets", low=0))
    n_folds: int = field(default=4, metadata=_opt("folds for k-fold datasets", low=2))
    margin: float = field(default=1.0, metadata=_opt("triplet margin alpha", low=0))
    gor_weight: float | None = field(default=None, metadata=_opt(
        "spread-out weight lambda_g (default 0.01 for N <= 2, 0.001 otherwise; CML only)", low=0))
    rank_weight: bool = field(default=False, metadata=_opt("WARP-style rank weight on the triplet loss"))
    cov_weight: float = field(default=0.0, metadata=_opt("CML covariance regulariser weight", low=0))
    l2_weight: float = field(default=0.0, metadata=_opt("L2 penalty on the batch embeddings", low=0))
    norm: str = field(default="sphere", metadata=_opt("CML norm constraint", ("sphere", "ball")))
    beta: float = field(default=1.0, metadata=_opt("popularity exponent (popularity and 2-stage)"))
    candidates: int = field(default=2000, metadata=_opt("2-stage candidates per batch C", low=1))
    two_stage_temperature: float = field(default=1.0, metadata=_opt("2-stage log-weight temperature", low=0, low_open=True))
    two_stage_cap: float | None = field(default=None, metadata=_opt("2-stage similarity cap (e.g. 0.875)", low=0, high=1))
    refresh_every: int = field(default=1, metadata=_opt("2-stage: refresh the embeddings it reads every K batches", low=1))
    validation: float = field(default=0.1, metadata=_opt("fraction of each user's training items held out for model selection", low=0, high=0.9))
    eval_every: int = field(default=1, metadata=_opt("validate every K epochs", low=1))
    patience: int = field(default=3, metadata=_opt("stop after this many validations without improvement", low=1))
    min_epochs: int = field(default=5, metadata=_opt("never stop early before this epoch (CML can plateau at first)", low=0))
    select_metric: str | None = field(default=None, metadata=_opt("validation metric for model selection (default ndcg@50 k-fold, recall@20 given split)"))
    threads: int | None = field(default=None, metadata=_opt("torch threads (default: all cores)", low=1))
    progress: bool = field(default=True, metadata=_opt("show a progress bar"))
    checkpoint_every: int = field(default=0, metadata=_opt("also checkpoint every K steps (0: at epoch ends only)", low=0))

    @property
    def resolved_loss(self) -> str:
        return self.loss or ("triplet" if self.model == "cml" else "bpr")

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
            if meta.get("choices") and value not in meta["choices"]:
                raise NegspaceError(f"--{_flag(f.name)} must be one of {', '.join(meta['choices'])}; got {value!r}")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                low, high = meta.get("low"), meta.get("high")
                if low is not None and (value < low or (meta.get("low_open") and value == low)):
                    op = ">" if meta.get("low_open") else ">="
                    raise NegspaceError(f"--{_flag(f.name)} must be {op} {low}; got {value}")
                if high is not None and value > high:
                    raise NegspaceError(f"--{_flag(f.name)} must be <= {high}; got {value}")
        if self.fold >= self.n_folds:
            raise NegspaceError(f"--fold must be < --n-folds ({self.n_folds}); got {self.fold}")
        if self.model == "cml" and self.resolved_loss == "bpr":
            pass  # BPR on negative distances is well defined
        return self

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["loss"] = self.resolved_loss
        d["gor_weight"] = self.resolved_gor_weight
        return d


def _flag(name: str) -> str:
    return name.replace("_", "-")


def config_fields() -> list[dataclasses.Field]:
    return list(fields(TrainConfig))


def load_toml(path: str | Path) -> dict[str, Any]:
    """Reads a TOML file of TrainConfig keys (dashes or underscores); unknown keys are an error."""
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise NegspaceError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise NegspaceError(f"{path}: invalid TOML: {e}") from None
    return normalise_keys(raw, str(path))


def normalise_keys(raw: dict[str, Any], where: str) -> dict[str, Any]:
    known = {f.name for f in fields(TrainConfig)}
    out = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in known:
            raise NegspaceError(f"{where}: unknown option {key!r}")
        out[name] = value
    return out


def make_config(values: dict[str, Any]) -> TrainConfig:
    """Builds and validates a config, coercing types so that TOML ints pass for floats."""
    kwargs = {}
    types = {f.name: f.type for f in fields(TrainConfig)}
    for name, value in values.items():
        kwargs[name] = _coerce(name, value, types[name])
    return TrainConfig(**kwargs).validate()


def _coerce(name: str, value: Any, typ: str) -> Any:
    if value is None:
        return None
    base = typ.replace(" | None", "")
    try:
        if base == "bool":
            if isinstance(value, str):
                if value.lower() in ("true", "1", "yes"):
                    return True
                if value.lower() in ("false", "0", "no"):
                    return False
                raise ValueError
            return bool(value)
        if base == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if base == "float":
            number = float(value)
            if not math.isfinite(number):  # nan and inf pass every range check
                raise ValueError
            return number
        return str(value)
    except (TypeError, ValueError):
        raise NegspaceError(f"--{_flag(name)} expects {base}; got {value!r}") from None
