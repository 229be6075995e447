"""negspace against implicit (ALS, BPR), LightFM (WARP) and EASE on a CPU, scored by negspace.

Run (needs the bench extra: `.venv/bin/pip install -e ".[bench]"`):

    .venv/bin/python bench/peers.py                       # every dataset and method, 2 threads
    .venv/bin/python bench/peers.py --datasets movielens-1m-lcfn --methods als bpr warp
    .venv/bin/python bench/peers.py --tune                # peers' settings on ML-1M validation only
    .venv/bin/python bench/peers.py --report              # tables and plots from the saved results

Protocol. Each dataset is loaded with negspace's loaders and split as `negspace train` splits it
(given split: the published train/test; k-fold: fold 0 of 4, seed 0). Peers get the training
CSR (users x items, binary), train with `--threads` threads, and are scored by
`negspace.evaluation.evaluate` through a score_fn over their factors (implicit: user_factors @
item_factors.T, which for BPR includes the item bias column; LightFM: user_embeddings @
item_embeddings.T + item_biases). negspace's models train through `run_training`, with early
stopping on a validation split carved from the training data (10% of each user's items), as
`negspace train` does; their time is the training time up to the epoch kept (validation passes
excluded), and `total_seconds` is every epoch run. Peers' times are their `fit` calls only.
A method named METHOD-refit trains negspace's METHOD as the peers are trained: on all the training
data for the number of epochs METHOD's early-stopped run kept (run METHOD first), last model kept;
its seconds are that fit's epochs.
Threads: peers get `--threads`; negspace's models run as `negspace train` does by default, one
torch thread for the steps with the next batch's negatives drawn on a second core (2-stage and
the memory bank draw in line), and `--threads` torch threads for validation and evaluation.

EASE (closed form, numpy/torch only) chooses its lambda on a validation split of each dataset's
training data (10% per user, as `negspace train` carves it; half decades from 1 to 1e5, then the
best one's quarter-decade neighbours), is fitted on all the training data and read on test once;
its seconds are that fit's. It refuses data above 20,000 users and 20,000 items (a dense system
of the smaller side is solved). GF-CF (bench/graph_filter.py, a training-free graph filter, not
a vector model) chooses its alpha the same way.
Settings: PEERS and NEGSPACE below, in one place. The peers' settings were chosen with `--tune`
on a validation split of movielens-1m-lcfn's training data (never its test set) and are used
unchanged on the other datasets; dimension d = 64 on the given splits, 128 on k-fold.

Output (default runs/peers, resumable): one JSON per (dataset, method) in OUT/DATASET/METHOD.json
(a finished result is never recomputed: delete it to rerun), OUT/results.csv, OUT/results.md and
OUT/DATASET.png (quality against training seconds). `--tune` writes OUT/tune/*.json and
OUT/tune.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any, Callable

import negspace  # noqa: F401  -- first: its OpenMP setting must precede torch
import numpy as np
import scipy.sparse as sp
import torch

from negspace.data.interactions import Interactions
from negspace.data.loaders import load_dataset
from negspace.data.splits import holdout_split, kfold_split
from negspace.evaluation.evaluator import evaluate

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/: also when loaded by path
from graph_filter import GraphFilter, run_gfcf  # noqa: E402,F401 -- GraphFilter: for its tests

DATASETS = {  # name: (protocol, d)
    "movielens-1m-lcfn": ("given", 64),
    "lastfm-hetrec2011": ("kfold", 128),
    "amazon-cds-bgcf": ("given", 64),
    "book-crossing-caserec-subset": ("kfold", 128),
    "gowalla-lightgcn": ("given", 64),
}
TUNE_DATASET = "movielens-1m-lcfn"

# Peers' settings (chosen by --tune on ML-1M validation; see docs/results.md, "Peers (issue 6)").
PEERS: dict[str, dict[str, Any]] = {
    "als": {"regularization": 30.0, "alpha": 5.0, "iterations": 30},
    "bpr": {"learning_rate": 0.01, "regularization": 0.01, "iterations": 50},
    "warp": {"learning_rate": 0.05, "item_alpha": 0.0, "user_alpha": 0.0, "max_sampled": 50,
             "epochs": 8},
}
# The small grids --tune tries (factors fixed at 64); the iteration count (epochs for WARP) is
# chosen along the way, validating at TUNE_CHECKPOINTS (every epoch for WARP).
TUNE_GRID: dict[str, list[dict[str, Any]]] = {
    "als": [{"regularization": r, "alpha": a, "iterations": 30}
            for r in (0.01, 0.1, 1.0) for a in (1.0, 10.0, 40.0)]
           + [{"regularization": r, "alpha": a, "iterations": 30}  # second round: stronger
              for r in (3.0, 10.0, 30.0) for a in (5.0, 10.0, 20.0)]  # regularisation
           + [{"regularization": r, "alpha": a, "iterations": 50}  # third round: more still
              for r in (30.0, 100.0, 300.0) for a in (2.0, 5.0)],
    "bpr": [{"learning_rate": 0.05, "regularization": r, "iterations": 200} for r in (0.001, 0.01)]
           + [{"learning_rate": lr, "regularization": 0.01, "iterations": 200}
              for lr in (0.01, 0.02)]  # second round: best at 25 of 200 above, so slower
           + [{"learning_rate": 0.1, "regularization": r, "iterations": 200} for r in (0.001, 0.01)],
    "warp": [{"learning_rate": lr, "item_alpha": a, "user_alpha": a, "max_sampled": 10,
              "epochs": 30} for lr in (0.01, 0.05) for a in (0.0, 1e-6)]
            + [{"learning_rate": 0.1, "item_alpha": 0.0, "user_alpha": 0.0, "max_sampled": 10,
                "epochs": 30},   # second round: faster, and more draws per positive
               {"learning_rate": 0.05, "item_alpha": 0.0, "user_alpha": 0.0, "max_sampled": 50,
                "epochs": 30}],
}

# negspace's models: TrainConfig options (docs/results.md: uniform negatives are the strongest for
# CML here; the softened 2-stage sampler, T = 64 and cap 0.875, matched them on Last.fm; MML with
# many shared negatives is issue 4's best MF; the two-tower memory bank is issue 3's CBNS).
NEGSPACE: dict[str, dict[str, Any]] = {
    "cml-2stage": {"model": "cml", "sampler": "two-stage", "two_stage_temperature": 64.0,
                   "two_stage_cap": 0.875, "negatives": 5, "batch_size": 1024, "lr": 0.01,
                   "epochs": 20, "patience": 3, "min_epochs": 5},
    # the uniform grid's best on ML-1M validation (configs/grid-cml-uniform-ml1m.toml: lr 0.03 and
    # N = 10 over lr 0.01 and N = 5), carried over to the 2-stage sampler
    "cml-2stage-n10": {"model": "cml", "sampler": "two-stage", "two_stage_temperature": 64.0,
                       "two_stage_cap": 0.875, "negatives": 10, "batch_size": 1024, "lr": 0.03,
                       "epochs": 20, "patience": 3, "min_epochs": 5},
    # the library's default sampler (uniform) with CML: no model reads while sampling, so the
    # draw runs in the background and the compiled step applies (issue 6)
    "cml-uniform": {"model": "cml", "sampler": "uniform", "negatives": 5, "batch_size": 1024,
                    "lr": 0.01, "epochs": 30, "patience": 3, "min_epochs": 5},
    "mf-mml": {"model": "mf", "loss": "mml", "sampler": "uniform", "negative_mode": "shared",
               "negatives": 800, "batch_size": 1024, "lr": 1e-3, "epochs": 20, "patience": 3,
               "min_epochs": 2},
    # issue 4's best model on Amazon-CDs (its grid stopped at 6 epochs, still improving)
    "simplex-mml": {"model": "simplex", "loss": "mml", "sampler": "uniform",
                    "negative_mode": "shared", "negatives": 800, "batch_size": 1024, "lr": 1e-3,
                    "epochs": 20, "patience": 3, "min_epochs": 2},
    # issue 3: the paper's one softmax over batch + bank collapses (Last.fm MAP@50 0.124 here);
    # --split-bank-gradient is its remedy (the bank trains the user tower only)
    "two-tower-bank": {"model": "two-tower", "loss": "softmax", "sampler": "memory-bank",
                       "bank_size": 2048, "warmup": 100, "batch_size": 1024, "lr": 1e-3,
                       "epochs": 10, "patience": 3, "min_epochs": 3, "side_features": False,
                       "split_bank_gradient": True},
}
TUNE_CHECKPOINTS = {"als": (3, 5, 10, 15, 20, 30, 40, 50), "bpr": (25, 50, 100, 150, 200)}
EASE = "ease"  # closed form, no dimension; its lambda is chosen on each dataset's validation split
GFCF = "gf-cf"  # training-free graph filter (bench/graph_filter.py); alpha chosen on validation
PEER_METHODS = (*PEERS, EASE, GFCF)
REFIT = "-refit"  # a negspace model trained as the peers are: all training data, epochs fixed
METHODS = (*PEER_METHODS, *NEGSPACE, *(m + REFIT for m in NEGSPACE))


def metric_keys(protocol: str) -> list[str]:
    return (["recall@20", "ndcg@20"] if protocol == "given"
            else ["map@50", "ndcg@50", "mmr@50", "recall@50"])


# ---------------------------------------------------------------------------------------------
# Data

def split(name: str, seed: int = 0) -> tuple[Interactions, Interactions]:
    """(train, test) exactly as `negspace train` splits the dataset (fold 0 for k-fold)."""
    data = load_dataset(name)
    if data.protocol == "given":
        return data.interactions.binarized(), data.test.binarized()
    return kfold_split(data.interactions.binarized(), 4, 0, seed)


def csr(inter: Interactions) -> sp.csr_matrix:
    m = inter.matrix.tocsr().astype(np.float32)
    m.data[:] = 1.0
    return m


# ---------------------------------------------------------------------------------------------
# Peers: each returns (user matrix, item matrix, item bias or None) after a timed fit

class Timer:
    """Wall and process CPU seconds of a block (CPU / wall ~ busy cores)."""

    def __enter__(self) -> "Timer":
        self.w0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.w0
        self.cpu = time.process_time() - self.c0


class Checkpoints:
    """Tuning: validates a peer at chosen iterations from inside its fit callback; the time
    spent validating is taken out of the training seconds."""

    def __init__(self, at: set[int], validate: Callable[[int, float], None]):
        self.at, self.validate, self.excluded = at, validate, 0.0

    def start(self, model: Any) -> Callable[..., None]:
        self.model, self.t0 = model, time.perf_counter()

        def callback(iteration: int, *_: object) -> None:
            if iteration + 1 in self.at:
                e0 = time.perf_counter()
                self.validate(iteration + 1, e0 - self.t0 - self.excluded)
                self.excluded += time.perf_counter() - e0
        return callback


def fit_als(train: sp.csr_matrix, dim: int, threads: int, seed: int, p: dict[str, Any],
            checkpoints: Checkpoints | None = None):
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1, "blas"):  # implicit parallelises itself; BLAS threads fight it
        model = AlternatingLeastSquares(factors=dim, regularization=p["regularization"],
                                        alpha=p["alpha"], iterations=p["iterations"],
                                        num_threads=threads, random_state=seed,
                                        calculate_training_loss=False)
        return _fit_implicit(model, train, checkpoints)


def fit_bpr(train: sp.csr_matrix, dim: int, threads: int, seed: int, p: dict[str, Any],
            checkpoints: Checkpoints | None = None):
    from implicit.cpu.bpr import BayesianPersonalizedRanking
    # implicit keeps one extra column for the item bias (the user side holds 1 there)
    model = BayesianPersonalizedRanking(factors=dim, learning_rate=p["learning_rate"],
                                        regularization=p["regularization"],
                                        iterations=p["iterations"], num_threads=threads,
                                        random_state=seed)
    return _fit_implicit(model, train, checkpoints)


def _fit_implicit(model, train: sp.csr_matrix, checkpoints: Checkpoints | None):
    """Times an implicit model's fit; its factors, no item biases, and the timer."""
    with Timer() as t:
        model.fit(train, show_progress=False,
                  callback=checkpoints.start(model) if checkpoints else None)
    return np.asarray(model.user_factors), np.asarray(model.item_factors), None, t


