"""Epoch and evaluation times on a GPU against the CPU cores, in one run (issue 13; bench/gpu.sh).

Run:  python bench/gpu_bench.py [--cpu-smoke] [--out FILE] [--budget-s 330]

Cases (d = 64): CML uniform and 2-stage (T 64, cap 0.875; N 5), MF + MML with 800 shared
negatives, two-tower in-batch and memory bank (M 2048), on movielens-1m-lcfn, amazon-book-kgat
and a synthetic power-law catalogue (1M items, 50M interactions, made here with numpy). Each
case trains on the GPU and on the CPU (torch threads = --cpu-threads) from the same seed; an
epoch is timed whole when it has at most --gpu-steps (GPU) or --cpu-steps (CPU) batches, else
that many batches are timed after a warm-up and the epoch is extrapolated ("est."). Full-ranking
evaluation likewise: every test user on the GPU (100k users of the synthetic set), a capped
number on the CPU, extrapolated. Then one quality table: ML-1M CML uniform trained for a few
epochs on each device, the test metrics side by side. A time budget skips what is left, saying
so. `--cpu-smoke`: small sizes, the CPU standing in for the GPU, to check the script runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import negspace  # noqa: E402,F401  -- first: its OpenMP setting must precede torch
import numpy as np  # noqa: E402
import torch  # noqa: E402

from negspace.data.interactions import Interactions  # noqa: E402
from negspace.data.loaders import load_dataset  # noqa: E402
from negspace.evaluation.evaluator import evaluate  # noqa: E402
from negspace.pipeline.build import build_model, build_objective, build_sampler  # noqa: E402
from negspace.pipeline.fit import split_for  # noqa: E402
from negspace.config import make_config  # noqa: E402
from negspace.training.device import configure, device_name, resolve_device, synchronize  # noqa: E402
from negspace.training.trainer import Trainer, TrainerOptions, score_fn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

# bench/profile_steps.py's cases (harness.CASES), under the names this bench's tables use
CASES: dict[str, dict[str, Any]] = {name: harness.CASES[key] for name, key in (
    ("cml uniform", "uniform"), ("cml 2-stage", "two-stage"), ("mf mml shared-800", "shared-800 (mf, mml)"),
    ("two-tower in-batch", "in-batch (two-tower)"), ("two-tower bank", "memory-bank (two-tower)"))}
BATCH = {"movielens-1m-lcfn": 1024, "amazon-book-kgat": 1024, "synthetic": 4096}


def synthetic(n_items: int, nnz: int, seed: int = 0) -> tuple[Interactions, Interactions]:
    """A power-law catalogue: item popularity ~ rank^-0.9, users' activity ~ Pareto; 2% of each
    user's pairs (at least one for users with 5 or more) held out as the test set."""
    rng = np.random.default_rng(seed)
    n_users = max(1000, nnz // 50)
    activity = rng.pareto(1.5, n_users) + 1.0
    per_user = np.maximum(1, np.round(activity / activity.sum() * nnz)).astype(np.int64)
    users = np.repeat(np.arange(n_users, dtype=np.int64), per_user)
    pop = np.arange(1, n_items + 1, dtype=np.float64) ** -0.9
    cdf = np.cumsum(pop / pop.sum())
    items = np.minimum(np.searchsorted(cdf, rng.random(len(users))), n_items - 1)
    items = rng.permutation(n_items)[items]  # popular items anywhere in the id range
    keys = np.unique(users * n_items + items)
    users, items = keys // n_items, keys % n_items
    test = rng.random(len(keys)) < 0.02
    ids_u, ids_i = np.arange(n_users), np.arange(n_items)
    return (Interactions.from_indices(users[~test], items[~test], ids_u, ids_i),
            Interactions.from_indices(users[test], items[test], ids_u, ids_i))


def time_training(cfg, train: Interactions, device: torch.device, max_steps: int,
                  warmup: int, threads: int, device_step: bool | None = None) -> dict[str, Any]:
    """Seconds of one epoch (whole, or extrapolated from max_steps batches after a warm-up)."""
    model = build_model(cfg, train.n_users, train.n_items, history=train).to(device)
    opts = TrainerOptions(batch_size=cfg.batch_size, negatives=cfg.negatives, epochs=1, lr=cfg.lr,
                          seed=cfg.seed, progress=False, step_threads=threads,
                          precision=cfg.precision, device_step=device_step)
    trainer = Trainer(model, build_sampler(cfg), build_objective(cfg), train, opts, None)
    n_steps = trainer.n_steps
    whole = n_steps <= max_steps
    if whole:
        trainer.n_steps = min(warmup, n_steps - 1) if n_steps > 1 else 0
    else:
        trainer.n_steps = warmup
    if trainer.n_steps:
        trainer.run_epoch(None)  # warm-up: compiles, caches, the bank's first fill
    synchronize(device)
    start, before = trainer.step_in_epoch, trainer.epoch_seconds
    trainer.n_steps = n_steps if whole else warmup + max_steps
    trainer.run_epoch(None)  # its epoch_seconds leave out the shuffle; the device is flushed
    seconds = trainer.epoch_seconds - before
    timed = trainer.n_steps - start
    per_step = seconds / max(timed, 1)
    # a whole epoch counts its few warm-up steps at the timed rate
    return {"epoch_s": per_step * n_steps,
            "ms_step": 1000 * per_step, "steps": n_steps, "timed": timed,
            "estimated": not whole, "model": model, "loss": trainer.epoch_loss}


def time_eval(model, train: Interactions, test: Interactions, device: torch.device,
              max_users: int) -> dict[str, Any]:
    """Seconds of the full-ranking evaluation of the test users (extrapolated past max_users)."""
    users = np.flatnonzero(test.user_degrees() > 0)
    n_all = len(users)
    sub = test
    if n_all > max_users:
        keep = np.zeros(test.n_users, bool)
        keep[users[:max_users]] = True
        sub = test.select(keep[test.pairs()[0]])
    model.eval()
    synchronize(device)
    t0 = time.perf_counter()
    metrics = evaluate(score_fn(model), train, sub, ks=(20, 50))
    synchronize(device)
    seconds = time.perf_counter() - t0
    n = int(metrics["n_eval_users"])
    return {"eval_s": seconds, "eval_s_per_user": seconds / max(n, 1), "users": n_all,
            "timed_users": n, "metrics": metrics}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cpu-smoke", action="store_true", help="small sizes; the CPU stands in for the GPU")
    p.add_argument("--device", default="cuda")
    p.add_argument("--cpu-threads", type=int, default=min(16, os.cpu_count() or 1))
    p.add_argument("--datasets", nargs="+", default=["movielens-1m-lcfn", "amazon-book-kgat", "synthetic"])
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--synthetic-items", type=int, default=1_000_000)
    p.add_argument("--synthetic-nnz", type=int, default=50_000_000)
    p.add_argument("--gpu-steps", type=int, default=2500, help="whole GPU epochs up to this many batches")
    p.add_argument("--gpu-steps-synthetic", type=int, default=600, help="batches timed on the synthetic set")
    p.add_argument("--cpu-steps", type=int, default=30)
    p.add_argument("--gpu-eval-users", type=int, default=100_000)
    p.add_argument("--cpu-eval-users", type=int, default=2000)
    p.add_argument("--quality-epochs", type=int, default=5)
    p.add_argument("--budget-s", type=float, default=330.0, help="skip what is left after this")
    p.add_argument("--out", default=None, help="also write the tables (markdown) and JSON here")
    p.add_argument("--record", metavar="TOPIC", help="append each timed case to RECORDS/TOPIC.jsonl")
    p.add_argument("--records-dir", type=Path, default=harness.RECORDS,
                   help="where --record writes (gpu.sh: its $OUT, to copy into bench/records/)")
    args = p.parse_args(argv)
    if args.cpu_smoke:
        args.device, args.synthetic_items, args.synthetic_nnz = "cpu", 20_000, 300_000
        args.gpu_steps, args.cpu_steps, args.gpu_eval_users, args.cpu_eval_users = 20, 5, 500, 200
        args.gpu_steps_synthetic = 20
        args.quality_epochs, args.cpu_threads = 1, min(args.cpu_threads, 2)
    t_start = time.perf_counter()
    gpu, cpu = resolve_device(args.device), torch.device("cpu")
    configure(gpu, "fp32")
    header = (f"device {device_name(gpu)} ({gpu}) against {args.cpu_threads} CPU threads; torch "
              f"{torch.__version__}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
              + ("; CPU SMOKE RUN (sizes cut, the CPU stands in for the GPU)" if args.cpu_smoke else ""))
    print(header, flush=True)
    lines = [header, "", "Epochs marked est. are timed over some batches and scaled to the epoch; "
             "the CPU's evaluation is timed on fewer users and scaled to the GPU's.", "",
             "| dataset | case | B | GPU epoch s | CPU epoch s | CPU / GPU | GPU eval s (users) "
             "| CPU eval s, same users | CPU / GPU |", "|---|---|---|---|---|---|---|---|---|"]
    records: list[dict] = []
    for name in args.datasets:
        if time.perf_counter() - t_start > args.budget_s:
            lines.append(f"| {name} | skipped: past the {args.budget_s:.0f} s budget |||||||")
            continue
        t0 = time.perf_counter()
        if name == "synthetic":
            train, test = synthetic(args.synthetic_items, args.synthetic_nnz)
        else:
            cfg0 = make_config({"dataset": name, "validation": 0.0})
            train, test = split_for(cfg0, load_dataset(name))
        print(f"{name}: {train.n_users} users, {train.n_items} items, {train.nnz} training pairs "
              f"({time.perf_counter() - t0:.1f} s to load)", flush=True)
        for case in args.cases:
            if time.perf_counter() - t_start > args.budget_s:
                lines.append(f"| {name} | {case} | skipped: past the budget |||||||")
                continue
            b = BATCH.get(name, 1024) if not args.cpu_smoke else 256
            cfg = make_config({**CASES[case], "dataset": name, "dim": 64, "batch_size": b,
                               "validation": 0.0, "progress": False})
            row: dict[str, Any] = {"dataset": name, "case": case, "batch_size": b}
            gpu_steps = args.gpu_steps_synthetic if name == "synthetic" else args.gpu_steps
            for label, dev, steps, users, threads in (
                    ("gpu", gpu, gpu_steps, args.gpu_eval_users, args.cpu_threads),
                    ("cpu", cpu, args.cpu_steps, args.cpu_eval_users, args.cpu_threads)):
                torch.set_num_threads(args.cpu_threads)
                # the smoke run takes the accelerator's step (training/device_step.py) on the CPU
                forced = True if (args.cpu_smoke and label == "gpu") else None
                try:
                    tr = time_training(cfg, train, dev, steps, warmup=5, threads=threads,
                                       device_step=forced)
                    ev = time_eval(tr.pop("model"), train, test, dev, users)
                    ev.pop("metrics")
                    row[label] = {**tr, **ev}
                except Exception as e:  # report and go on: one case must not sink the run
                    row[label] = {"error": f"{type(e).__name__}: {str(e)[:160]}"}
                print(f"  {case} on {label}: {row[label]}", flush=True)
            records.append(row)
            lines.append(_row(row))
            if args.record and not args.cpu_smoke and "epoch_s" in row["gpu"] and "epoch_s" in row["cpu"]:
                g, c = row["gpu"], row["cpu"]
                harness.record(args.record, folder=args.records_dir, section="gpu", dataset=name,
                               id=f"gpu-{name}-{case.replace(' ', '-')}-{int(time.time())}",
                               method=f"{case}, B {b}, d 64", command=harness.command(
                                   [__file__, *(argv if argv is not None else sys.argv[1:])]),
                               metrics={"GPU epoch s": round(g["epoch_s"], 3), "CPU epoch s": round(c["epoch_s"], 3),
                                        "GPU eval s": round(g["eval_s"], 3),
                                        "CPU eval s, same users": round(c["eval_s_per_user"] * g["timed_users"], 3)},
                               note=f"CPU: {args.cpu_threads} threads; eval of {g['timed_users']} users"
                                    + ("; epochs estimated from timed batches" if g.get("estimated") or c.get("estimated") else ""))
    lines += _quality(args, gpu, cpu, t_start)
    lines += ["", f"total {time.perf_counter() - t_start:.0f} s"]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
        Path(args.out).with_suffix(".json").write_text(json.dumps(records, default=str, indent=1))
    return 0


def _fmt(r: dict) -> str:
    if "error" in r:
        return "error: " + r["error"][:60]
    return f"{r['epoch_s']:.2f}{' est.' if r.get('estimated') else ''}"


def _row(row: dict) -> str:
    g, c = row["gpu"], row["cpu"]
    ok = "epoch_s" in g and "epoch_s" in c
    ratio = f"{c['epoch_s'] / g['epoch_s']:.1f}x" if ok else "-"
    g_eval = f"{g['eval_s']:.2f} ({g['timed_users']})" if "eval_s" in g else "-"
    c_same = c["eval_s_per_user"] * g["timed_users"] if ok else None
    c_eval = (f"{c_same:.2f}{' est.' if c['timed_users'] < g['timed_users'] else ''}"
              if c_same is not None else "-")
    e_ratio = f"{c_same / g['eval_s']:.1f}x" if ok and g["eval_s"] > 0 else "-"
    return (f"| {row['dataset']} | {row['case']} | {row['batch_size']} | {_fmt(g)} | {_fmt(c)} "
            f"| {ratio} | {g_eval} | {c_eval} | {e_ratio} |")


def _quality(args, gpu: torch.device, cpu: torch.device, t_start: float) -> list[str]:
    """ML-1M CML uniform, a few epochs on each device, the same seed: test metrics side by side."""
    if "movielens-1m-lcfn" not in args.datasets or time.perf_counter() - t_start > args.budget_s:
        return ["", "quality table skipped (no ML-1M or past the budget)"]
    cfg = make_config({**CASES["cml uniform"], "dataset": "movielens-1m-lcfn", "dim": 64,
                       "batch_size": 1024, "validation": 0.0, "progress": False})
    train, test = split_for(cfg, load_dataset(cfg.dataset))
    out = ["", f"Quality: ML-1M CML uniform, d 64, B 1024, N 5, lr 0.01, {args.quality_epochs} "
           "epochs, seed 0, test metrics", "",
           "| device | map@50 | ndcg@50 | recall@20 | train s |", "|---|---|---|---|---|"]
    for label, dev in (("gpu", gpu), ("cpu", cpu)):
        model = build_model(cfg, train.n_users, train.n_items).to(dev)
        opts = TrainerOptions(batch_size=1024, negatives=5, epochs=args.quality_epochs, lr=0.01,
                              progress=False, step_threads=args.cpu_threads,
                              device_step=True if (args.cpu_smoke and label == "gpu") else None)
        t0 = time.perf_counter()
        Trainer(model, build_sampler(cfg), build_objective(cfg), train, opts, None).fit()
        synchronize(dev)
        secs = time.perf_counter() - t0
        m = evaluate(score_fn(model.eval()), train, test, ks=(20, 50))
        out.append(f"| {label} ({dev}) | {m['map@50']:.4f} | {m['ndcg@50']:.4f} "
                   f"| {m['recall@20']:.4f} | {secs:.1f} |")
        print(out[-1], flush=True)
    return out


if __name__ == "__main__":
    sys.exit(main())
