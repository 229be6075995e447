"""The Optuna side of `negspace tune`: storage, study, the trial objective and worker processes.

Each trial trains one configuration with `run_training` on the validation split carved from the
training data (never the test split), reports the validation metric after every validated epoch
to the pruner, and stops early on its own patience, when pruned, or when the budget is spent (it
then keeps its best epoch so far). Its history is written to OUT/trials/trial-NNNN.json after
every epoch, so pruned and failed trials keep their curves too.
"""

from __future__ import annotations

import multiprocessing
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from negspace.errors import NegspaceError
from negspace.io import write_json
from negspace.training.schedule import kept_epochs
from negspace.tuning.space import Space

_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_budget(text: str) -> float:
    """Seconds in a budget such as "90s", "30m", "2h" or "1h30m".

    Raises:
        NegspaceError: on anything else, or a zero budget.
    """
    parts = re.fullmatch(r"\s*((?:\d+(?:\.\d+)?\s*[smh]\s*)+)", text or "")
    if parts is None:
        raise NegspaceError(f"--budget expects a duration such as 90s, 30m, 2h or 1h30m; got {text!r}")
    seconds = sum(float(n) * _UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)\s*([smh])", text))
    if seconds <= 0:
        raise NegspaceError(f"--budget must be positive; got {text!r}")
    return seconds


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise NegspaceError("negspace tune needs Optuna: pip install 'negspace[tune]'") from None
    # ERROR: a failed trial's traceback is Optuna's WARNING; our log line gives its one-line error
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # PED-ANOVA's "fewer than 2 trials in some regime" notes: the report says how many trials
    warnings.filterwarnings("ignore", message="Some regimes for parameter", category=UserWarning)
    return optuna


def open_storage(url: str) -> Any:
    """An Optuna RDB storage shared by the workers. Trials of a process that died (no heartbeat
    for 2 minutes) are marked failed and tried again once, so a killed study resumes cleanly.
    """
    optuna = _optuna()
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        # several processes write the same file: wait for its lock rather than fail at once;
        # pysqlite opens no transaction itself (isolation_level None), the listener below does
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 120, "isolation_level": None}}
    try:
        storage = optuna.storages.RDBStorage(
            url, heartbeat_interval=30, grace_period=120,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=1), **kwargs)
    except Exception as e:  # noqa: BLE001 -- SQLAlchemy's URL and driver errors vary
        raise NegspaceError(f"--storage {url}: {type(e).__name__}: {e}") from None
    if kwargs:
        _begin_immediate(storage.engine)
    return storage


def _begin_immediate(engine: Any) -> None:
    """Every transaction takes SQLite's write lock when it begins. SQLite ignores Optuna's
    SELECT ... FOR UPDATE, so two workers could both claim one queued trial and the slower
    one fail with "Cannot tell a COMPLETE trial" (Optuna issues #4002, #4621)."""
    from sqlalchemy import event

    event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))


def make_sampler(space: Space, worker: int, existing: int = 0) -> Any:
    """TPE, seeded: worker k of a session that finds `existing` trials in the study draws from
    seed + k + 10007 x existing (the same seed in every worker, or in a continued study, would
    repeat the random draws of the other workers or of the last session)."""
    optuna = _optuna()
    return optuna.samplers.TPESampler(seed=space.study["seed"] + worker + 10007 * existing,
                                      n_startup_trials=space.study["startup_trials"])


def make_pruner(space: Space) -> Any:
    optuna = _optuna()
    s = space.study
    if s["pruner"] == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=s["prune_after_trials"],
                                           n_warmup_steps=s["warmup_epochs"])
    if s["pruner"] == "hyperband":
        cap = int(space.fixed.get("epochs", 20))
        return optuna.pruners.HyperbandPruner(min_resource=max(1, s["warmup_epochs"]),
                                              max_resource=max(cap, 2))
    return optuna.pruners.NopPruner()


@dataclass
class TrialJob:
    """What a worker process needs (picklable): the study, the space, the budget's end."""

    space: Space
    storage: str
    study_name: str
    metric: str
    deadline: float          # time.time() at which no epoch starts any more
    max_trials: int | None   # trials in the study (every state) after which workers stop
    out_dir: str
    threads: int | None      # torch threads of each trial (1 when several workers share cores)
    worker: int = 0


