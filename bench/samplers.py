"""Sampler and training-step timings at Book-Crossing's catalogue size (127,339 items, d = 128).

Run:  .venv/bin/python bench/samplers.py [--quick] [--check] [--out FILE]

Prints milliseconds per batch (median over repeated timings after warm-up) for each sampler, for a
plain 2-stage sampler written as the paper's released code does it (a Python loop per row, numpy
choice with probabilities, retries on positives), and for a full training step (sampling + forward
+ backward + SparseAdam step). Ratios are taken from the same run.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable

import numpy as np
import torch

from negspace.data.interactions import Interactions
from negspace.models import CML
from negspace.samplers import PopularitySampler, TwoStageSampler, UniformSampler
from negspace.samplers.popularity import popularity_weights
from negspace.training.objective import Objective
from negspace.training.optim import SparseFriendlyAdam

N_ITEMS = 127_339  # Book-Crossing in Tran et al.
N_USERS = 3_600
N_INTERACTIONS = 240_000
DIM = 128
N_CANDIDATES = 2_000
BETA = 0.8  # the paper's popularity exponent on Book-Crossing


def synthetic_interactions(seed: int = 0) -> Interactions:
    """Zipf-like item popularity, log-normal user activity, ~240k distinct (user, item) pairs."""
    rng = np.random.default_rng(seed)
    item_p = 1.0 / (np.arange(N_ITEMS) + 10.0) ** 0.9
    item_p /= item_p.sum()
    item_p = item_p[rng.permutation(N_ITEMS)]  # popularity unrelated to the index
    activity = rng.lognormal(0.0, 1.0, N_USERS)
    # draw a little more than needed: duplicate pairs are merged by from_indices
    users = rng.choice(N_USERS, size=int(N_INTERACTIONS * 1.08), p=activity / activity.sum())
    items = rng.choice(N_ITEMS, size=len(users), p=item_p)
    inter = Interactions.from_indices(users, items, np.arange(N_USERS), np.arange(N_ITEMS))
    return inter.binarized()


class PlainTwoStage:
    """2-stage sampling written plainly, as the paper's released code does it.

    Stage 1: np.random.choice(n_items, C, replace=False, p=popularity). Stage 2, per row: the
    inverse-density weights over the C candidates with numpy, np.random.choice(candidates, N,
    p=weights, replace=False), then a retry loop that redraws a negative while it is one of the
    user's positives (at most n_try times). Unlike the released code the weights are computed in
    log space in float64 and the row's own positive item gets weight 0, so it neither overflows
    into NaN nor draws the positive itself every time; otherwise the work per row is the same.
    """

    def __init__(self, train: Interactions, n_candidates: int, beta: float, seed: int = 0,
                 n_try: int = 10) -> None:
        w = popularity_weights(train, beta)
        self.p = w / w.sum()
        self.n_items = train.n_items
        self.n_candidates = n_candidates
        self.n_try = n_try
        self.random = np.random.RandomState(seed)
        ip, ix = train.indptr, train.indices
        self.user_items = [set(ix[ip[u]:ip[u + 1]].tolist()) for u in range(train.n_users)]

    def sample(self, users: np.ndarray, items: np.ndarray, n: int, model: Any) -> np.ndarray:
        rnd = self.random
        cand = rnd.choice(self.n_items, size=self.n_candidates, replace=False, p=self.p)
        with torch.no_grad():
            pos_vecs = model.item_vectors(torch.from_numpy(items)).numpy()
            cand_vecs = model.item_vectors(torch.from_numpy(cand)).numpy()
        sims = pos_vecs @ cand_vecs.T
        dim = pos_vecs.shape[1]
        out = np.empty((len(users), n), np.int64)
        for i, (uid, item) in enumerate(zip(users.tolist(), items.tolist())):
            s = sims[i].astype(np.float64)
            mask = (s > 0) & (cand != item)
            log_w = np.full(len(cand), -np.inf)
            sc = np.minimum(s[mask], 1.0 - 1e-6)
            log_w[mask] = -(dim - 3) / 2.0 * np.log1p(-np.square(sc))
            weights = None  # as the released code when no weight is left: uniform
            if np.count_nonzero(mask) >= n:
                weights = np.exp(log_w - log_w.max())
                if np.count_nonzero(weights) >= n:  # else np.random.choice refuses
                    weights /= weights.sum()
                else:
                    weights = None
            negs = rnd.choice(cand, size=n, replace=False, p=weights)
            positives = self.user_items[uid]
            for j in range(n):
                tries = 0
                while negs[j] in positives and tries < self.n_try:
                    negs[j] = rnd.choice(cand, p=weights)
                    tries += 1
            out[i] = negs
        return out


def interleaved_ms(fns: dict[str, Callable[[], Any]], warmup: int, repeats: int,
                   budget_s: float, burst: int = 4) -> dict[str, float]:
    """Median wall time (ms) of each callable. Rounds visit the callables in turn, so that load
    from other processes on a shared machine hits all of them alike; in each round a callable
    runs `burst` times back to back, as in a training loop, and the first call of the burst
    (cold caches after the other callables) is not counted. Stops after `repeats` rounds or once
    budget_s has passed (at least 3 rounds)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    start = time.perf_counter()
    rounds = 0
    while rounds < repeats and (rounds < 3 or time.perf_counter() - start < budget_s):
        for name, fn in fns.items():
            for i in range(burst):
                t0 = time.perf_counter()
                fn()
                if i:
                    times[name].append(time.perf_counter() - t0)
        rounds += 1
    return {name: 1e3 * statistics.median(ts) for name, ts in times.items()}


