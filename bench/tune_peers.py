"""Peers tuned with the same care as negspace: Optuna studies for implicit's ALS and LightFM's WARP,
and EASE's one setting on a grid.

Run (needs the bench and tune extras: `.venv/bin/pip install -e ".[bench,tune]"`):

    .venv/bin/python bench/tune_peers.py --datasets movielens-1m-lcfn --methods als warp --budget 10m
    .venv/bin/python bench/tune_peers.py --report          # tables from the saved results

Protocol, the same as `negspace tune`'s:
- the dataset is split as `negspace train` splits it (the given split; fold 0 of 4 for k-fold
  data), and the validation split is carved from the training part as negspace carves it (10% of
  each user's training items, seed 0; pipeline/split.py);
- an Optuna study per (dataset, method): TPE seeded 0 with the known-good settings enqueued first,
  a median pruner on the validation metric at each checkpoint (ALS iterations, WARP epochs), a
  wall-clock budget (a trial that meets the end of the budget keeps its best checkpoint so far);
  the iteration / epoch count is chosen on validation along the way, and a trial stops after 3
  checkpoints without improvement (negspace's patience); a continued study reseeds its sampler;
- the validation metric is negspace's default: recall@20 on a given split, ndcg@50 on k-fold;
- the best settings are then refit on all the training data, and the test split is read once.
EASE has one setting, lambda: no study but bench/peers.py's grid (half decades from 1 to 1e5,
then the best one's quarter-decade neighbours) on the same validation split and metric, then the
same refit and single test read; --budget does not apply. It refuses data above 20,000 users and
20,000 items.
Search spaces: SPACES below. ALS: factors 32 to 512, regularisation and alpha log-uniform,
iterations up to 40. WARP: components 32 to 512, learning rate, one L2 alpha for users and items,
max_sampled, the learning schedule, epochs up to 60.
Threads: each fit gets `--threads` threads (implicit, LightFM); validation and test evaluation
run negspace's evaluator on torch's `--threads` threads.

Output (default runs/tune-peers): OUT/DATASET/METHOD.db (the study; rerun to continue it),
OUT/DATASET/METHOD.json (choice, validation, refit test metrics, trials), OUT/results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402  -- imports negspace first (its OpenMP setting precedes torch)
import numpy as np  # noqa: E402
import torch  # noqa: E402

from negspace.evaluation.evaluator import evaluate  # noqa: E402
from negspace.pipeline.fit import load_for  # noqa: E402
from negspace.config import make_config  # noqa: E402

DATASETS = ("movielens-1m-lcfn", "lastfm-hetrec2011", "amazon-cds-bgcf", "amazon-book-kgat",
            "movielens-100k", "book-crossing-caserec-subset")
# Checkpoints at which a trial is validated (and may be pruned); the best one is its count.
ALS_AT = (2, 4, 6, 8, 10, 12, 15, 20, 25, 30, 40)
WARP_AT = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60)
PATIENCE = 3  # checkpoints without improvement that end a trial, as negspace's --patience
SEEDS = {  # bench/peers.py's hand-tuned settings (ML-1M validation), and ALS at 256 factors
    "als": [{"factors": 64, "regularization": 30.0, "alpha": 5.0},
            {"factors": 256, "regularization": 30.0, "alpha": 5.0}],
    "warp": [{"factors": 64, "learning_rate": 0.05, "alpha": 1e-9, "max_sampled": 50,
              "learning_schedule": "adagrad"}],
}


def suggest(method: str, trial: Any) -> dict[str, Any]:
    """The search spaces."""
    if method == "als":
        return {"factors": trial.suggest_categorical("factors", [32, 64, 128, 256, 512]),
                "regularization": trial.suggest_float("regularization", 1e-2, 1e3, log=True),
                "alpha": trial.suggest_float("alpha", 0.1, 100.0, log=True)}
    return {"factors": trial.suggest_categorical("factors", [32, 64, 128, 256, 512]),
            "learning_rate": trial.suggest_float("learning_rate", 5e-3, 0.2, log=True),
            "alpha": trial.suggest_float("alpha", 1e-9, 1e-3, log=True),
            "max_sampled": trial.suggest_categorical("max_sampled", [10, 30, 50, 100, 200]),
            "learning_schedule": trial.suggest_categorical("learning_schedule",
                                                           ["adagrad", "adadelta"])}


class Stop(Exception):
    """Ends a fit early (the budget is spent); the best checkpoint so far stands."""


def data(dataset: str, seed: int = 0):
    """(train, test, fit_on, validation) exactly as `negspace train --dataset DATASET` has them."""
    cfg = make_config({"dataset": dataset, "seed": seed})
    ds = load_for(cfg)
    try:
        from negspace.pipeline.split import split_with_validation
        train, test, fit_on, validation = split_with_validation(cfg, ds)
    except ImportError:  # before pipeline/split.py: the same rule, written out
        from negspace.data.splits import holdout_split
        from negspace.pipeline.fit import split_for
        train, test = split_for(cfg, ds)
        fit_on, validation = holdout_split(train, cfg.validation, cfg.seed)
    return ds.protocol, train, test, fit_on, validation


def fit(method: str, train, p: dict[str, Any], count: int, threads: int, seed: int,
        at: Callable[[int, Any], None] | None = None) -> tuple[Any, float]:
    """Fits METHOD with P for COUNT iterations (ALS) or epochs (WARP); calls at(k, factors)
    at the checkpoints. Returns the final factors (user, item, item bias) and the fit seconds
    (checkpoint validation excluded)."""
    m = peers.csr(train)
    spent, excluded = time.perf_counter(), 0.0
    if method == "als":
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits
        with threadpool_limits(1, "blas"):  # implicit parallelises itself; BLAS threads fight it
            model = AlternatingLeastSquares(
                factors=p["factors"], regularization=p["regularization"], alpha=p["alpha"],
                iterations=count, num_threads=threads, random_state=seed,
                calculate_training_loss=False)

        def factors():
            return np.asarray(model.user_factors), np.asarray(model.item_factors), None

        def callback(iteration: int, *_: Any) -> None:
            nonlocal excluded
            if at is not None and iteration + 1 in ALS_AT:
                e0 = time.perf_counter()
                try:
                    at(iteration + 1, factors())
                finally:
                    excluded += time.perf_counter() - e0
        with threadpool_limits(1, "blas"):
            try:
                model.fit(m, show_progress=False, callback=callback)
            except Stop:
                pass
        return factors(), time.perf_counter() - spent - excluded
    from lightfm import LightFM
    model = LightFM(no_components=p["factors"], loss="warp", learning_rate=p["learning_rate"],
                    learning_schedule=p["learning_schedule"], item_alpha=p["alpha"],
                    user_alpha=p["alpha"], max_sampled=p["max_sampled"], random_state=seed)
    coo = m.tocoo()
    for epoch in range(1, count + 1):
        model.fit_partial(coo, epochs=1, num_threads=threads)
        if at is not None and epoch in WARP_AT:
            e0 = time.perf_counter()
            try:
                at(epoch, (model.user_embeddings, model.item_embeddings, model.item_biases))
            except Stop:
                break
            finally:
                excluded += time.perf_counter() - e0
    return ((model.user_embeddings, model.item_embeddings, model.item_biases),
            time.perf_counter() - spent - excluded)


def ease_for(dataset: str, out: Path, seed: int) -> dict[str, Any]:
    """EASE: lambda on the validation split (a grid), refit on all training data, test once."""
    protocol, train, test, fit_on, validation = data(dataset, seed)
    metric = "recall@20" if protocol == "given" else "ndcg@50"
    t0 = time.time()
    lam, rows = peers.choose_ease_lambda(fit_on, validation, metric)
    searched = time.time() - t0
    with peers.Timer() as t:
        model = peers.Ease(peers.csr(train), lam)
    metrics = evaluate(model.score_fn(), train, test, ks=(20, 50))
    result = {"dataset": dataset, "method": "ease", "protocol": protocol, "metric": metric,
              "val": max(r[metric] for r in rows), "params": {"lambda": lam}, "grid": rows,
              "trials": {"complete": len(rows)}, "search_seconds_this_session": searched,
              "budget_seconds": searched, "refit_seconds": t.wall,
              "threads": torch.get_num_threads(),
              "test": {k: v for k, v in metrics.items() if "@" in k},
              "env": peers.environment(torch.get_num_threads())}
    folder = out / dataset
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "ease.json.tmp"
    tmp.write_text(json.dumps(result, indent=1, default=float))
    tmp.replace(folder / "ease.json")
    print(f"{dataset} ease: lambda {lam:.4g}, val {metric} {result['val']:.4f}; test "
          + "  ".join(f"{k} {metrics[k]:.4f}" for k in peers.metric_keys(protocol))
          + f"  (refit {t.wall:.1f}s)", flush=True)
    return result


def study_for(method: str, dataset: str, out: Path, budget: float, threads: int,
              seed: int) -> dict[str, Any]:
    """Runs (or continues) the study, refits the best settings, evaluates on test once."""
    if method == "ease":
        return ease_for(dataset, out, seed)
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    protocol, train, test, fit_on, validation = data(dataset, seed)
    metric = "recall@20" if protocol == "given" else "ndcg@50"
    cap = ALS_AT[-1] if method == "als" else WARP_AT[-1]
    folder = out / dataset
    folder.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        study_name=f"{method}-{dataset}", storage=f"sqlite:///{folder / (method + '.db')}",
        direction="maximize", load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=seed + 10007 * _trials(method, dataset, folder),
                                           n_startup_trials=8),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=3))
    if not study.trials:
        for s in SEEDS[method]:
            study.enqueue_trial(s)
    deadline = time.time() + budget

    def objective(trial: Any) -> float:
        p = suggest(method, trial)
        curve: list[tuple[int, float]] = []

        def at(k: int, factors: Any) -> None:
            v = evaluate(peers.factor_score_fn(*factors), fit_on, validation, ks=(20, 50))[metric]
            curve.append((k, v))
            trial.report(v, k)
            if trial.should_prune():
                raise optuna.TrialPruned()
            stale = len(curve) - 1 - max(range(len(curve)), key=lambda i: (curve[i][1], -i))
            # negspace's patience: 3 validations without improvement end a run
            if time.time() >= deadline or stale >= PATIENCE:
                raise Stop()
        _, seconds = fit(method, fit_on, p, cap, threads, seed, at)
        best_k, best_v = max(curve, key=lambda kv: (kv[1], -kv[0]))
        trial.set_user_attr("count", best_k)
        trial.set_user_attr("curve", curve)
        trial.set_user_attr("fit_seconds", seconds)
        print(f"  [{method} trial {trial.number}] val {metric} {best_v:.4f} at {best_k}  {p}",
              flush=True)
        return best_v

    t0 = time.time()
    if time.time() < deadline:
        study.optimize(objective, timeout=budget)
    searched = time.time() - t0
    best = study.best_trial
    params = {**best.params, "count": best.user_attrs["count"]}
    factors, seconds = fit(method, train, best.params, params["count"], threads, seed)
    metrics = evaluate(peers.factor_score_fn(*factors), train, test, ks=(20, 50))
    states: dict[str, int] = {}
    for t in study.trials:
        states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
    previous = folder / f"{method}.json"  # budgets of earlier sessions of this study
    before = json.loads(previous.read_text()).get("budget_seconds_total", 0.0) \
        if previous.exists() else 0.0
    result = {"dataset": dataset, "method": method, "protocol": protocol, "metric": metric,
              "budget_seconds_total": before + budget,
              "val": best.value, "params": params, "best_trial": best.number,
              "trials": states, "search_seconds_this_session": searched,
              "budget_seconds": budget, "refit_seconds": seconds, "threads": threads,
              "test": {k: v for k, v in metrics.items() if "@" in k},
              "env": peers.environment(threads)}
    tmp = folder / f"{method}.json.tmp"
    tmp.write_text(json.dumps(result, indent=1, default=float))
    tmp.replace(folder / f"{method}.json")
    keys = peers.metric_keys(protocol)
    print(f"{dataset} {method}: val {metric} {best.value:.4f}; test "
          + "  ".join(f"{k} {metrics[k]:.4f}" for k in keys)
          + f"  (refit {seconds:.1f}s, {params})", flush=True)
    return result


def _trials(method: str, dataset: str, folder: Path) -> int:
    """Trials already in the study: a continued study seeds its sampler anew, or its first
    random draws would repeat the last session's."""
    import optuna
    try:
        return len(optuna.load_study(study_name=f"{method}-{dataset}",
                                     storage=f"sqlite:///{folder / (method + '.db')}").trials)
    except KeyError:  # no such study yet
        return 0


