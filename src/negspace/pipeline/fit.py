"""One training run end to end: data, split, model, sampler, training, test metrics, run directory."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from negspace.data.dataset import Dataset
from negspace.data.interactions import Interactions
from negspace.data.loaders import Columns, load_dataset
from negspace.evaluation.evaluator import evaluate
from negspace.distributed import process_group as distributed
from negspace.pipeline.split import resolved_split, split_parts
from negspace.pipeline.output import RunOutput
from negspace.pipeline.filtering import ranking_scorer, resolve_item_filter
from negspace.pipeline.refit import train_with_refit
from negspace.pipeline.towers import plot_drift, save_towers, tower_features
from negspace.pipeline.rundir import (METRICS_FILE, check_run_dir, remove_temporaries,
                                         start_run_dir, write_config, write_history, write_run)
from negspace.errors import NegspaceError
from negspace.models import TwoTower
from negspace.models.base import EmbeddingModel
from negspace.pipeline.build import build_trainer
from negspace.training.checkpoint import CHECKPOINT_FILE, load_checkpoint
from negspace.config import MACHINE_OPTIONS, TrainConfig, config_fields, make_config
from negspace.training.device import configure, resolve_device, resolve_precision
from negspace.training.options import TrainerOptions, selection_metric
from negspace.training.trainer import score_fn


def load_for(cfg: TrainConfig) -> Dataset:
    return load_dataset(cfg.dataset, cfg.data_dir, rating_threshold=cfg.rating_threshold,
                        min_user_interactions=cfg.min_user_interactions,
                        min_item_interactions=cfg.min_item_interactions,
                        columns=Columns(cfg.user_col, cfg.item_col, cfg.weight_col, cfg.time_col))


def split_for(cfg: TrainConfig, dataset: Dataset) -> tuple[Interactions, Interactions]:
    """(training interactions, test interactions) of this run: the given split, fold `cfg.fold`,
    or a time split (pipeline/split.py)."""
    return split_parts(cfg, dataset)[:2]


def run_training(cfg: TrainConfig, out: str | Path | None = None, overwrite: bool = False,
                 resume: bool = False, on_epoch: Callable[[dict], bool | None] | None = None,
                 evaluate_test: bool = True,
                 selection: tuple[list[dict], dict[str, float], float] | None = None,
                 dataset: Dataset | None = None, start: EmbeddingModel | None = None,
                 recorded: TrainConfig | None = None,
                 checkpoint: Path | None = None,
                 on_start: Callable[[], None] | None = None) -> RunOutput:
    """Trains one configuration and, when `out` is given, writes the run directory.

    The validation split is carved from the training data; the test data is touched once, at the
    end, with the selected model. With `out`, checkpoints go to `out/checkpoint.pt` (every epoch
    and every `cfg.checkpoint_every` steps) and metrics.json is written last.

    Args:
        cfg: the configuration.
        out: run directory; None trains in memory only.
        overwrite: replace an existing run directory.
        resume: continue the run in `out` from its checkpoint (see `resume_training`).
        on_epoch: TrainerOptions.on_epoch (the tuner's per-epoch report).
        evaluate_test: evaluate on the test split at the end; False (the tuner's trials, which
            must not read it; in memory only, `out` None) returns only `best_epoch` as metrics.
        selection: a --refit run's validated run (its history, written to selection.csv and
            counted in the training seconds, what it chose, added to the metrics, and the
            seconds of its model's start and its item-filter choice); set by pipeline/refit.py.
        dataset: the data `cfg` names, when the caller has loaded it already (the refit's two
            runs); None loads it.
        start: a trained model to go on training instead of a new one (--refit fold-back's second
            run; pipeline/refit.py); its graph becomes this run's training data.
        recorded: the configuration config.json records, when not `cfg` (--refit fold-back records
            the whole run's, which repeats it, not its second run's).
        checkpoint: with `out` None, the checkpoint file of this run kept in memory (a --refit
            run's validated run; pipeline/refit.py); with `resume`, continued from it if it exists.
        on_start: called once the model is built, before the first epoch (a --refit run starts
            its directory there, so that input refused while loading or building leaves none).

    Returns:
        Test metrics (with `train_seconds`), history, the selected model, the split, seconds.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)  # before the data: a missing GPU is a one-line error
    # "auto" decided on this machine and recorded as decided (config.json repeats the run)
    cfg = dataclasses.replace(cfg, precision=resolve_precision(cfg.precision, device))
    configure(device, cfg.precision, cfg.deterministic)
    run_dir = Path(out) if out is not None else None
    dist = None  # --nproc: this rank's DistContext (distributed/process_group.py); rank 0 writes
    if cfg.nproc > 1 or distributed.in_worker():
        distributed.check_supported(cfg.sampler, max(cfg.nproc, 2), cfg.device)
        device = resolve_device("cpu")  # gloo on CPUs (--device auto means the CPU here)
        if not distributed.in_worker():
            if run_dir is not None and not resume:
                check_run_dir(run_dir, overwrite)
            if on_epoch is not None or not evaluate_test:
                raise NegspaceError("--nproc > 1 runs from the command line or run_training only")
            return distributed.launch(_rank_entry, dataclasses.asdict(cfg), cfg.nproc,
                                      None if out is None else str(out), overwrite, resume)
        if not distributed.group_exists():  # this call owns the group: destroyed on every path
            distributed.init_worker()
            try:
                return run_training(cfg, out, overwrite, resume, on_epoch, evaluate_test,
                                    selection, dataset)
            finally:
                distributed.shutdown()
        dist = distributed.init_worker()
        cfg = dataclasses.replace(cfg, nproc=dist.world, progress=cfg.progress and dist.is_main)
    writer = dist is None or dist.is_main
    if run_dir is not None and not resume and writer:
        check_run_dir(run_dir, overwrite)  # refuse before the (slow) loading
    t0 = time.perf_counter()
    dataset = load_for(cfg) if dataset is None else dataset
    # sampler "auto" (the default recipe) and its val_users resolved before validation is carved
    cfg, train, test, fit_on, validation = resolved_split(cfg, dataset)
    select = selection_metric(cfg, dataset.protocol)
    if cfg.refit in ("yes", "fold-back"):  # train with validation in memory, then on all of it
        return train_with_refit(run_training, cfg, select, out, overwrite, on_epoch,
                                evaluate_test, dataset, resume)
    features = tower_features(dataset) if cfg.model == "two-tower" and cfg.side_features else None
    options = TrainerOptions.from_config(
        cfg, select, checkpoint=run_dir / CHECKPOINT_FILE if run_dir else checkpoint,
        fingerprint=fingerprint(cfg, train), drift=cfg.model == "two-tower", on_epoch=on_epoch)
    sampler_cfg = cfg if dist is None else dataclasses.replace(
        cfg, seed=distributed.sampler_seed(cfg.seed, dist.rank))  # seeded by (seed, rank)
    started = time.perf_counter()
    if start is not None and start.reads_history:
        start.set_history(fit_on)
    trainer = build_trainer(cfg, train.n_users, train.n_items, fit_on, validation, options,
                            device, features=features, sampler_cfg=sampler_cfg,
                            model_factory=None if start is None else lambda *_: start)
    # the model's start is training time too (--init spectral computes an SVD)
    start_seconds = time.perf_counter() - started
    model = trainer.model
    if dist is not None:
        distributed.attach(trainer, dist)
    if on_start is not None:
        on_start()
    state = None
    if run_dir is not None:
        if resume:
            if writer:
                remove_temporaries(run_dir)
            if (run_dir / CHECKPOINT_FILE).exists():  # else killed before its first checkpoint
                state = load_checkpoint(run_dir / CHECKPOINT_FILE)
            if dist is not None:
                dist.barrier()  # every rank has read it before rank 0 writes the next one
        elif writer:
            start_run_dir(run_dir, overwrite)
            write_config(run_dir, {**(recorded or cfg).to_dict(), "protocol": dataset.protocol})
            if selection is not None:
                write_history(run_dir, selection[0], "selection.csv")
    elif checkpoint is not None and resume and checkpoint.exists():
        state = load_checkpoint(checkpoint)
    if state is None:  # a resumed run's checkpoint holds the seconds of its start already
        trainer.result.train_seconds += start_seconds
    result = trainer.fit(state)
    model.eval()
    # --item-filter auto: its weight chosen on validation, with the model still on fit_on's graph
    cfg, filter_weight, choice_seconds = resolve_item_filter(cfg, model, fit_on, validation, select)
    result.train_seconds += choice_seconds
    if model.reads_history:  # test-time user vectors read the whole history
        model.set_history(train)
        model.to(device)  # the new history buffers too
    if not evaluate_test:  # the test interactions stay unread
        return RunOutput({"best_epoch": result.best_epoch, "item_filter": filter_weight,
                          "item_filter_seconds": choice_seconds},
                         result.history, model, train, test, time.perf_counter() - t0,
                         start_seconds)
    ranked = ranking_scorer(score_fn(model), train, filter_weight)
    metrics = (evaluate if dist is None else dist.evaluate)(ranked, train, test, ks=(20, 50))
    metrics.update({"best_epoch": result.best_epoch, "item_filter": filter_weight,
                    **unseen_test_items(train, test),
                    **(selection[1] if selection is not None else {})})
    seconds = time.perf_counter() - t0
    # a refit's user waited for both runs: the validated run's seconds count too
    selection_seconds = 0.0 if selection is None else (
        sum(r["seconds"] for r in selection[0]) + selection[2])
    train_seconds = round(result.train_seconds + selection_seconds, 3)
    if run_dir is not None and writer:
        if isinstance(model, TwoTower):  # before write_run, whose metrics.json marks the end
            save_towers(run_dir, model, features)
            plot_drift(run_dir, result.history)
        with torch.no_grad():
            vectors = model.user_vectors(None), model.item_vectors(None)
        write_run(run_dir, *vectors, model.measure, train, result.history,
                  {**(recorded or cfg).to_dict(), "protocol": dataset.protocol}, metrics,
                  {"train_seconds": round(result.train_seconds, 3),
                   "start_seconds": round(start_seconds, 3),
                   **({"item_filter_seconds": round(choice_seconds, 3)} if choice_seconds else {}),
                   "session_seconds": round(seconds, 3), "resumed": resume,
                   **({"selection_train_seconds": round(selection_seconds, 3)}
                      if selection is not None else {})})
    metrics["train_seconds"] = train_seconds
    return RunOutput(metrics, result.history, model, train, test, seconds, start_seconds)


def _rank_entry(values: dict[str, Any], out: str | None, overwrite: bool, resume: bool) -> RunOutput:
    """One rank of a `--nproc` run (distributed/process_group.py launches it)."""
    return run_training(make_config(values), out, overwrite=overwrite, resume=resume)


# A resumed run may change these (they change neither its numbers nor its bytes).
_FREE_ON_RESUME = MACHINE_OPTIONS


# Options added with the two-tower model: left out of the fingerprint at their defaults, so that
# checkpoints written before they existed still resume.
_ADDED_LATER = {"bank_size": 2048, "warmup": 0, "temperature": 1.0, "logq_strength": 1.0,
                "mask_positives": False, "measure": "dot", "side_features": True,
                "split_bank_gradient": False, "split": "auto", "time_cut": "0.8", "last_n": 1,
                "val_users": 0, "nproc": 1, "user_col": None, "item_col": None,
                "weight_col": None, "time_col": None, "precision": "fp32",
                "deterministic": False, "confidence": 0.0, "refit": "no",
                "max_decays": 0, "fold_back_epochs": 3, "fold_back_lr_scale": 1.0}


def fingerprint(cfg: TrainConfig, train: Interactions) -> str:
    """Hash of the options that shape the result and of the training data: a checkpoint from
    another configuration or another version of the data file is refused."""
    options = {k: v for k, v in cfg.to_dict().items() if k not in _FREE_ON_RESUME
               and not (k in _ADDED_LATER and v == _ADDED_LATER[k])}
    h = hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode())
    for array in (train.indptr, train.indices):
        h.update(np.ascontiguousarray(array, np.int64).tobytes())
    if cfg.confidence > 0:  # the weights shape the draws too
        h.update(np.ascontiguousarray(train.matrix.data, np.float32).tobytes())
    return h.hexdigest()


