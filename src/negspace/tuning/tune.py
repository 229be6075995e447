"""`negspace tune`: a study on the validation split, then the recipe, the refit and the report.

Output folder (default runs/tune/SPACE-DATASET):
    study.db              the Optuna study (SQLite; rerun the same command to continue it)
    trials/trial-NNNN.json  every trial's options, state and per-epoch history (its curve)
    recipe.toml           the best trial's options with its best epoch count and validation 0:
                          `negspace train --config recipe.toml --out DIR` is the refit
    refit/                the refit's run directory (all training data; the test split is read
                          here, once, after the choice)
    report.md, history.png, importance.png, curves.png
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from negspace.config.schema import MACHINE_OPTIONS
from negspace.errors import NegspaceError
from negspace.training.schedule import replayed_decays
from negspace.tuning.report import counts, recipe, write_recipe, write_report
from negspace.tuning.space import Space, check_metric, load_space
from negspace.tuning.study import (TrialJob, _optuna, make_pruner, make_sampler, open_storage,
                                   parse_budget, run_workers)

# a stored refit is reused whatever these were, but not from another device
_FREE = tuple(k for k in MACHINE_OPTIONS if k != "device")


@dataclass
class TuneResult:
    """Args:
        best_value: the best trial's validation metric.
        best_params: its searched options.
        best_epoch: the epoch count chosen for the refit.
        recipe_path: the recipe TOML.
        refit_metrics: the refit's test metrics (None with refit=False).
        counts: trials per state.
        out_dir: the output folder.
    """

    best_value: float
    best_params: dict[str, Any]
    best_epoch: int
    recipe_path: Path
    refit_metrics: dict[str, float] | None
    counts: dict[str, int]
    out_dir: Path


def run_tune(space_path: str | Path, budget: str, trials: int | None = None, workers: int = 1,
             storage: str | None = None, out: str | Path | None = None,
             overrides: dict[str, Any] | None = None, refit: bool = True,
             command: str | None = None) -> TuneResult:
    """Runs (or continues) a study, then writes the recipe, refits it and writes the report.

    Args:
        space_path: the space TOML (see negspace.tuning.space).
        budget: wall time of this session's search, e.g. "30m" (the refit comes on top).
        trials: stop once the study holds this many trials (every state, earlier sessions'
            included); None: only the budget stops it.
        workers: trial processes sharing the study (each trains on one torch thread).
        storage: Optuna storage URL; default sqlite:///OUT/study.db.
        out: output folder; default runs/tune/SPACE-DATASET.
        overrides: options joining the space's [fixed] (the CLI's --dataset, --data-dir).
        refit: train the recipe on all training data and evaluate it on the test split.
        command: the command line, written at the top of the recipe.

    Returns:
        The choice, the recipe's path and the refit's metrics.
    """
    seconds = parse_budget(budget)
    if trials is not None and trials < 1:
        raise NegspaceError(f"--trials must be >= 1; got {trials}")
    if workers < 1:
        raise NegspaceError(f"--workers must be >= 1; got {workers}")
    space = load_space(space_path, overrides)
    if "dataset" not in space.fixed:
        raise NegspaceError(f"{space_path}: no dataset: give --dataset or set dataset in [fixed]")
    metric, protocol = _metric(space)
    name = f"{Path(space_path).stem}-{_slug(space.fixed['dataset'])}"
    out_dir = Path(out) if out is not None else Path("runs") / "tune" / name
    out_dir.mkdir(parents=True, exist_ok=True)
    url = storage or f"sqlite:///{out_dir / 'study.db'}"
    study = _open_study(space, url, name, metric)
    job = TrialJob(space=space, storage=url, study_name=name, metric=metric,
                   deadline=time.time() + seconds, max_trials=trials, out_dir=str(out_dir),
                   threads=1 if workers > 1 else space.fixed.get("threads"))
    t0 = time.time()
    finished = sum(t.state.is_finished() for t in study.trials)
    print(f"study {name} ({url}): {finished} finished trials so far; searching for {budget} "
          f"with {workers} worker(s), validation {metric}", flush=True)
    run_workers(job, workers)
    elapsed = time.time() - t0
    study = _optuna().load_study(study_name=name, storage=open_storage(url))
    header = _header(space_path, space, name, url, metric, protocol, budget, elapsed, command)
    names = [p.name for p in space.params]
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not done:
        write_report(out_dir, study, metric, names, header, None)
        errors = [t.user_attrs["error"] for t in study.trials if "error" in t.user_attrs]
        raise NegspaceError(f"no trial finished in {out_dir} ({len(study.trials)} trials)"
                            + (f"; first error: {errors[0]}" if errors else
                               "; give a larger --budget"))
    best = study.best_trial
    best_epoch = int(best.user_attrs["best_epoch"])
    epochs = int(best.user_attrs.get("refit_epochs", best_epoch))
    options = recipe(space.fixed, best.params, epochs)
    options.update(replayed_decays(best.user_attrs.get("refit_lrs", []),
                                   float(options.get("lr_decay", 0.1))))
    recipe_path = out_dir / "recipe.toml"
    write_recipe(recipe_path, options, [
        f"Found by: {command or _command(space_path, space, budget, trials, workers)}",
        f"Study {name}: trial {best.number} of {sum(t.state.is_finished() for t in study.trials)}"
        f" finished, validation {metric} "
        f"{best.value:.4f} at epoch {best_epoch} (trained on the training data less its "
        f"{space.fixed.get('validation', 0.1)} validation share)",
        *_schedule_note(best.user_attrs.get("refit_lrs", []), best_epoch, epochs),
        f"Refit: every training interaction for {epochs} epochs (validation = 0), last model kept.",
        ""])
    refit_metrics = _refit(options, space, out_dir) if refit else None
    report = write_report(out_dir, study, metric, names, header, refit_metrics)
    print(f"best: trial {best.number}, val {metric} {best.value:.4f} at epoch {best_epoch} "
          f"(refit: {epochs} epochs); recipe {recipe_path}; report {report}", flush=True)
    return TuneResult(best.value, dict(best.params), epochs, recipe_path, refit_metrics,
                      counts(study.trials), out_dir)


def _schedule_note(lrs: list[Any], best_epoch: int, epochs: int) -> list[str]:
    """Recipe comments when the plateau schedule shaped the best trial."""
    notes = []
    if epochs != best_epoch:
        notes.append(f"The plateau schedule threw away {best_epoch - epochs} of those epochs "
                     f"(reloading the best weights), so the best weights hold {epochs} epochs.")
    rates = [lr for lr in lrs if lr is not None]
    if rates and min(rates) < max(rates):
        steps = " ".join(f"{lr:.3g}" for lr in rates)
        notes.append(f"Rate of each kept epoch: {steps}; the refit replays these decays at "
                     "the same epochs (lr_schedule = \"steps\").")
    return notes


def _metric(space: Space) -> tuple[str, str]:
    """The validation metric: [study] metric, else [fixed] select_metric, else the trainer's
    default for the dataset's protocol (which loading the dataset tells, and checks it exists)."""
    from negspace.pipeline.fit import load_for
    from negspace.config import make_config

    data_keys = ("dataset", "data_dir", "rating_threshold", "min_user_interactions",
                 "min_item_interactions")
    cfg = make_config({k: v for k, v in space.fixed.items() if k in data_keys})
    protocol = load_for(cfg).protocol
    metric = (space.study["metric"] or space.fixed.get("select_metric")
              or ("ndcg@50" if protocol == "kfold" else "recall@20"))
    return check_metric(metric, space.path), protocol