def report(out: Path) -> str:
    """OUT/results.md: a table per dataset from OUT/*/*.json."""
    lines: list[str] = []
    for dataset in DATASETS:
        results = [json.loads(p.read_text()) for p in sorted((out / dataset).glob("*.json"))]
        if not results:
            continue
        keys = peers.metric_keys(results[0]["protocol"])
        lines += [f"**{dataset}** ({'given split' if results[0]['protocol'] == 'given' else 'fold 0 of 4'})",
                  "", "| method | settings (chosen on validation) | val " + results[0]["metric"]
                  + " | " + " | ".join(f"test {k}" for k in keys)
                  + " | budget min | refit s | trials (complete/pruned) |",
                  "|---|---|---|" + "---|" * len(keys) + "---|---|---|"]
        for r in results:
            p = r["params"]
            count = {"als": "iterations", "warp": "epochs"}.get(r["method"])
            shown = ", ".join(f"{k} {_fmt(v)}" for k, v in p.items() if k != "count")
            shown += f", {count} {p['count']}" if count else ""
            t = r["trials"]
            lines.append(f"| {r['method']} | {shown} | {r['val']:.4f} | "
                         + " | ".join(f"{r['test'][k]:.4f}" for k in keys)
                         + f" | {r.get('budget_seconds_total', r['budget_seconds']) / 60:.0f}"
                         f" | {r['refit_seconds']:.1f} | {t.get('complete', 0)}/{t.get('pruned', 0)} |")
        lines.append("")
    text = "\n".join(lines)
    (out / "results.md").write_text(text)
    return text


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _budget(text: str) -> float:
    from negspace.tuning.study import parse_budget
    return parse_budget(text)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", nargs="+", default=["movielens-1m-lcfn"], choices=DATASETS)
    p.add_argument("--methods", nargs="+", default=["als", "warp"], choices=["als", "warp", "ease"])
    p.add_argument("--budget", default="10m", help="search time per (dataset, method), e.g. 10m")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/tune-peers")
    p.add_argument("--report", action="store_true", help="only rebuild the tables")
    args = p.parse_args(argv)
    out = Path(args.out)
    if not args.report:
        torch.set_num_threads(args.threads)
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        for dataset in args.datasets:
            for method in args.methods:
                print(f"{dataset} {method}: searching {args.budget} ...", flush=True)
                try:
                    study_for(method, dataset, out, _budget(args.budget), args.threads,
                              args.seed)
                except ValueError as e:  # EASE on data too large for it: one line, go on
                    print(f"  skipped: {e}", flush=True)
    print(report(out))


if __name__ == "__main__":
    main()
