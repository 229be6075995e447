"""Epoch time and quality of 1 and N processes at the same global batch (issue 14).

Runs `negspace train` on a dataset with a fixed number of epochs (no validation, constant lr, so
both runs see the same number of updates) for:
- 1 process, global batch G, the default step (the compiled CML step where it applies);
- 1 process, global batch G, the autograd step (what each rank runs under --nproc);
- N processes (`--nproc N`), B = G / N each.
Prints, per run, the mean epoch seconds (history.csv, epochs after the first), the wall time of
the whole command and the test Recall@20 / NDCG@20.

    python bench/research/distributed.py --dataset movielens-1m-lcfn --global-batch 512 --epochs 10 \\
        --nproc 2 --out runs/distributed
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

_AUTOGRAD = """
import sys
from negspace.training import fused
fused.CMLTripletStep.applies = staticmethod(lambda *a, **k: False)  # the autograd step
from negspace.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _run(args: list[str], autograd: bool = False) -> float:
    cmd = ([sys.executable, "-c", _AUTOGRAD] if autograd
           else [sys.executable, "-m", "negspace"]) + args
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def _summary(run_dir: Path, wall: float) -> dict:
    with open(run_dir / "history.csv") as f:
        rows = list(csv.DictReader(f))
    seconds = [float(r["seconds"]) for r in rows]
    later = seconds[1:] or seconds
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"epochs": len(rows), "epoch_s_mean": round(sum(later) / len(later), 2),
            "epoch_s_first": round(seconds[0], 2), "wall_s": round(wall, 1),
            "recall@20": round(metrics["recall@20"], 4), "ndcg@20": round(metrics["ndcg@20"], 4)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="movielens-1m-lcfn")
    p.add_argument("--global-batch", type=int, default=512)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--out", default="runs/distributed")
    p.add_argument("--extra", default="", help="more train options, space-separated")
    p.add_argument("--runs", default="0,1,2",
                   help="which runs: 0 one process, 1 its autograd step, 2 N processes")
    a = p.parse_args()
    out = Path(a.out)
    common = ["train", "--dataset", a.dataset, "--epochs", str(a.epochs), "--validation", "0",
              "--lr-schedule", "none", "--no-progress", "--overwrite", *a.extra.split()]
    runs = {
        "1 process": (common + ["--batch-size", str(a.global_batch)], False),
        "1 process, autograd step": (common + ["--batch-size", str(a.global_batch)], True),
        f"{a.nproc} processes": (common + ["--batch-size", str(a.global_batch // a.nproc),
                                           "--nproc", str(a.nproc)], False),
    }
    results = {}
    chosen = {int(i) for i in a.runs.split(",")}
    for i, (name, (args, autograd)) in enumerate(runs.items()):
        if i not in chosen:
            continue
        run_dir = out / f"run{i}"
        wall = _run([*args, "--out", str(run_dir)], autograd)
        results[name] = _summary(run_dir, wall)
        print(json.dumps({"run": name, **results[name]}), flush=True)
    print(f"\n| run ({a.dataset}, global batch {a.global_batch}, {a.epochs} epochs) | epoch s "
          "(mean of epochs 2+) | first epoch s | wall s | Recall@20 | NDCG@20 |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['epoch_s_mean']} | {r['epoch_s_first']} | {r['wall_s']} | "
              f"{r['recall@20']} | {r['ndcg@20']} |")


if __name__ == "__main__":
    main()
