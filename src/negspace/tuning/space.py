"""Search spaces for `negspace tune`: a TOML file of fixed options, ranges and known-good seeds.

A space file (every key under [fixed], [search] and [[seeds]] is a `negspace train` option, with
dashes or underscores):

    [study]                            # optional; the values shown are the defaults
    metric = "recall@20"               # validation metric to maximise (default: recall@20 on a
                                       #   given split, ndcg@50 on k-fold data)
    pruner = "median"                  # median | hyperband | none (on the per-epoch metric)
    prune_after_trials = 4             # median: finished trials before any pruning
    warmup_epochs = 3                  # never prune a trial before this epoch
    startup_trials = 10                # TPE: trials drawn at random first (seeds count)
    seed = 0                           # TPE seed (worker k uses seed + k, plus 10007 x the
                                       #   finished trials when a study is continued)

    [fixed]                            # options every trial shares
    model = "mf"
    epochs = 200                       # a cap: trials stop early on validation

    [search]                           # one line per searched option, sampled in file order
    lr = { log = [1e-4, 3e-2] }        # log-uniform float
    margin = { uniform = [0.5, 1.0] }  # uniform float
    history_len = { int = [10, 100], step = 10 }   # uniform integer
    negatives = { log_int = [5, 1000] }            # log-uniform integer
    dim = [64, 128, 256]               # categorical: any list of numbers, strings or booleans
    temperature = { log = [0.05, 1.0], when = { loss = "softmax" } }
                                       # `when`: only sampled when earlier (or fixed) options
                                       # have these values (a value or a list); else default
    measure = { choices = ["dot", "cosine"], when = { loss = ["softmax", "bsl"] } }
                                       # a categorical with `when` takes this table form

    [[seeds]]                          # known-good recipes, tried first, in this order; keys
    lr = 1e-3                          #   left out are sampled; each value must lie in range
    dim = 128
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from negspace.errors import NegspaceError
from negspace.io import read_toml
from negspace.evaluation.metrics import RANKING_METRICS
from negspace.config import normalise_keys

PRUNERS = ("median", "hyperband", "none")
STUDY_DEFAULTS: dict[str, Any] = {"metric": None, "pruner": "median", "prune_after_trials": 4,
                                  "warmup_epochs": 3, "startup_trials": 10, "seed": 0}
_KINDS = ("log", "uniform", "int", "log_int")
METRIC_KS = (20, 50)  # the cut-offs the trainer validates at


@dataclass(frozen=True)
class Param:
    """One searched option.

    Args:
        name: the TrainConfig field.
        kind: "categorical", "log", "uniform", "int" or "log_int".
        choices: the categorical values.
        low, high: the range of the other kinds (inclusive).
        step: integer step ("int" only).
        when: option -> allowed values; the parameter is sampled only when all hold.
    """

    name: str
    kind: str
    choices: tuple = ()
    low: float = 0.0
    high: float = 0.0
    step: int = 1
    when: dict[str, tuple] = field(default_factory=dict)

    def contains(self, value: Any) -> bool:
        if self.kind == "categorical":
            return any(value == c and type(value) is type(c) or _same_number(value, c)
                       for c in self.choices)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind in ("int", "log_int") and float(value) != int(value):
            return False
        return self.low <= value <= self.high

    def active(self, values: dict[str, Any]) -> bool:
        return all(values.get(k) in allowed for k, allowed in self.when.items())

    def suggest(self, trial: Any) -> Any:
        """The value an Optuna trial draws for this parameter."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind in ("log", "uniform"):
            return trial.suggest_float(self.name, self.low, self.high, log=self.kind == "log")
        return trial.suggest_int(self.name, int(self.low), int(self.high),
                                 step=self.step, log=self.kind == "log_int")