def fit_warp(train: sp.csr_matrix, dim: int, threads: int, seed: int, p: dict[str, Any],
             on_epoch: Callable[[int, tuple], None] | None = None):
    from lightfm import LightFM
    model = LightFM(no_components=dim, loss="warp", learning_rate=p["learning_rate"],
                    item_alpha=p["item_alpha"], user_alpha=p["user_alpha"],
                    max_sampled=p["max_sampled"], random_state=seed)
    coo = train.tocoo()
    with Timer() as t:
        if on_epoch is None:
            model.fit(coo, epochs=p["epochs"], num_threads=threads)
    if on_epoch is not None:  # tuning: one epoch at a time, validated after each
        t.wall = t.cpu = 0.0
        for epoch in range(1, p["epochs"] + 1):
            with Timer() as step:
                model.fit_partial(coo, epochs=1, num_threads=threads)
            t.wall += step.wall
            t.cpu += step.cpu
            on_epoch(epoch, (model.user_embeddings, model.item_embeddings, model.item_biases, t))
    return model.user_embeddings, model.item_embeddings, model.item_biases, t


FITS = {"als": fit_als, "bpr": fit_bpr, "warp": fit_warp}


def factor_score_fn(users: np.ndarray, items: np.ndarray, bias: np.ndarray | None):
    """score_fn for negspace's evaluator: rows of users @ items.T (+ item bias)."""
    u = torch.from_numpy(np.ascontiguousarray(users, np.float32))
    v = torch.from_numpy(np.ascontiguousarray(items, np.float32))
    b = None if bias is None else torch.from_numpy(np.ascontiguousarray(bias, np.float32))

    def score(rows: torch.Tensor) -> torch.Tensor:
        s = u[torch.as_tensor(rows, dtype=torch.long)] @ v.T
        return s + b if b is not None else s
    return score


