"""The spectral start's randomized SVD against torch.svd_lowrank's, on the default's own split.

    python bench/research/spectral_svd.py --datasets movielens-1m-lcfn gowalla-lightgcn \
        [--threads 2]

For each data set: the default recipe's dimension for the data, the training rows the validated
run starts from (the test split and the validation interactions are never read), and both
randomized SVDs at the start's settings (float32, 2 power iterations, k + 10 columns). Prints
their seconds (the median of three), the energy each captures (the squared Frobenius norm of
R~ V: more is closer to the exact top-k subspace, never above it), the cosines of the principal
angles between the two subspaces (the smallest), and the validation Recall@20 of each start's
own low-pass scores before any training.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from negspace.config import make_config, with_default_recipe
from negspace.evaluation.evaluator import evaluate
from negspace.models.spectral import leading_item_vectors, low_pass_factors, normalised_matrix, torch_csr
from negspace.pipeline.fit import load_for
from negspace.pipeline.split import resolved_split


def torch_lowrank(normalised, k: int, seed: int) -> np.ndarray:
    """The start's SVD as it was: torch.svd_lowrank on the CSR matrix, seeded."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        _, _, v = torch.svd_lowrank(torch_csr(normalised, torch.float32),
                                    q=min(k + 10, min(normalised.shape)), niter=2)
    return v[:, :k].double().numpy()


def shipped(normalised, k: int, seed: int) -> np.ndarray:
    return leading_item_vectors(normalised, k, seed, niter=2, dtype=torch.float32)


def timed(fn, *args) -> tuple[np.ndarray, float]:
    times, out = [], None
    for _ in range(3):
        t = time.perf_counter()
        out = fn(*args)
        times.append(time.perf_counter() - t)
    return out, statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", required=True)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    for name in a.datasets:
        cfg = make_config(with_default_recipe({"dataset": name, "progress": False}))
        cfg, _, _, fit_on, validation = resolved_split(cfg, load_for(cfg))
        r, normalised, di = normalised_matrix(fit_on.matrix)
        k = min(cfg.dim, min(r.shape) - 1)
        results = {}
        for label, fn in (("torch.svd_lowrank", torch_lowrank), ("shipped", shipped)):
            v, seconds = timed(fn, normalised, k, cfg.seed)
            users, items = (torch.from_numpy(x).float() for x in low_pass_factors(r, di, v))
            start = evaluate(lambda rows: users[rows] @ items.T, fit_on, validation, ks=(20,))
            energy = float(((normalised @ v) ** 2).sum())
            results[label] = v
            print(f"{name} k {k} {label:<18} {seconds:6.2f} s  energy {energy:.4f}  "
                  f"start's val recall@20 {start['recall@20']:.4f}", flush=True)
        cosines = np.linalg.svd(results["torch.svd_lowrank"].T @ results["shipped"], compute_uv=False)
        print(f"{name} smallest principal-angle cosine {cosines.min():.4f}", flush=True)


if __name__ == "__main__":
    main()
