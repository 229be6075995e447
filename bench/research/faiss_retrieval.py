"""Recall and speed of faiss retrieval against exact full ranking, on a finished run directory.

    python bench/research/faiss_retrieval.py RUN_DIR [--k 20] [--queries 10000] [--threads 1]

Times are CPU seconds of this process (run it with one thread). Every method filters each
user's training items exactly (faiss by over-fetching); recall@k is
|approximate top-k & exact top-k| / k averaged over the sampled users. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import time

import negspace  # noqa: F401  -- first: its OpenMP setting must precede torch
import numpy as np
import torch

from negspace.api import Recommender
from negspace.models.base import score_matrix
from negspace.retrieval import ann
from negspace.retrieval.topk import topk_items


def _timed(fn):
    """(result, CPU seconds of this process): with one thread this is the work done, unaffected
    by other processes sharing the cores (wall-clock time on a busy machine is not)."""
    t0 = time.process_time()
    out = fn()
    return out, time.process_time() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("run_dir")
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--queries", type=int, default=10000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    import faiss
    faiss.omp_set_num_threads(args.threads)
    torch.set_num_threads(args.threads)

    rec = Recommender.load(args.run_dir, index=False)
    train, u, v = rec.train, rec.user_vectors, rec.item_vectors
    rng = np.random.default_rng(args.seed)
    users = np.sort(rng.choice(train.n_users, min(args.queries, train.n_users), replace=False))
    q = u[users].numpy()
    print(f"{args.run_dir}: {train.n_users} users, {train.n_items} items, d={v.shape[1]}, "
          f"measure {rec.measure}; {len(users)} queries, k={args.k}, {args.threads} thread(s)\n")
    (exact, _), secs = _timed(lambda: topk_items(
        lambda r: score_matrix(u[r], v, rec.measure), users, args.k, exclude=train,
        chunk_size=1024))
    rows = [("exact (torch full ranking)", "-", 1.0, 1.0, len(users) / secs)]
    configs = [("flat", {}, {}), ("ivf", {}, {"nprobe": 8}), ("ivf", {}, {"nprobe": 32}),
               ("ivf", {}, {"nprobe": 128}),
               ("hnsw", {}, {"ef_search": 64}), ("hnsw", {}, {"ef_search": 256})]
    built: dict[str, tuple] = {}
    for kind, build_params, search_params in configs:
        if kind not in built:
            built[kind] = _timed(lambda: ann.build_index(v.numpy(), rec.measure, kind,
                                                         **build_params))
        index, build_secs = built[kind]
        (got, _), secs = _timed(lambda: ann.search(index, rec.measure, q, args.k, exclude=train,
                                                   rows=users, **search_params))
        recall = np.mean([len(set(a) & set(b)) / args.k for a, b in zip(got, exact)])
        same = float((got == exact).all(axis=1).mean())
        label = kind + "".join(f" {k}={val}" for k, val in search_params.items())
        rows.append((label, f"{build_secs:.1f}", recall, same, len(users) / secs))
    print(f"| method | build CPU s | recall@{args.k} vs exact | identical lists "
          "| queries per CPU s |")
    print("|---|---|---|---|---|")
    for label, build, recall, same, qps in rows:
        print(f"| {label} | {build} | {recall:.4f} | {same:.4f} | {qps:,.0f} |")


if __name__ == "__main__":
    main()