def run_peer(method: str, train: Interactions, test: Interactions, dim: int, threads: int,
             seed: int, params: dict[str, Any]) -> dict[str, Any]:
    users, items, bias, t = FITS[method](csr(train), dim, threads, seed, params)
    metrics = evaluate(factor_score_fn(users, items, bias), train, test, ks=(20, 50))
    return {"metrics": metrics, "train_seconds": t.wall, "cpu_seconds": t.cpu,
            "total_seconds": t.wall, "params": params}


# ---------------------------------------------------------------------------------------------
# EASE (Steck, 2019): a closed form, its one setting chosen on validation

EASE_MAX = 20_000  # EASE solves a dense min(users, items) square system: 3.2 GB (float64) at 20k
EASE_LAMBDAS = tuple(10 ** (k / 2) for k in range(0, 11))  # 1 .. 1e5, half decades


def ease_fits(n_users: int, n_items: int) -> None:
    """Raises ValueError, in one line, for data too large for EASE here."""
    if min(n_users, n_items) > EASE_MAX:
        raise ValueError(f"EASE solves a dense min(users, items) square system; {n_users} users "
                         f"x {n_items} items is above {EASE_MAX} on both sides "
                         f"({min(n_users, n_items) ** 2 * 8 / 1e9:.0f} GB): refused")


