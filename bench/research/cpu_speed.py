"""CPU training speed: torch threads in the steps, and bfloat16 score products (issue 22, item 2).

Each variant trains the default recipe (or a named path) for a fixed number of epochs, without
early stopping or refit, and reports the epoch seconds (validation excluded) and the validation
Recall@20 after each epoch:
- threads-1:  `--threads 1` (one torch thread in the steps, the old default);
- auto:       no --threads (the steps take every usable core where no sampler thread needs one);
- bf16:       as auto, with the [B, d] x [d, n_items] score products under
              torch.autocast("cpu", bfloat16) (float32 tables, optimiser and reductions; the
              products' outputs are cast back to float32 before the softmax).
Also a micro benchmark of the score product alone (fp32 against bf16), and whether the CPU
reports avx512_bf16 / amx_bf16 (without them oneDNN emulates bf16 products).

Run:  NEGSPACE_DATA=... python bench/research/cpu_speed.py --datasets movielens-1m-lcfn lastfm-hetrec2011
Writes one JSON (default runs/cpu_speed.json); bench/records/speed.jsonl holds what was recorded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

import negspace  # noqa: F401  -- first: its OpenMP setting must precede torch
import torch

from negspace.pipeline.fit import run_training
from negspace.training import objective
from negspace.config import make_config, with_default_recipe
from negspace.training.device import cpuinfo_value

PATHS = {"default": {},  # the full softmax by users on these sizes
         "shared": {"model": "mf", "loss": "softmax", "sampler": "uniform",
                    "negative_mode": "shared", "negatives": 1000, "batch_size": 1024,
                    "temperature": 0.15, "lr": 0.01, "dim": 256}}


@contextlib.contextmanager
def bf16_scores():
    """objective.score_matrix under CPU bf16 autocast, float32 out."""
    original = objective.score_matrix

    def cast(a, b, measure):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = original(a, b, measure)
        return out.float()
    objective.score_matrix = cast
    try:
        yield
    finally:
        objective.score_matrix = original


def cpu_flags() -> list[str]:
    flags = cpuinfo_value("flags").split()
    return sorted(f for f in flags if "bf16" in f or f.startswith("amx"))


def micro(threads: int, b: int, n: int, d: int, reps: int = 10) -> dict:
    torch.set_num_threads(threads)
    u, v = torch.randn(b, d), torch.randn(n, d)
    out = {}
    for name, ctx in (("fp32", contextlib.nullcontext), ("bf16", bf16_scores)):
        with ctx():
            f = objective.score_matrix
            f(u, v, "dot")
            t0 = time.perf_counter()
            for _ in range(reps):
                f(u, v, "dot")
            out[name + "_ms"] = (time.perf_counter() - t0) / reps * 1e3
    return {"threads": threads, "shape": [b, n, d], **out}


def variant(dataset: str, path: str, name: str, epochs: int) -> dict:
    options = {"dataset": dataset, "epochs": epochs, "min_epochs": epochs, "patience": epochs,
               "refit": "no", "progress": False, "seed": 0, **PATHS[path]}
    if name == "threads-1":
        options["threads"] = 1
    load = os.getloadavg()[0]
    with bf16_scores() if name == "bf16" else contextlib.nullcontext():
        out = run_training(make_config(with_default_recipe(options)))
    rows = out.history
    return {"dataset": dataset, "path": path, "variant": name, "load_start": load,
            "load_end": os.getloadavg()[0],
            "epoch_seconds": [r["seconds"] for r in rows],
            "cpu_seconds": [r.get("cpu_seconds") for r in rows],
            "val_recall@20": [r.get("val_recall@20") for r in rows]}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", nargs="+", default=["movielens-1m-lcfn", "lastfm-hetrec2011"])
    p.add_argument("--paths", nargs="+", default=["default"], choices=list(PATHS))
    p.add_argument("--variants", nargs="+", default=["threads-1", "auto", "bf16"])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--out", default="runs/cpu_speed.json")
    args = p.parse_args(argv)
    threads = torch.get_num_threads()
    result = {"cpu_bf16_flags": cpu_flags(), "cpus": os.cpu_count(), "torch": torch.__version__,
              "micro": [micro(t, 256, n, d) for t in (1, 2) for n, d in ((3043, 512),
                                                                       (40981, 256))],
              "runs": []}
    print(json.dumps({k: result[k] for k in ("cpu_bf16_flags", "micro")}), flush=True)
    for dataset in args.datasets:
        for path in args.paths:
            for name in args.variants:
                torch.set_num_threads(threads)
                row = variant(dataset, path, name, args.epochs)
                result["runs"].append(row)
                print(json.dumps(row), flush=True)
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    sys.exit(main())
