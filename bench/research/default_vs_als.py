"""The default recipe (or a given config) against implicit's ALS at 256 factors, in one run on one
machine, on a given-split dataset; appends JSON records (bench/records/, format in bench/README or
docs) so that both times are measured under the same load.

    .venv/bin/python bench/research/default_vs_als.py --dataset gowalla-lightgcn --out runs/dva \
        --records bench/records/gowalla.jsonl [--config configs/recipes/gowalla-lightgcn.toml]

negspace trains through `negspace train` (a subprocess, exactly the user's command); its seconds are
the wall time of the training epochs (timing.json, validation passes included, the refit too when
there is one) and of the whole command. ALS gets the training CSR and `--threads` threads, with
the settings tuned on ML-1M validation (bench/peers.py, PEERS["als"]); its seconds are its fit.
Both are scored by negspace's evaluator on the test split, read once.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/

from peers import PEERS, csr, factor_score_fn, fit_als, split  # noqa: E402

from negspace.evaluation.evaluator import evaluate  # noqa: E402


def machine() -> str:
    return f"{os.cpu_count()}-core {platform.machine()}, shared"


def record(args: argparse.Namespace, method: str, metrics: dict, train_s: float, command: str,
           note: str, load: float) -> dict:
    return {"id": f"{args.dataset}-{args.tag}-{method.replace(' ', '-').lower()}",
            "section": "accuracy", "dataset": args.dataset, "method": method,
            "protocol": "validation-chosen, test read once",
            "metrics": {k: round(float(metrics[k]), 4) for k in ("recall@20", "ndcg@20")},
            "train_s": round(train_s, 1), "command": command, "date": time.strftime("%Y-%m-%d"),
            "machine": machine(), "load": f"load average {load:.1f} at start (shared)",
            "note": note}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--config", help="a TOML config for negspace (default: the default recipe)")
    p.add_argument("--out", default="runs/default-vs-als")
    p.add_argument("--records", help="append the records to this JSONL file")
    p.add_argument("--tag", default="default", help="part of the records' ids")
    p.add_argument("--threads", type=int, default=2, help="ALS threads")
    p.add_argument("--skip-als", action="store_true")
    args = p.parse_args(argv)
    out = Path(args.out)
    load = os.getloadavg()[0]
    run_dir = out / "negspace"
    cmd = ["negspace", "train", "--dataset", args.dataset, "--out", str(run_dir), "--no-progress"]
    if args.config:
        cmd += ["--config", args.config]
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", *cmd], check=True)
    wall = time.perf_counter() - t0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    timing = json.loads((run_dir / "timing.json").read_text())
    train_s = float(timing.get("train_seconds", wall))
    shown = " ".join(cmd).replace(str(run_dir), "runs/x")
    rows = [record(args, "negspace recipe" if args.config else "negspace default", metrics,
                   train_s, shown, f"whole command {wall:.0f} s wall; timing.json: "
                   f"{json.dumps(timing)}", load)]
    print(f"negspace: recall@20 {metrics['recall@20']:.4f} ndcg@20 {metrics['ndcg@20']:.4f} "
          f"train {train_s:.0f} s (command {wall:.0f} s)", flush=True)
    if not args.skip_als:
        train, test = split(args.dataset)
        users, items, bias, t = fit_als(csr(train), 256, args.threads, 0, PEERS["als"])
        als = evaluate(factor_score_fn(users, items, bias), train, test, ks=(20, 50))
        print(f"ALS 256: recall@20 {als['recall@20']:.4f} ndcg@20 {als['ndcg@20']:.4f} "
              f"fit {t.wall:.0f} s", flush=True)
        rows.append(record(args, "ALS 256", als, t.wall,
                           f"python bench/research/default_vs_als.py --dataset {args.dataset}",
                           f"implicit ALS, {args.threads} threads, {PEERS['als']}, "
                           f"same run as the negspace row", load))
    if args.records:
        with open(args.records, "a") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