class Ease:
    """B = I - P / diag(P) with P = (X^T X + lam I)^-1 (B's diagonal is then 0); scores X B.

    With fewer users than items the same scores come from the users' side (Woodbury):
    P = (I - X^T K^-1 X) / lam with K = X X^T + lam I, so the system solved is the smaller of
    the two and B is never formed. Above EASE_MAX on both sides it refuses (ValueError)."""

    def __init__(self, train: sp.csr_matrix, lam: float):
        n_users, n_items = train.shape
        ease_fits(n_users, n_items)
        if lam <= 0:
            raise ValueError(f"EASE's lambda must be > 0, got {lam}")
        self.x, self.lam = train.astype(np.float64).tocsr(), lam
        self.primal = n_items <= n_users
        if self.primal:
            g = torch.from_numpy((self.x.T @ self.x).toarray())
            g.diagonal().add_(lam)
            self.p = torch.linalg.inv(g)
            self.d = self.p.diagonal().clone()
        else:
            k = torch.from_numpy((self.x @ self.x.T).toarray())
            k.diagonal().add_(lam)
            self.k_inv = torch.linalg.inv(k)
            # diag(P)_j = (1 - sum_u (K^-1 X)_uj X_uj) / lam, by blocks of users
            quad = np.zeros(n_items)
            for a in range(0, n_users, 2048):
                kx = self._times_x(self.k_inv[a:a + 2048])
                quad += np.asarray(self.x[a:a + 2048].multiply(kx.numpy()).sum(0)).ravel()
            self.d = torch.from_numpy((1.0 - quad) / lam)

    def _times_x(self, m: torch.Tensor) -> torch.Tensor:
        """m @ X for a dense m (rows x users)."""
        return torch.from_numpy(np.ascontiguousarray((self.x.T @ m.numpy().T).T))

    def scores(self, rows: np.ndarray) -> torch.Tensor:
        """X[rows] B, as float32."""
        xr = self.x[rows]
        dense = torch.from_numpy(xr.toarray())
        if self.primal:
            xp = dense @ self.p
        else:  # X_r P = (X_r - (X_r X^T) K^-1 X) / lam
            xxt = torch.from_numpy((xr @ self.x.T).toarray())
            xp = (dense - self._times_x(xxt @ self.k_inv)) / self.lam
        return (dense - xp / self.d).float()

    def score_fn(self):
        return lambda rows: self.scores(np.asarray(rows, dtype=np.int64))