@dataclass
class Space:
    """A parsed space file: fixed options, searched parameters, seeds and study settings."""

    path: str
    fixed: dict[str, Any]
    params: list[Param]
    seeds: list[dict[str, Any]]
    study: dict[str, Any]
    raw: dict[str, Any]

    def suggest(self, trial: Any) -> dict[str, Any]:
        """The searched values of one trial, in file order, skipping inactive parameters."""
        values: dict[str, Any] = {}
        for p in self.params:
            if p.active({**self.fixed, **values}):
                values[p.name] = p.suggest(trial)
        return values

    def fingerprint(self) -> str:
        """What must not change while a study continues (the seeds, the data folder and the
        thread count may)."""
        kept = {k: v for k, v in self.raw.items() if k != "seeds"}
        kept["fixed"] = {k: v for k, v in kept["fixed"].items() if k not in ("data_dir", "threads")}
        return json.dumps(kept, sort_keys=True, default=str)


def load_space(path: str | Path, overrides: dict[str, Any] | None = None) -> Space:
    """Reads and checks a space file.

    Args:
        path: the TOML file.
        overrides: options given on the command line (e.g. dataset); they join [fixed].

    Returns:
        The parsed space; any problem is a one-line NegspaceError naming the file and key.
    """
    where = str(path)
    raw = read_toml(path, "space")
    unknown = set(raw) - {"study", "fixed", "search", "seeds"}
    if unknown:
        raise NegspaceError(f"{where}: unknown section(s) {', '.join(sorted(unknown))}; "
                            "expected [study], [fixed], [search], [[seeds]]")
    for section in ("study", "fixed", "search"):
        if not isinstance(raw.get(section, {}), dict):
            raise NegspaceError(f"{where}: {section} must be a table ([{section}])")
    if not isinstance(raw.get("seeds", []), list):
        raise NegspaceError(f"{where}: seeds must be an array of tables ([[seeds]])")
    fixed = normalise_keys(raw.get("fixed", {}), f"{where} [fixed]")
    fixed.update({k: v for k, v in (overrides or {}).items() if v is not None})
    search = normalise_keys(raw.get("search", {}), f"{where} [search]")
    if not search:
        raise NegspaceError(f"{where}: [search] names no option to search")
    both = sorted(set(search) & set(fixed))
    if both:
        raise NegspaceError(f"{where}: {', '.join(both)} both fixed and searched")
    params: list[Param] = []
    for name, spec in search.items():
        params.append(_param(name, spec, f"{where} [search] {name}",
                             set(fixed) | {p.name for p in params}))
    study = _study(raw.get("study", {}), where)
    seeds = [_seed(s, i, params, where) for i, s in enumerate(raw.get("seeds", []), 1)]
    canonical = {"fixed": fixed, "search": search, "study": study, "seeds": seeds}
    return Space(where, fixed, params, seeds, study, canonical)


def _param(name: str, spec: Any, where: str, known: set[str]) -> Param:
    if isinstance(spec, list):
        return Param(name, "categorical", choices=_choices(spec, where))
    if not isinstance(spec, dict):
        raise NegspaceError(f"{where}: expected a list of choices or a table such as "
                            "{ log = [low, high] }; got " + repr(spec))
    if "choices" in spec:
        extra = set(spec) - {"choices", "when"}
        if extra:
            raise NegspaceError(f"{where}: choices takes only when besides; got "
                                f"{', '.join(sorted(extra))}")
        return Param(name, "categorical", choices=_choices(spec["choices"], where),
                     when=_when(spec.get("when", {}), where, known))
    kinds = [k for k in spec if k in _KINDS]
    extra = set(spec) - set(_KINDS) - {"step", "when"}
    if len(kinds) != 1 or extra:
        raise NegspaceError(f"{where}: expected exactly one of choices, {', '.join(_KINDS)} "
                            f"(plus optional step, when); got keys {', '.join(sorted(spec))}")
    kind = kinds[0]
    bounds = spec[kind]
    if (not isinstance(bounds, list) or len(bounds) != 2
            or any(isinstance(b, bool) or not isinstance(b, (int, float)) for b in bounds)):
        raise NegspaceError(f"{where}: {kind} needs [low, high] numbers; got {bounds!r}")
    low, high = bounds
    if not low < high:
        raise NegspaceError(f"{where}: low must be < high; got [{low}, {high}]")
    if kind in ("log", "log_int") and low <= 0:
        raise NegspaceError(f"{where}: a log range needs low > 0; got {low}")
    if kind in ("int", "log_int") and (float(low) != int(low) or float(high) != int(high)):
        raise NegspaceError(f"{where}: an integer range needs integer bounds; got [{low}, {high}]")
    step = spec.get("step", 1)
    if "step" in spec and (kind != "int" or isinstance(step, bool) or not isinstance(step, int)
                           or step < 1):
        raise NegspaceError(f"{where}: step is a positive integer, for int ranges only")
    return Param(name, kind, low=low, high=high, step=step,
                 when=_when(spec.get("when", {}), where, known))