class Objective:
    """Trains one trial's configuration; returns its best validation metric."""

    def __init__(self, job: TrialJob) -> None:
        self.job = job

    def __call__(self, trial: Any) -> float:
        from negspace.pipeline.fit import run_training
        from negspace.config import make_config

        optuna = _optuna()
        job = self.job
        params = job.space.suggest(trial)
        trial.set_user_attr("worker", job.worker)
        values = {**job.space.fixed, **params, "select_metric": job.metric, "progress": False}
        if job.threads is not None:
            values["threads"] = job.threads
        key = f"val_{job.metric}"
        curve: list[dict] = []
        record = {"number": trial.number, "params": params, "metric": job.metric,
                  "worker": job.worker, "state": "RUNNING", "history": curve}
        path = Path(job.out_dir) / "trials" / f"trial-{trial.number:04d}.json"
        t0 = time.time()

        def on_epoch(row: dict) -> bool:
            curve.append(row)
            write_json(path, record)
            if key in row:
                trial.report(float(row[key]), int(row["epoch"]))
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at epoch {row['epoch']}")
            if time.time() >= job.deadline:  # budget spent: end here, keep the best epoch
                record["cut_by_budget"] = True
                return True
            return False

        try:
            cfg = make_config(values)
            record["config"] = cfg.to_dict()
            out = run_training(cfg, on_epoch=on_epoch, evaluate_test=False)
        except optuna.TrialPruned:
            record["state"] = "PRUNED"
            raise
        except NegspaceError as e:  # an invalid combination or a diverged run: the trial fails
            trial.set_user_attr("error", " ".join(str(e).split()))
            record.update(state="FAIL", error=trial.user_attrs["error"])
            raise
        finally:
            record["seconds"] = round(time.time() - t0, 3)
            write_json(path, record)
        scores = [float(r[key]) for r in curve if key in r]
        if not scores:
            record["state"] = "PRUNED"
            write_json(path, record)
            raise optuna.TrialPruned("the budget ended before the first validation")
        best_epoch = int(out.metrics["best_epoch"])
        chain = kept_epochs(curve, key, best_epoch, getattr(cfg, "lr_schedule", "none") == "plateau")
        trial.set_user_attr("best_epoch", best_epoch)
        trial.set_user_attr("refit_epochs", len(chain))
        trial.set_user_attr("refit_lrs", [r.get("lr") for r in chain])
        trial.set_user_attr("epochs_run", len(curve))
        trial.set_user_attr("train_seconds", round(sum(r["seconds"] for r in curve), 3))
        trial.set_user_attr("cut_by_budget", bool(record.get("cut_by_budget", False)))
        record.update(state="COMPLETE", value=max(scores), best_epoch=best_epoch)
        write_json(path, record)
        return max(scores)


def run_worker(job: TrialJob) -> None:
    """Runs trials of the shared study until the budget or the trial count is spent."""
    optuna = _optuna()
    if job.threads is not None:
        import torch
        torch.set_num_threads(job.threads)
    storage = open_storage(job.storage)
    existing = len(optuna.load_study(study_name=job.study_name, storage=storage).get_trials(
        deepcopy=False, states=[s for s in optuna.trial.TrialState if s.is_finished()]))
    study = optuna.load_study(study_name=job.study_name, storage=storage,
                              sampler=make_sampler(job.space, job.worker, existing),
                              pruner=make_pruner(job.space))
    callbacks = [_log_trial(job.metric)]
    if job.max_trials is not None:
        S = optuna.trial.TrialState  # enqueued seeds still WAITING are not trials yet
        counted = (S.COMPLETE, S.PRUNED, S.FAIL, S.RUNNING)
        if len(study.get_trials(deepcopy=False, states=counted)) >= job.max_trials:
            return
        callbacks.append(optuna.study.MaxTrialsCallback(job.max_trials, states=counted))
    remaining = job.deadline - time.time()
    if remaining <= 0:
        return
    study.optimize(Objective(job), timeout=remaining, catch=(NegspaceError,),
                   callbacks=callbacks, gc_after_trial=True)


def _log_trial(metric: str) -> Any:
    def log(study: Any, trial: Any) -> None:
        state = trial.state.name.lower()
        shown = " ".join(f"{k}={_short(v)}" for k, v in trial.params.items())
        if state == "complete":
            what = (f"val {metric} {trial.value:.4f} at epoch {trial.user_attrs.get('best_epoch')}"
                    f" of {trial.user_attrs.get('epochs_run')}"
                    + (", stopped by the budget" if trial.user_attrs.get("cut_by_budget") else ""))
        elif state == "pruned":
            last = max(trial.intermediate_values) if trial.intermediate_values else 0
            what = f"pruned after epoch {last}"
        else:
            what = f"{state}: {trial.user_attrs.get('error', 'see the trial file')}"
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() \
            if trial.datetime_complete and trial.datetime_start else 0.0
        print(f"[trial {trial.number}] {what} ({seconds:.0f}s)  {shown}", flush=True)
    return log


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def run_workers(job: TrialJob, workers: int) -> None:
    """Runs `workers` processes on the study (in this process when there is one)."""
    if workers == 1:
        run_worker(job)
        return
    ctx = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch state
    procs = [ctx.Process(target=run_worker, args=(_with_worker(job, k),), name=f"tune-{k}")
             for k in range(workers)]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        for p in procs:
            p.join()
        raise
    failed = [p.name for p in procs if p.exitcode not in (0, None)]
    if failed:
        raise NegspaceError(f"tuning worker(s) {', '.join(failed)} exited with an error "
                            "(see above); rerun the same command to continue the study")


def _with_worker(job: TrialJob, k: int) -> TrialJob:
    return TrialJob(**{**job.__dict__, "worker": k})


__all__ = ["parse_budget", "kept_epochs", "open_storage", "make_sampler", "make_pruner", "TrialJob",
           "Objective", "run_worker", "run_workers"]