def choose_ease_lambda(fit_on: Interactions, validation: Interactions, metric: str,
                       lambdas: tuple[float, ...] = EASE_LAMBDAS) -> tuple[float, list[dict]]:
    """The lambda of `lambdas`, then of its quarter-decade neighbours, with the best validation
    `metric`; returns it and every (lambda, metric, fit seconds) tried."""
    x, rows = csr(fit_on), []

    def trial(lam: float) -> float:
        with Timer() as t:
            model = Ease(x, lam)
        value = evaluate(model.score_fn(), fit_on, validation, ks=(20, 50))[metric]
        rows.append({"lambda": lam, metric: value, "fit_seconds": t.wall})
        print(f"  ease lambda {lam:.4g}: validation {metric} {value:.4f} ({t.wall:.1f}s)",
              flush=True)
        return value
    best = max(lambdas, key=trial)
    for lam in (best * 10 ** -0.25, best * 10 ** 0.25):
        trial(lam)
    return max(rows, key=lambda r: r[metric])["lambda"], rows


def run_ease(train: Interactions, test: Interactions, protocol: str, seed: int,
             validation: float = 0.1) -> dict[str, Any]:
    """EASE with lambda chosen on a validation split carved as `negspace train` carves it, then
    fitted on all the training data; the test split is read once."""
    metric = "recall@20" if protocol == "given" else "ndcg@50"
    ease_fits(train.n_users, train.n_items)  # refuse before the search
    fit_on, val = holdout_split(train, validation, seed)
    with Timer() as chosen:
        lam, rows = choose_ease_lambda(fit_on, val, metric)
    with Timer() as t:
        model = Ease(csr(train), lam)
    metrics = evaluate(model.score_fn(), train, test, ks=(20, 50))
    return {"metrics": metrics, "train_seconds": t.wall, "cpu_seconds": t.cpu,
            "total_seconds": t.wall, "selection_seconds": chosen.wall,
            "params": {"lambda": lam, "select_metric": metric}, "validation": rows}


# ---------------------------------------------------------------------------------------------
# negspace

def run_negspace(method: str, dataset: str, dim: int, threads: int, seed: int,
                 refit_epochs: int | None = None) -> dict[str, Any]:
    """Trains one of NEGSPACE's models as `negspace train` would. With `refit_epochs`, as the peers
    are trained instead: on all the training data (no validation split), for an epoch count
    chosen beforehand (the early-stopped run's best epoch), keeping the last model."""
    from negspace.pipeline.fit import run_training
    from negspace.config import make_config
    # threads None: negspace's default, one torch thread for the steps with the negatives drawn
    # on a second core, and torch's count (set to `threads` by run_all) for validation
    options = {**NEGSPACE[method], "dataset": dataset, "dim": dim, "threads": None,
               "seed": seed, "fold": 0, "progress": False}
    if refit_epochs is not None:
        options.update(validation=0.0, epochs=refit_epochs)
    c0 = time.process_time()
    out = run_training(make_config(options))
    cpu = time.process_time() - c0
    history = out.history
    best = int(out.metrics["best_epoch"]) if refit_epochs is None else len(history)
    to_best = sum(row["seconds"] for row in history[:best])
    total = sum(row["seconds"] for row in history)
    cpu_to_best = sum(row.get("cpu_seconds", 0.0) for row in history[:best])
    return {"metrics": {k: v for k, v in out.metrics.items() if k != "train_seconds"},
            "train_seconds": to_best, "total_seconds": total, "cpu_seconds": cpu_to_best,
            "cpu_seconds_run": cpu,
            "best_epoch": best, "epochs_run": len(history), "params": options,
            "history": history}


# ---------------------------------------------------------------------------------------------
# Commands