def _open_study(space: Space, url: str, name: str, metric: str) -> Any:
    """Creates the study (with the seeds enqueued) or opens it, refusing another space's study."""
    optuna = _optuna()
    study = optuna.create_study(study_name=name, storage=open_storage(url), direction="maximize",
                                sampler=make_sampler(space, 0), pruner=make_pruner(space),
                                load_if_exists=True)
    stored = study.user_attrs.get("space")
    if stored is not None and stored != space.fingerprint():
        raise NegspaceError(f"study {name} in {url} was started from another space file (or other "
                            "[fixed]/[search]/[study] values); give another --out or --storage")
    if stored is not None and study.user_attrs.get("metric") != metric:
        raise NegspaceError(f"study {name} in {url} maximises {study.user_attrs.get('metric')}, "
                            f"not {metric}")
    if stored is None:
        study.set_user_attr("space", space.fingerprint())
        study.set_user_attr("metric", metric)
    # known-good recipes first: TPE starts from them; a seed added to the space file later joins
    # a resumed study (one already tried is skipped)
    for seed in space.seeds:
        study.enqueue_trial(seed, skip_if_exists=True)
    return study


def _refit(options: dict[str, Any], space: Space, out_dir: Path) -> dict[str, float]:
    """Trains the recipe on all training data in OUT/refit and evaluates it on the test split.
    A refit already finished with the same options is reused: the test split is read once."""
    from negspace.pipeline.fit import run_training
    from negspace.config import make_config

    extra = {k: space.fixed[k] for k in ("data_dir", "threads") if k in space.fixed}
    cfg = make_config({**options, **extra, "progress": False})
    refit_dir = out_dir / "refit"
    metrics_file = refit_dir / "metrics.json"
    if metrics_file.exists():
        try:
            stored = json.loads((refit_dir / "config.json").read_text())
            if all(stored.get(k) == v for k, v in cfg.to_dict().items() if k not in _FREE):
                print(f"refit: {refit_dir} already holds this recipe's run", flush=True)
                metrics = json.loads(metrics_file.read_text())
                timing = refit_dir / "timing.json"
                if timing.exists():
                    metrics["train_seconds"] = json.loads(timing.read_text())["train_seconds"]
                return metrics
        except (OSError, ValueError, KeyError):
            pass
    print(f"refit: {cfg.epochs} epochs on all training data -> {refit_dir}", flush=True)
    return run_training(cfg, refit_dir, overwrite=True).metrics


def _header(space_path: str | Path, space: Space, name: str, url: str, metric: str,
            protocol: str, budget: str, elapsed: float, command: str | None) -> list[str]:
    return [f"- space: `{space_path}`; dataset `{space.fixed['dataset']}` ({protocol} protocol)",
            f"- study `{name}` in `{url}`; validation metric {metric} (the test split is read "
            "only by the refit)",
            f"- this session: budget {budget}, searched {elapsed / 60:.1f} min",
            f"- command: `{command}`" if command else "- command: (Python API)"]


def _command(space_path: str | Path, space: Space, budget: str, trials: int | None,
             workers: int) -> str:
    parts = ["negspace tune", str(space_path), "--dataset", str(space.fixed["dataset"]),
             "--budget", budget, "--workers", str(workers)]
    if trials is not None:
        parts += ["--trials", str(trials)]
    return " ".join(parts)


def _slug(text: Any) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(str(text)).name).strip("-") or "data"


__all__ = ["run_tune", "TuneResult"]