def resume_training(run_dir: str | Path, overrides: dict[str, Any] | None = None) -> RunOutput:
    """Continues an unfinished run from RUN_DIR/checkpoint.pt with the options in its config.json.

    Args:
        run_dir: the run directory.
        overrides: options given again (e.g. on the command line); only threads, progress,
            checkpoint_every, data_dir and device (default auto) may differ from the run's.

    Returns:
        As `run_training`; the files written are those an uninterrupted run writes.
    """
    run_dir = Path(run_dir)
    if (run_dir / METRICS_FILE).exists():
        raise NegspaceError(f"{run_dir} is a finished run ({METRICS_FILE} exists); nothing to resume")
    try:
        stored = json.loads((run_dir / "config.json").read_text())
    except FileNotFoundError:
        raise NegspaceError(f"{run_dir} is not a run directory (no config.json)") from None
    except (OSError, ValueError) as e:
        raise NegspaceError(f"{run_dir}/config.json: unreadable ({e})") from None
    known = {f.name for f in config_fields()}
    values = {k: v for k, v in stored.items() if k in known}
    # the device the run started on need not be here (a GPU run resumes on a CPU-only machine)
    values["device"] = "auto"
    base = make_config(values).to_dict()
    for key, value in (overrides or {}).items():
        if key in _FREE_ON_RESUME:
            values[key] = value
        elif make_config({**values, key: value}).to_dict()[key] != base[key]:
            raise NegspaceError(f"--resume continues a run with its own options; --{key.replace('_', '-')} "
                                f"is {base[key]!r} in {run_dir}/config.json, not {value!r}")
    return run_training(make_config(values), run_dir, resume=True)


def unseen_test_items(train: Interactions, test: Interactions) -> dict[str, int]:
    """Test items (and their interactions) that never occur in training: they stay in the
    evaluation, ranked with vectors training never moved, and are counted here."""
    seen = train.item_counts() > 0
    in_test = test.item_counts() > 0
    return {"n_test_items_not_in_train": int((in_test & ~seen).sum()),
            "n_test_interactions_not_in_train": int((~seen[test.indices]).sum())}


__all__ = ["tower_features", "run_training", "resume_training", "fingerprint", "unseen_test_items",
           "split_for", "load_for", "RunOutput"]
