"""`--refit yes` and `--refit fold-back`: early-stop on the validation split, then train on all the
training data.

The validation split (10% of each user's training items by default) is what early stopping and
the plateau decays need, but the model trained without it has seen less data. A refit run trains
twice: first with validation, in memory, which chooses the epochs (and the decays, replayed at
the same epochs: training/schedule.py `refit_plan`); then on every training interaction for
those epochs, the model kept and evaluated. This is what `negspace tune` does with its best trial.

`--refit fold-back` folds the held-out interactions back instead: the validated run's model goes
on for `fold_back_epochs` epochs on every training interaction, at the first rate times
`fold_back_lr_scale`, with a fresh optimiser and no validation, and the last model is kept.
Why: a refit costs a second whole run. Measured without the test split
(bench/research/fold_back.py: one level down, the validation split as the test and a second
split carved from the rest as validation), on gowalla-lightgcn three fold-back epochs lifted
Recall@20 on the held-out split from 0.2120 to 0.2200, the refit's 0.2197, in 51 s against its
190 s. On small data the default recipe refits; asked to fold back there, it validates at the
first rate only and folds back at a lower rate, where the refit's decayed epochs would have run
(config/recipe.py SMALL_FOLD_BACK).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from negspace.config import TrainConfig
from negspace.pipeline.rundir import start_run_dir, write_config
from negspace.training.checkpoint import CHECKPOINT_FILE, SELECTION_CHECKPOINT_FILE
from negspace.training.schedule import refit_plan

if TYPE_CHECKING:
    from negspace.data.dataset import Dataset
    from negspace.pipeline.output import RunOutput


def refit_config(cfg: TrainConfig, history: list[dict], best_epoch: int,
                 select: str) -> TrainConfig:
    """The configuration that retrains on all training data what a validated run chose.

    Args:
        cfg: the validated run's configuration (refit "yes").
        history: its rows, in order.
        best_epoch: the epoch of its best validation.
        select: its validation metric.

    Returns:
        `cfg` with validation 0, the kept epoch count and, when the rate decayed, the decays as
        `lr_schedule = "steps"`.
    """
    plan = refit_plan(history, f"val_{select}", best_epoch, cfg.lr_schedule == "plateau",
                      cfg.lr_decay)
    schedule = {"lr_schedule": plan["lr_schedule"], "lr_steps": plan["lr_steps"]} \
        if "lr_steps" in plan else {"lr_steps": ""}
    return dataclasses.replace(cfg, refit="no", validation=0.0, val_users=0,
                               epochs=plan["epochs"], **schedule).validate()


def train_with_refit(run_training: Callable[..., "RunOutput"], cfg: TrainConfig, select: str,
                     out: str | Path | None, overwrite: bool,
                     on_epoch: Callable[[dict], bool | None] | None,
                     evaluate_test: bool, dataset: "Dataset", resume: bool = False
                     ) -> "RunOutput":
    """Trains `cfg` with validation in memory, then its refit or fold-back (module docstring).

    With `out`, both runs can be resumed: the run directory gets the whole configuration first,
    and the validated run checkpoints to its SELECTION_CHECKPOINT_FILE, the second run to its
    own checkpoint; `negspace train --resume` continues whichever was cut short.

    Args:
        run_training: the pipeline's one run (pipeline/fit.py), called for both runs.
        cfg: a configuration with refit "yes" or "fold-back" (resolved for the data).
        select: the validation metric.
        out: run directory of the second run (selection.csv holds the validated run's history).
        overwrite: replace an existing run directory.
        on_epoch: called after each epoch of the validated run.
        evaluate_test: evaluate the final model on the test split.
        dataset: the loaded data, shared by both runs.
        resume: continue a run directory `out` that a killed run left.

    Returns:
        The second run's output; its metrics add `selection_best_epoch`,
        `selection_val_<metric>` and `refit_epochs` (or `fold_back_epochs`).
    """
    run_dir = None if out is None else Path(out)

    def start() -> None:  # once the first model is built: a kill from then on can be resumed
        start_run_dir(run_dir, overwrite)
        write_config(run_dir, {**cfg.to_dict(), "protocol": dataset.protocol})
    chosen = run_training(dataclasses.replace(cfg, refit="no"), None, resume=resume,
                          on_epoch=on_epoch, evaluate_test=False, dataset=dataset,
                          checkpoint=None if run_dir is None else
                          run_dir / SELECTION_CHECKPOINT_FILE,
                          on_start=None if run_dir is None or resume else start)
    best = int(chosen.metrics["best_epoch"])
    fold = cfg.refit == "fold-back"
    # --item-filter auto: the validated run chose the weight; both records keep it
    cfg = dataclasses.replace(cfg, item_filter=f"{chosen.metrics['item_filter']:g}")
    final = final_config(cfg, chosen.history, best, select)
    scores = [row[f"val_{select}"] for row in chosen.history if f"val_{select}" in row]
    notes = {"selection_best_epoch": float(best), f"selection_val_{select}": max(scores),
             ("fold_back_epochs" if fold else "refit_epochs"): float(final.epochs)}
    if cfg.progress:
        print(f"{'fold-back' if fold else 'refit'}: {final.epochs} epochs on every training "
              f"interaction (validation chose epoch {best}, {select} {max(scores):.4f})",
              flush=True)
    # the directory is this run's own now: its second run replaces what the first one left
    going_on = resume and run_dir is not None and (run_dir / CHECKPOINT_FILE).exists()
    return run_training(final, out, overwrite=True, resume=going_on,
                        evaluate_test=evaluate_test,
                        selection=(chosen.history, notes, chosen.start_seconds
                                   + chosen.metrics["item_filter_seconds"]),
                        dataset=dataset, start=chosen.model if fold else None,
                        recorded=cfg if fold else None)


def final_config(cfg: TrainConfig, history: list[dict], best_epoch: int,
                 select: str) -> TrainConfig:
    """The configuration of the run after the validated one: `fold_back_config` with refit
    "fold-back" (it starts from the validated model), else `refit_config` (a fresh start)."""
    if cfg.refit == "fold-back":
        return fold_back_config(cfg)
    return refit_config(cfg, history, best_epoch, select)


def fold_back_config(cfg: TrainConfig) -> TrainConfig:
    """The configuration of `--refit fold-back`'s second run: `cfg.fold_back_epochs` epochs on
    every training interaction at `cfg.lr` x `cfg.fold_back_lr_scale`, no validation, no
    schedule (the model comes from the validated run, so nothing of `init` is computed again)."""
    lr = cfg.lr * cfg.fold_back_lr_scale
    return dataclasses.replace(cfg, refit="no", validation=0.0, val_users=0, lr=lr,
                               epochs=cfg.fold_back_epochs, lr_schedule="none",
                               lr_steps="").validate()


__all__ = ["final_config", "fold_back_config", "refit_config", "train_with_refit"]