def environment(threads: int) -> dict[str, Any]:
    import subprocess
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parent).stdout.strip() or None
    out = {"threads": threads, "python": platform.python_version(), "torch": torch.__version__,
           "commit": commit,
           "cpus": os.cpu_count(), "loadavg_start": os.getloadavg()[0],
           "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    for pkg in ("implicit", "lightfm"):
        try:
            out[pkg] = __import__(pkg).__version__
        except Exception:  # noqa: BLE001 -- missing or versionless: say so
            out[pkg] = None
    return out


def run_all(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    for dataset in args.datasets:
        protocol, dim = DATASETS[dataset]
        folder = out / dataset
        folder.mkdir(parents=True, exist_ok=True)
        todo = [m for m in args.methods if not (folder / f"{m}.json").exists()]
        if not todo:
            continue
        train, test = (split(dataset, args.seed) if any(m in PEER_METHODS for m in todo)
                       else (None, None))
        for method in todo:
            print(f"{dataset} {method} ...", flush=True)
            if method == EASE:
                try:
                    result = run_ease(train, test, protocol, args.seed)
                except ValueError as e:  # too large: said in one line, the other methods go on
                    print(f"  skipped: {e}", flush=True)
                    continue
            elif method == GFCF:
                result = run_gfcf(train, test, protocol, args.seed)
            elif method in PEERS:
                result = run_peer(method, train, test, dim, args.threads, args.seed, PEERS[method])
            elif method.endswith(REFIT):
                chosen = folder / f"{method[:-len(REFIT)]}.json"
                if not chosen.exists():
                    print(f"  skipped: {chosen} (the early-stopped run that picks the epochs) "
                          f"is missing", flush=True)
                    continue
                epochs = int(json.loads(chosen.read_text())["best_epoch"])
                result = run_negspace(method[:-len(REFIT)], dataset, dim, args.threads,
                                      args.seed, refit_epochs=epochs)
            else:
                result = run_negspace(method, dataset, dim, args.threads, args.seed)
            result.update({"dataset": dataset, "method": method, "protocol": protocol, "dim": dim,
                           "env": environment(args.threads)})
            tmp = folder / f"{method}.json.tmp"
            tmp.write_text(json.dumps(result, indent=1, default=float))
            tmp.replace(folder / f"{method}.json")
            keys = metric_keys(protocol)
            shown = "  ".join(f"{k} {result['metrics'][k]:.4f}" for k in keys)
            print(f"  {shown}  train {result['train_seconds']:.1f}s", flush=True)
    report(out)


def tune(args: argparse.Namespace) -> None:
    """Peers' grids on a validation split of ML-1M's training data (10% per user, seed 0)."""
    torch.set_num_threads(args.threads)
    out = Path(args.out) / "tune"
    out.mkdir(parents=True, exist_ok=True)
    train, _ = split(TUNE_DATASET, args.seed)
    fit_on, val = holdout_split(train, 0.1, args.seed)
    dim = DATASETS[TUNE_DATASET][1]
    for method in args.methods:
        if method not in TUNE_GRID:
            continue
        for params in TUNE_GRID[method]:
            tag = method + "_" + "_".join(f"{k}={v}" for k, v in params.items())
            path = out / f"{tag}.json"
            if path.exists():
                continue
            rows = []
            if method == "warp":
                def on_epoch(epoch, state):
                    u, v, b, t = state
                    m = evaluate(factor_score_fn(u, v, b), fit_on, val, ks=(20,))
                    rows.append({"epochs": epoch, "recall@20": m["recall@20"],
                                 "ndcg@20": m["ndcg@20"], "seconds": t.wall})
                fit_warp(csr(fit_on), dim, args.threads, args.seed, params, on_epoch)
            else:
                holder: dict[str, Any] = {}

                def validate(iteration: int, seconds: float) -> None:
                    model = holder["cp"].model
                    m = evaluate(factor_score_fn(np.asarray(model.user_factors),
                                                 np.asarray(model.item_factors), None),
                                 fit_on, val, ks=(20,))
                    rows.append({"epochs": iteration, "recall@20": m["recall@20"],
                                 "ndcg@20": m["ndcg@20"], "seconds": seconds})
                holder["cp"] = Checkpoints(set(TUNE_CHECKPOINTS[method]), validate)
                FITS[method](csr(fit_on), dim, args.threads, args.seed, params, holder["cp"])
            best = max(rows, key=lambda r: r["recall@20"])
            print(f"{tag}: val recall@20 {best['recall@20']:.4f} ndcg@20 {best['ndcg@20']:.4f} "
                  f"({best['seconds']:.1f}s{', epoch ' + str(best['epochs']) if 'epochs' in best else ''})",
                  flush=True)
            path.write_text(json.dumps({"method": method, "params": params, "rows": rows},
                                       indent=1))
    lines = ["| method | settings | best iterations (epochs) | val recall@20 | val ndcg@20 | seconds |",
             "|---|---|---|---|---|---|"]
    for path in sorted(out.glob("*.json")):
        r = json.loads(path.read_text())
        best = max(r["rows"], key=lambda x: x["recall@20"])
        settings = ", ".join(f"{k} {v}" for k, v in r["params"].items()
                             if k not in ("epochs", "iterations"))
        lines.append(f"| {r['method']} | {settings} | {best.get('epochs', '-')} | "
                     f"{best['recall@20']:.4f} | {best['ndcg@20']:.4f} | {best['seconds']:.1f} |")
    (Path(args.out) / "tune.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def report(out: Path) -> None:
    """results.csv, results.md and one quality-vs-seconds plot per dataset from OUT/*/*.json."""
    import csv
    results = [json.loads(p.read_text()) for p in sorted(out.glob("*/*.json"))
               if p.parent.name in DATASETS]
    if not results:
        print(f"no results under {out}")
        return
    fields = ["dataset", "method", "recall@20", "ndcg@20", "map@50", "ndcg@50", "mmr@50",
              "recall@50", "train_seconds", "total_seconds", "cpu_per_wall", "best_epoch"]
    rows = []
    for r in results:
        m = r["metrics"]
        cpu = r.get("cpu_seconds")
        rows.append({"dataset": r["dataset"], "method": r["method"],
                     **{k: m.get(k) for k in fields[2:8]},
                     "train_seconds": r["train_seconds"], "total_seconds": r["total_seconds"],
                     "cpu_per_wall": (cpu / r["train_seconds"]) if cpu and r["train_seconds"]
                     else None, "best_epoch": r.get("best_epoch")})
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fields)
        w.writeheader()
        w.writerows(rows)
    md = []
    for dataset in DATASETS:
        sub = [r for r in rows if r["dataset"] == dataset]
        if not sub:
            continue
        protocol = DATASETS[dataset][0]
        keys = metric_keys(protocol)
        md += [f"**{dataset}** ({'given split' if protocol == 'given' else 'fold 0 of 4'}, "
               f"d = {DATASETS[dataset][1]})", "",
               "| method | " + " | ".join(keys) + " | train s | all epochs s | CPU/wall | best epoch |",
               "|---|" + "---|" * (len(keys) + 4)]
        order = {m: i for i, m in enumerate(METHODS)}
        for r in sorted(sub, key=lambda r: order.get(r["method"], 99)):
            cpw = f"{r['cpu_per_wall']:.2f}" if r["cpu_per_wall"] else "-"
            md.append(f"| {r['method']} | " + " | ".join(f"{r[k]:.4f}" for k in keys)
                      + f" | {r['train_seconds']:.1f} | {r['total_seconds']:.1f} | {cpw} | "
                      f"{r['best_epoch'] if r['best_epoch'] is not None else '-'} |")
        md.append("")
        plot(out / f"{dataset}.png", dataset, sub, keys[0])
    (out / "results.md").write_text("\n".join(md))
    print("\n".join(md))


def plot(path: Path, dataset: str, rows: list[dict], key: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        peer = r["method"] in PEER_METHODS
        ax.scatter(r["train_seconds"], r[key], marker="o" if peer else "*", s=60 if peer else 120)
        ax.annotate(r["method"], (r["train_seconds"], r[key]), textcoords="offset points",
                    xytext=(5, 3), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("training seconds (log)")
    ax.set_ylabel(key)
    ax.set_title(f"{dataset} (o peers, * negspace)", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/peers")
    p.add_argument("--tune", action="store_true", help="peers' grids on ML-1M validation")
    p.add_argument("--report", action="store_true", help="only rebuild tables and plots")
    args = p.parse_args(argv)
    if args.report:
        report(Path(args.out))
    elif args.tune:
        tune(args)
    else:
        run_all(args)


if __name__ == "__main__":
    sys.exit(main())