def _choices(spec: Any, where: str) -> tuple:
    if not isinstance(spec, list) or not spec:
        raise NegspaceError(f"{where}: an empty list of choices" if spec == [] else
                            f"{where}: choices must be a list; got {spec!r}")
    if any(not isinstance(c, (bool, int, float, str)) for c in spec):
        raise NegspaceError(f"{where}: choices must be numbers, strings or booleans")
    if len({json.dumps(c) for c in spec}) != len(spec):
        raise NegspaceError(f"{where}: repeated choices")
    return tuple(spec)


def _when(cond: Any, where: str, known: set[str]) -> dict[str, tuple]:
    if not isinstance(cond, dict):
        raise NegspaceError(f"{where}: when must be a table such as {{ loss = \"softmax\" }}")
    out = {}
    for key, allowed in normalise_keys(cond, f"{where} when").items():
        if key not in known:
            raise NegspaceError(f"{where}: when refers to {key!r}, which is neither fixed nor "
                                "searched before it")
        out[key] = tuple(allowed) if isinstance(allowed, list) else (allowed,)
    return out


def _study(raw: dict[str, Any], where: str) -> dict[str, Any]:
    unknown = set(raw) - set(STUDY_DEFAULTS)
    if unknown:
        raise NegspaceError(f"{where}: unknown [study] key(s) {', '.join(sorted(unknown))}; "
                            f"known: {', '.join(STUDY_DEFAULTS)}")
    study = {**STUDY_DEFAULTS, **raw}
    if study["metric"] is not None:
        check_metric(study["metric"], where)
    if study["pruner"] not in PRUNERS:
        raise NegspaceError(f"{where}: [study] pruner must be one of {', '.join(PRUNERS)}; "
                            f"got {study['pruner']!r}")
    for key in ("prune_after_trials", "warmup_epochs", "startup_trials", "seed"):
        value = study[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise NegspaceError(f"{where}: [study] {key} must be an integer >= 0; got {value!r}")
    return study


def check_metric(metric: Any, where: str) -> str:
    """Raises unless `metric` is a validation metric the trainer records (e.g. recall@20)."""
    names = [f"{m}@{k}" for k in METRIC_KS for m in RANKING_METRICS]
    if metric not in names:
        raise NegspaceError(f"{where}: metric must be one of {', '.join(names)}; got {metric!r}")
    return metric


def _seed(raw: Any, i: int, params: list[Param], where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise NegspaceError(f"{where}: seed {i} must be a table ([[seeds]])")
    seed = normalise_keys(raw, f"{where} seed {i}")
    by_name = {p.name: p for p in params}
    for key, value in seed.items():
        if key not in by_name:
            raise NegspaceError(f"{where}: seed {i} sets {key!r}, which [search] does not search "
                                "(fixed options go in [fixed])")
        param = by_name[key]
        if not param.contains(value):
            raise NegspaceError(f"{where}: seed {i}: {key} = {value!r} is outside its range")
        if param.kind == "categorical":  # Optuna matches enqueued values to choices exactly
            seed[key] = next(c for c in param.choices if c == value)
        elif param.kind in ("int", "log_int"):
            seed[key] = int(value)
    return seed


def _same_number(a: Any, b: Any) -> bool:
    numbers = (int, float)
    return (isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool)
            and not isinstance(b, bool) and a == b)


__all__ = ["Param", "Space", "load_space", "check_metric", "PRUNERS", "STUDY_DEFAULTS"]
