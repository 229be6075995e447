"""Every fold of a k-fold dataset: a negspace recipe, the default recipe, and implicit's ALS.

Run (ALS needs the bench extra):

    .venv/bin/python bench/kfold.py --dataset lastfm-hetrec2011 \
        --recipe configs/recipes/lastfm-hetrec2011.toml \
        --als '{"factors": 256, "regularization": 73.1, "alpha": 21.1, "iterations": 8}'

Protocol: each fold is split as `negspace train --fold F` splits it (4 folds, seed 0). Settings
are fixed beforehand (the recipe's and ALS's were chosen on fold 0's validation split; nothing is
chosen on any test fold): the recipe is trained as `negspace train --config RECIPE --fold F`, the
default as `negspace train --dataset NAME --fold F`, ALS on the fold's whole training part. Each
fold's test split is read once per method. Prints one row per fold and method and the mean over
folds; writes OUT/DATASET.json (atomically) after every fold, and skips folds already there.
`--record TOPIC` appends the means over folds to bench/records/TOPIC.jsonl (section accuracy).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402  -- imports negspace first (its OpenMP setting precedes torch)
import harness  # noqa: E402

from negspace.data.splits import kfold_split  # noqa: E402
from negspace.pipeline.fit import run_training  # noqa: E402
from negspace.config import load_toml, make_config, with_default_recipe  # noqa: E402

KEYS = ("map@50", "ndcg@50", "recall@50")


def negspace_fold(values: dict[str, Any], fold: int, threads: int) -> dict[str, Any]:
    cfg = make_config({**values, "fold": fold, "threads": threads, "progress": False})
    out = run_training(cfg)
    return {"metrics": {k: out.metrics[k] for k in KEYS},
            "train_seconds": sum(row["seconds"] for row in out.history)}


def als_fold(dataset: str, params: dict[str, Any], fold: int, threads: int) -> dict[str, Any]:
    data = peers.load_dataset(dataset)
    train, test = kfold_split(data.interactions.binarized(), 4, fold, 0)
    p = dict(params)
    factors = int(p.pop("factors"))
    out = peers.run_peer("als", train, test, factors, threads, 0, p)
    return {"metrics": {k: out["metrics"][k] for k in KEYS}, "train_seconds": out["train_seconds"]}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--recipe", required=True, help="a configs/recipes/*.toml file")
    p.add_argument("--als", required=True, help="ALS settings as JSON (factors, regularization, alpha, iterations)")
    p.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3])
    p.add_argument("--methods", nargs="+", default=["recipe", "default", "als"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="runs/kfold")
    p.add_argument("--record", metavar="TOPIC", help="append the means to bench/records/TOPIC.jsonl")
    args = p.parse_args(argv)

    recipe = {**load_toml(args.recipe), "dataset": args.dataset}
    default = with_default_recipe({"dataset": args.dataset})
    als = json.loads(args.als)
    path = Path(args.out) / f"{args.dataset}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    done: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    done.update(recipe_file=args.recipe, als_params=als)
    for fold in args.folds:
        for method in args.methods:
            key = f"{method}/{fold}"
            if key in done:
                continue
            t0 = time.perf_counter()
            if method == "als":
                row = als_fold(args.dataset, als, fold, args.threads)
            else:
                row = negspace_fold(recipe if method == "recipe" else default, fold, args.threads)
            row["wall_seconds"] = time.perf_counter() - t0
            done[key] = row
            print(f"fold {fold} {method:8s} " + "  ".join(f"{k} {row['metrics'][k]:.4f}" for k in KEYS)
                  + f"  ({row['train_seconds']:.1f} s)", flush=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(done, indent=1))
            tmp.replace(path)
    print(f"\nmean over folds {args.folds}:")
    for method in args.methods:
        rows = [done[f"{method}/{f}"]["metrics"] for f in args.folds if f"{method}/{f}" in done]
        if rows:
            print(f"{method:8s} " + "  ".join(
                f"{k} {sum(r[k] for r in rows) / len(rows):.4f}" for k in KEYS) + f"  ({len(rows)} folds)")
        if rows and args.record:
            seconds = [done[f"{method}/{f}"]["train_seconds"] for f in args.folds if f"{method}/{f}" in done]
            harness.record(
                args.record, id=f"kfold-{args.dataset}-{method}-{len(rows)}folds-{int(time.time())}",
                section="accuracy", dataset=args.dataset,
                method={"recipe": "negspace recipe", "default": "negspace default"}.get(method, "ALS tuned"),
                protocol="validation-chosen, test read once",
                metrics={k: round(sum(r[k] for r in rows) / len(rows), 4) for k in KEYS},
                train_s=round(sum(seconds) / len(seconds), 1),
                command=harness.command(argv and [__file__, *argv]),
                note=f"mean of folds {', '.join(map(str, args.folds[:len(rows)]))}")


if __name__ == "__main__":
    main()
