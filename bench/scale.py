"""Load, epoch and evaluation time and peak memory at 1M, 10M and 30M interactions (issue 14).

Synthetic power-law data made here: item popularity ~ rank^-1 over a fixed catalogue of 200k
items, user activity ~ rank^-0.7 over N/33 users (about 33 interactions per user), a Unix
timestamp per row; written as CSV (user,item,timestamp). Each size runs in its own process (so
its peak RSS is its own) the steps of `negspace train --dataset FILE --model cml --sampler uniform
--batch-size 4096 --dim 64 --epochs 1 --validation 0`: load, split (k-fold, fold 0 of 4), one
epoch, the full test evaluation (every user, every item); plus a validation on a 10k-user sample
(`--val-users 10000`) as each epoch would run it.

    python bench/scale.py --sizes 1M,10M,30M --workdir runs/scale [--eval-users 30000]

Prints one JSON line per size and a Markdown table at the end. The item catalogue is fixed, so
the evaluation (users x items) grows with users, i.e. linearly in interactions.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

N_ITEMS = 200_000
PER_USER = 33


def _parse_size(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 10**3, "M": 10**6}.get(text[-1], 1)
    return int(float(text.rstrip("KM")) * scale)


def make_csv(path: Path, n: int, seed: int = 0, chunk: int = 2_000_000) -> None:
    """Writes n power-law (user, item, timestamp) rows to path (a CSV with a header)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    rng = np.random.default_rng(seed)
    n_users = max(1, n // PER_USER)
    item_p = 1.0 / np.arange(1, N_ITEMS + 1)
    user_p = np.arange(1, n_users + 1) ** -0.7
    item_p, user_p = item_p / item_p.sum(), user_p / user_p.sum()
    item_perm, user_perm = rng.permutation(N_ITEMS), rng.permutation(n_users)
    item_cdf, user_cdf = np.cumsum(item_p), np.cumsum(user_p)
    schema = pa.schema([("user", pa.int64()), ("item", pa.int64()), ("timestamp", pa.int64())])
    tmp = path.with_suffix(".part")
    with pcsv.CSVWriter(str(tmp), schema) as writer:
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            users = user_perm[np.minimum(np.searchsorted(user_cdf, rng.random(m)), n_users - 1)]
            items = item_perm[np.minimum(np.searchsorted(item_cdf, rng.random(m)), N_ITEMS - 1)]
            times = 1_500_000_000 + rng.integers(0, 365 * 86400, m)
            writer.write_table(pa.table({"user": users, "item": items, "timestamp": times},
                                        schema=schema))
    os.replace(tmp, path)


def _usage() -> dict[str, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return {"user": r.ru_utime, "sys": r.ru_stime, "minflt": r.ru_minflt,
            "peak_gb": r.ru_maxrss / 2**20, "wall": time.perf_counter()}


def _delta(a: dict, b: dict) -> dict[str, float]:
    return {"seconds": round(b["wall"] - a["wall"], 2), "user_s": round(b["user"] - a["user"], 2),
            "sys_s": round(b["sys"] - a["sys"], 2), "minflt": int(b["minflt"] - a["minflt"]),
            "peak_gb": round(b["peak_gb"], 3)}


def child(path: Path, batch: int, dim: int, val_users: int, eval_users: int) -> dict:
    """Runs the steps of one `negspace train` on path and measures each."""
    import torch

    from negspace.data.loaders import load_dataset
    from negspace.evaluation.evaluator import evaluate
    from negspace.evaluation.scoring import model_scorer
    from negspace.data.splits import holdout_split, sample_users
    from negspace.pipeline.build import build_model, build_objective, build_sampler
    from negspace.pipeline.split import split_parts
    from negspace.config import make_config
    from negspace.training.trainer import Trainer, TrainerOptions

    cfg = make_config({"dataset": str(path), "model": "cml", "sampler": "uniform",
                       "batch_size": batch, "dim": dim, "epochs": 1, "validation": 0,
                       "min_user_interactions": 0, "progress": False})
    out: dict = {}
    u0 = _usage()
    ds = load_dataset(str(path), min_user_interactions=0)
    u1 = _usage()
    out["load"] = _delta(u0, u1)
    train, test, _ = split_parts(cfg, ds)
    del ds
    u2 = _usage()
    out["split"] = _delta(u1, u2)
    out["interactions"] = train.nnz + test.nnz
    out["users"], out["items"] = train.n_users, train.n_items
    model = build_model(cfg, train.n_users, train.n_items)
    opts = TrainerOptions(batch_size=batch, negatives=cfg.negatives, epochs=1, lr=cfg.lr,
                          seed=0, progress=False, step_threads=cfg.step_threads)
    trainer = Trainer(model, build_sampler(cfg), build_objective(cfg), train, opts, None)
    u3 = _usage()
    result = trainer.fit()
    u4 = _usage()
    out["epoch"] = {**_delta(u3, u4), "train_seconds": round(result.train_seconds, 2)}
    model.eval()
    torch.set_num_threads(os.cpu_count() or 1)
    held = sample_users(test, eval_users, 1)  # 0: every test user
    metrics = evaluate(model_scorer(model), train, held, ks=(20, 50))
    u5 = _usage()
    out["evaluation"] = _delta(u4, u5)
    n_eval, n_all = int(metrics["n_eval_users"]), int((test.user_degrees() > 0).sum())
    out["evaluation"].update(users=n_eval, all_users=n_all, full_estimate_s=round(
        out["evaluation"]["seconds"] * n_all / max(n_eval, 1), 1))
    out["recall@20"] = round(metrics["recall@20"], 5)
    _, held = holdout_split(train, 0.1, 0)
    held = sample_users(held, val_users, 0)
    u6 = _usage()
    evaluate(model_scorer(model), train, held, ks=(20, 50))
    u7 = _usage()
    out[f"validation_{val_users}_users"] = _delta(u6, u7)
    out["peak_gb"] = round(u7["peak_gb"], 3)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1M,10M,30M")
    p.add_argument("--workdir", default="runs/scale")
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--val-users", type=int, default=10_000)
    p.add_argument("--eval-users", type=int, default=0,
                   help="rank a seeded sample of this many test users (0: all) and estimate the "
                        "full evaluation's time from it (ranking cost is linear in users)")
    p.add_argument("--record", metavar="TOPIC", help="append each size to bench/records/TOPIC.jsonl")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(Path(args.child), args.batch_size, args.dim, args.val_users,
                               args.eval_users)))
        return
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes.split(","):
        n = _parse_size(size)
        path = work / f"synthetic-{n}.csv"
        if not path.exists():
            t = time.perf_counter()
            make_csv(path, n)
            print(f"# wrote {path} ({path.stat().st_size / 2**20:.0f} MB) in "
                  f"{time.perf_counter() - t:.0f} s", flush=True)
        proc = subprocess.run([sys.executable, __file__, "--child", str(path),
                               "--batch-size", str(args.batch_size), "--dim", str(args.dim),
                               "--val-users", str(args.val_users),
                               "--eval-users", str(args.eval_users)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"# {size} failed:\n{proc.stderr[-3000:]}", flush=True)
            continue
        row = {"size": size, **json.loads(proc.stdout.strip().splitlines()[-1])}
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.record:
            ev = row["evaluation"]
            harness.record(args.record, id=f"scale-{size}-{int(time.time())}", section="scale",
                           dataset=f"synthetic power law, 200k items, {size} rows",
                           method=f"load, split, one CML epoch (B {args.batch_size}, d {args.dim}), evaluation",
                           metrics={"interactions": row["interactions"], "users": row["users"],
                                    "load s": row["load"]["seconds"], "epoch s": row["epoch"]["train_seconds"],
                                    f"eval s ({ev['users']} users)": ev["seconds"],
                                    "full eval est. s": ev["full_estimate_s"], "peak GB": row["peak_gb"]},
                           command=harness.command())
    print("\n| rows | interactions | users | load s | load peak GB | epoch s | eval s (users; "
          f"user/sys CPU s) | full eval est. s | val {args.val_users} users s | peak GB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ev, vk = r["evaluation"], f"validation_{args.val_users}_users"
        print(f"| {r['size']} | {r['interactions']:,} | {r['users']:,} | {r['load']['seconds']} "
              f"| {r['load']['peak_gb']} | {r['epoch']['train_seconds']} | {ev['seconds']} "
              f"({ev['users']:,}; {ev['user_s']}/{ev['sys_s']}) | {ev['full_estimate_s']} "
              f"| {r[vk]['seconds']} | {r['peak_gb']} |")


if __name__ == "__main__":
    main()