def make_step(model: CML, optimizer: SparseFriendlyAdam, objective: Objective, sampler: Any,
              users: np.ndarray, items: np.ndarray, n: int) -> Callable[[], float]:
    u_t, i_t = torch.from_numpy(users), torch.from_numpy(items)

    def step() -> float:
        neg = sampler.sample(users, items, n, model)
        loss = objective(model, u_t, i_t, torch.from_numpy(neg))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step


def _chi2_same(a: np.ndarray, b: np.ndarray) -> float:
    """p-value of a chi-square test that two samples of item ids share one distribution (cells
    with fewer than 10 draws in all are pooled)."""
    from scipy.stats import chi2_contingency

    ids, inv = np.unique(np.concatenate([a, b]), return_inverse=True)
    ca = np.bincount(inv[: len(a)], minlength=len(ids))
    cb = np.bincount(inv[len(a):], minlength=len(ids))
    big = ca + cb >= 10
    table = np.array([np.append(ca[big], ca[~big].sum()), np.append(cb[big], cb[~big].sum())])
    table = table[:, table.sum(axis=0) > 0]
    return float(chi2_contingency(table)[1]) if table.shape[1] > 1 else 1.0


def check_distribution(train: Interactions, seed: int, n: int = 5, rows: int = 2,
                       calls: int = 3, batch: int = 4096) -> list[str]:
    """TwoStageSampler against a float64 Gumbel-top-n reference at the benchmark's scale.

    Stage 1 is fixed (one candidate set), so that the draws of a row are independent; for a few
    (user, positive) rows, `calls` batches of `batch` copies of the row are sampled, and the
    reference takes the top n of float64 log weights (s < 0 and the user's positives at -inf)
    plus Gumbel noise. One chi-square test per position of the n negatives. Two models: the
    random initialisation (flat weights) and items pulled into 20 tight clusters (s up to 0.999:
    weights spanning thousands of nats, which exercises the exact path and the exp floor).
    """
    rng = np.random.default_rng(seed + 7)
    gen = torch.Generator().manual_seed(seed + 7)
    torch.manual_seed(seed + 7)  # the random initialisation of the models below
    pairs_u, pairs_i = train.pairs()
    lines = []
    for kind in ("random init", "20 tight clusters"):
        model = CML(train.n_users, train.n_items, DIM)
        if kind != "random init":
            with torch.no_grad():
                centres = torch.randn(20, DIM, generator=gen)
                noise = torch.randn(train.n_items, DIM, generator=gen)
                model.items.weight.copy_(centres[torch.arange(train.n_items) % 20] + 0.05 * noise)
        sampler = TwoStageSampler(N_CANDIDATES, beta=BETA, seed=seed + 3).fit(train)
        cand = sampler.candidates()
        sampler.candidates = lambda: cand  # type: ignore[method-assign]
        v = torch.nn.functional.normalize(model.items.weight.detach().double(), dim=-1)
        for _ in range(rows):
            k = int(rng.integers(train.nnz))
            user, item = int(pairs_u[k]), int(pairs_i[k])
            ours = np.concatenate([sampler.sample(np.full(batch, user), np.full(batch, item), n,
                                                  model) for _ in range(calls)])
            s = (v[item] @ v[torch.from_numpy(cand)].T).numpy()
            with np.errstate(divide="ignore"):
                lw = np.where(s >= 0, -(DIM - 3) / 2 * np.log1p(-np.minimum(s, 1 - 1e-6) ** 2),
                              -np.inf)
            lw[train.contains(np.full(len(cand), user), cand)] = -np.inf
            ref = np.empty_like(ours)
            for lo in range(0, len(ours), 1024):
                keys = lw + rng.gumbel(size=(min(1024, len(ours) - lo), len(cand)))
                top = np.argpartition(-keys, n, axis=1)[:, :n]
                order = np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1)
                ref[lo:lo + len(top)] = cand[np.take_along_axis(top, order, axis=1)]
            p_top = np.sort(np.exp(lw - lw.max()) / np.exp(lw - lw.max()).sum())[::-1][:3]
            pvals = [_chi2_same(ours[:, j], ref[:, j]) for j in range(n)]
            lines.append(f"| {kind} | {user} | {item} | {', '.join(f'{p:.3f}' for p in p_top)} | "
                         + ", ".join(f"{p:.2f}" for p in pvals) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few repeats, for a smoke run")
    ap.add_argument("--out", help="also write the table as Markdown to this file")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", action="store_true",
                    help="also compare the 2-stage draws with a float64 Gumbel-top-N reference")
    args = ap.parse_args(argv)

    warmup, repeats, budget = (1, 3, 2.0) if args.quick else (1, 15, 25.0)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    train = synthetic_interactions(args.seed)
    pairs_u, pairs_i = train.pairs()
    print(f"data: {train.n_users} users, {train.n_items} items, {train.nnz} interactions "
          f"(built in {time.perf_counter() - t0:.1f} s); d = {DIM}, C = {N_CANDIDATES}, "
          f"beta = {BETA}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} cpus; mode = {'quick' if args.quick else 'full'}", flush=True)
    load_start = os.getloadavg()[0]
    if load_start > 0.5:
        print(f"warning: load average {load_start:.2f} before starting: on a shared machine other "
              "processes slow down the multi-threaded torch parts much more than the "
              "single-threaded numpy ones, so ratios against the plain sampler shrink", flush=True)

    model = CML(train.n_users, train.n_items, DIM)
    samplers: dict[str, Any] = {
        "uniform": UniformSampler(seed=1).fit(train),
        "popularity": PopularitySampler(beta=BETA, seed=1).fit(train),
        "two-stage": TwoStageSampler(N_CANDIDATES, beta=BETA, seed=1).fit(train),
        "two-stage-released": TwoStageSampler(N_CANDIDATES, beta=BETA, released=True,
                                              seed=1).fit(train),
        "two-stage plain": PlainTwoStage(train, N_CANDIDATES, BETA, seed=1),
    }
    rng = np.random.default_rng(args.seed + 1)
    rows: list[tuple[int, int, dict[str, float]]] = []
    for batch in (256, 4096):
        for n in (1, 5):
            idx = rng.integers(0, train.nnz, batch)
            users, items = pairs_u[idx], pairs_i[idx]
            fns: dict[str, Callable[[], Any]] = {
                name: (lambda s=sampler: s.sample(users, items, n, model))
                for name, sampler in samplers.items()}
            for name in ("uniform", "two-stage"):
                step_model = CML(train.n_users, train.n_items, DIM)
                step_model.load_state_dict(model.state_dict())
                opt = SparseFriendlyAdam(step_model, lr=1e-4)
                objective = Objective(loss="triplet", gor_weight=0.001)
                sampler = (TwoStageSampler(N_CANDIDATES, beta=BETA, seed=2) if name == "two-stage"
                           else UniformSampler(seed=2)).fit(train)
                fns[f"step {name}"] = make_step(step_model, opt, objective, sampler, users,
                                                items, n)
            res = interleaved_ms(fns, warmup, repeats, budget)
            rows.append((batch, n, res))
            print(f"B={batch:5d} N={n}: " + ", ".join(f"{k} {v:.2f}" for k, v in res.items()),
                  flush=True)

    names = list(rows[0][2])
    header = "| B | N | " + " | ".join(names) + " | plain / two-stage | step two-stage / uniform |"
    sep = "|" + "---|" * (len(names) + 4)
    lines = [header, sep]
    for batch, n, res in rows:
        speedup = res["two-stage plain"] / res["two-stage"]
        step_ratio = res["step two-stage"] / res["step uniform"]
        lines.append(f"| {batch} | {n} | " + " | ".join(f"{res[k]:.2f}" for k in names)
                     + f" | {speedup:.1f}x | {step_ratio:.2f}x |")
    speedups = [res["two-stage plain"] / res["two-stage"] for _, _, res in rows]
    step_ratios = [res["step two-stage"] / res["step uniform"] for _, _, res in rows]
    lines += ["", f"Targets: plain / two-stage >= 5x (lowest here {min(speedups):.1f}x); "
              f"two-stage step / uniform step <= 2.5x (highest here {max(step_ratios):.2f}x)."]
    table = "\n".join(lines)
    check = []
    if args.check:
        check = ["| model | user | positive | largest first-draw probabilities | "
                 "chi-square p-value per position (N = 5) |", "|---|---|---|---|---|"]
        check += check_distribution(train, args.seed)
    total = time.perf_counter() - t0
    print()
    print("milliseconds per batch (median); step = sampling + forward + backward + SparseAdam step")
    print(table)
    if check:
        print("\n2-stage draws against a float64 Gumbel-top-N reference (fixed candidates, "
              "12,288 draws of one row each)")
        print("\n".join(check))
    print(f"\ntotal benchmark time {total:.0f} s")
    if args.out:
        with open(args.out, "w") as f:
            f.write(f"Command: `{' '.join(['.venv/bin/python'] + sys.argv)}`  \n")
            f.write(f"Machine: {platform.processor() or platform.machine()}, "
                    f"{os.cpu_count()} cpus, "
                    f"torch {torch.__version__} ({torch.get_num_threads()} threads); load average "
                    f"{load_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end  \n")
            f.write(f"Data: {train.n_users} users, {train.n_items} items, {train.nnz} interactions "
                    f"(synthetic, Zipf-like popularity); d = {DIM}, C = {N_CANDIDATES}, "
                    f"beta = {BETA}\n\n")
            f.write("Milliseconds per batch (median); step = sampling + forward + backward + "
                    "SparseAdam step.\n\n")
            f.write(table + "\n")
            if check:
                f.write("\n2-stage draws against a float64 Gumbel-top-N reference (fixed "
                        "candidates, 12,288 draws of one row each):\n\n" + "\n".join(check) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
