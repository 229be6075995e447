"""Evaluation before and after the reused score buffer (issue 14): user/system CPU time, minor
page faults and peak RSS of ranking the same users, each way in its own process.

- "fresh": the scorer before issue 14, `score_matrix(user_vectors, items, measure)` per chunk of
  4096 users (new [4096, n_items] tensors every chunk, four of them for l2);
- "buffered": `evaluation.scoring.model_scorer` with `auto_chunk_size` (one buffer, <= 128 MB).

    python bench/research/eval_buffers.py --csv runs/scale/synthetic-1000000.csv --users 8192
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def child(csv: str, n_users: int, how: str) -> dict:
    import numpy as np
    import torch

    from negspace.data.loaders import load_dataset
    from negspace.evaluation.evaluator import evaluate
    from negspace.evaluation.scoring import model_scorer
    from negspace.models import CML
    from negspace.models.base import score_matrix

    inter = load_dataset(csv, min_user_interactions=0).interactions
    rng = np.random.default_rng(0)
    held = inter.select(rng.random(inter.nnz) < 0.2)
    keep = np.zeros(inter.n_users, bool)
    keep[rng.choice(inter.n_users, min(n_users, inter.n_users), replace=False)] = True
    held = held.select(keep[held.pairs()[0]])
    torch.manual_seed(0)
    model = CML(inter.n_users, inter.n_items, 64).eval()
    if how == "fresh":
        with torch.no_grad():
            items = model.item_vectors(None)
        def scorer(users):
            with torch.no_grad():
                return score_matrix(model.user_vectors(users), items, model.measure)
        chunk = 4096
    else:
        scorer, chunk = model_scorer(model), None
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    metrics = evaluate(scorer, inter, held, chunk_size=chunk)
    r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    return {"how": how, "users": int(metrics["n_eval_users"]), "items": inter.n_items,
            "seconds": round(t1 - t0, 2), "user_s": round(r1.ru_utime - r0.ru_utime, 2),
            "sys_s": round(r1.ru_stime - r0.ru_stime, 2), "minflt": r1.ru_minflt - r0.ru_minflt,
            "peak_gb": round(r1.ru_maxrss / 2**20, 2), "recall@20": metrics["recall@20"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--csv", required=True)
    p.add_argument("--users", type=int, default=8192)
    p.add_argument("--child", choices=("fresh", "buffered"))
    a = p.parse_args()
    if a.child:
        print(json.dumps(child(a.csv, a.users, a.child)))
        return
    for how in ("fresh", "buffered"):
        out = subprocess.run([sys.executable, __file__, "--csv", a.csv, "--users", str(a.users),
                              "--child", how], capture_output=True, text=True, check=True)
        print(out.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
