"""Time to quality, side by side: test Recall@20 of the validation-chosen model against training
seconds, for negspace's default and ALS (256 factors), in one run on one machine (issue 22).

Both methods are run as a user would run them, settings chosen on the validation split carved
from the training data (10% of each user's items, as `negspace train` carves it):
- negspace default: `negspace train --dataset D` (the default recipe: early stopping on the
  validation split, then the refit on all training data on small data, the fold-back up to 4e9
  cells);
- ALS: implicit's ALS at 256 factors, regularisation 30 and alpha 5 (bench/tune_peers.py's
  seeded setting), validated at tune_peers' checkpoints (2, 4, 6, ... iterations) and stopped after
  3 without improvement, then refitted on all training data for the chosen iteration count.
The curve: after each validated epoch (checkpoint) of the validated run, the test Recall@20 of the
model validation prefers so far, at the training seconds spent so far (validation and these test
reads excluded; the test reads choose nothing). The last point of each method is what it
delivers: the final model's test Recall@20 at all its training seconds (the validated run's plus
the refit's). Between 1e8 and 4e9 cells that last point ranks with the item filter the default
chooses on validation after training (`--item-filter auto`), and its seconds include the choice;
the points before it rank by the vectors alone.

Run (needs implicit, the bench extra):
    NEGSPACE_DATA=... python bench/time_to_quality.py --datasets movielens-1m-lcfn
Writes OUT/DATASET.json per dataset, OUT/time_to_quality.png, and with --records FILE appends one
record per (dataset, method) in bench/records' format.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tune_peers  # noqa: E402  -- imports negspace first (its OpenMP setting precedes torch)
import peers  # noqa: E402
import torch  # noqa: E402

from negspace.evaluation.evaluator import evaluate  # noqa: E402
from negspace.training import trainer as trainer_module  # noqa: E402

ALS = {"factors": 256, "regularization": 30.0, "alpha": 5.0}
PATIENCE = 3


def curve_point(points: list[dict], seconds: float, val: float, test: float) -> None:
    """Appends (seconds, the test value of the best validation so far)."""
    best = max([p for p in points if "val" in p] + [{"val": val, "test_of": test}],
               key=lambda p: p["val"])
    points.append({"seconds": seconds, "val": val, "test_now": test,
                   "recall@20": best["test_of"], "test_of": test})


def run_default(dataset: str, train, test) -> dict[str, Any]:
    from negspace.pipeline.fit import run_training
    from negspace.config import make_config, with_default_recipe
    points: list[dict] = []
    seconds = [0.0]
    tests: list[float] = []
    validate = trainer_module.Trainer.validate

    def validate_and_test(self):  # the validated run's epochs: also read test (chooses nothing)
        metrics = validate(self)
        tests.append(evaluate(trainer_module.score_fn(self.model), train, test,
                              ks=(20,))["recall@20"])
        return metrics

    def on_epoch(row: dict) -> None:
        seconds[0] += row["seconds"]
        if "val_recall@20" in row and tests:
            curve_point(points, seconds[0], row["val_recall@20"], tests[-1])
    trainer_module.Trainer.validate = validate_and_test
    try:
        out = run_training(make_config(with_default_recipe({"dataset": dataset,
                                                            "progress": False})),
                           on_epoch=on_epoch)
    finally:
        trainer_module.Trainer.validate = validate
    for point in points:  # the model's start (--init spectral's SVD) came before epoch 1
        point["seconds"] += out.start_seconds
    final = {"seconds": out.metrics["train_seconds"], "recall@20": out.metrics["recall@20"],
             "ndcg@20": out.metrics["ndcg@20"], "final": True}
    return {"points": points, "final": final,
            "chosen": {k: out.metrics[k] for k in ("best_epoch",) if k in out.metrics}}


def run_als(dataset: str, train, test, fit_on, validation, threads: int) -> dict[str, Any]:
    points: list[dict] = []
    start, excluded = [0.0], [0.0]

    def at(k: int, factors: Any) -> None:
        now = time.perf_counter()
        val = evaluate(peers.factor_score_fn(*factors), fit_on, validation, ks=(20,))["recall@20"]
        tst = evaluate(peers.factor_score_fn(*factors), train, test, ks=(20,))["recall@20"]
        curve_point(points, now - start[0] - excluded[0], val, tst)
        points[-1]["iterations"] = k
        excluded[0] += time.perf_counter() - now
        vals = [p["val"] for p in points]
        if len(vals) - 1 - vals.index(max(vals)) >= PATIENCE:
            raise tune_peers.Stop()
    start[0] = time.perf_counter()
    tune_peers.fit("als", fit_on, ALS, tune_peers.ALS_AT[-1], threads, 0, at)
    validated = time.perf_counter() - start[0] - excluded[0]
    chosen = max(points, key=lambda p: p["val"])["iterations"]
    factors, refit_seconds = tune_peers.fit("als", train, ALS, chosen, threads, 0)
    metrics = evaluate(peers.factor_score_fn(*factors), train, test, ks=(20,))
    final = {"seconds": validated + refit_seconds, "recall@20": metrics["recall@20"],
             "ndcg@20": metrics["ndcg@20"], "final": True, "refit_seconds": refit_seconds}
    return {"points": points, "final": final, "chosen": {"iterations": chosen, **ALS}}


def plot(results: dict[str, dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.8), squeeze=False)
    for ax, (dataset, by_method) in zip(axes[0], results.items()):
        for method, r in by_method.items():
            xs = [p["seconds"] for p in r["points"]]
            ys = [p["recall@20"] for p in r["points"]]
            line, = ax.plot(xs, ys, marker=".", label=method)
            ax.scatter([r["final"]["seconds"]], [r["final"]["recall@20"]], marker="*", s=140,
                       color=line.get_color(), zorder=3)
        ax.set_xscale("log")
        ax.set_xlabel("training seconds (log)")
        ax.set_ylabel("test Recall@20 (validation-chosen)")
        ax.set_title(Path(dataset).name, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("* the delivered model (after its refit or fold-back)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def records(dataset: str, by_method: dict[str, dict], load: str) -> list[dict]:
    rows = []
    for method, r in by_method.items():
        f = r["final"]
        label = "negspace default" if method == "default" else "ALS 256"
        rows.append({"id": f"time-to-quality-{Path(dataset).name}-{method}", "section": "speed",
                     "dataset": dataset, "method": label,
                     "protocol": "validation-chosen, test read once for the delivered model "
                                 "(the curve's test reads choose nothing)",
                     "metrics": {"recall@20": round(f["recall@20"], 4),
                                 "ndcg@20": round(f["ndcg@20"], 4)},
                     "train_s": round(f["seconds"], 1),
                     "command": f"python bench/time_to_quality.py --datasets {dataset}",
                     "date": time.strftime("%Y-%m-%d", time.gmtime()),
                     "machine": f"{os.cpu_count()}-core x86_64, shared", "load": load,
                     "note": f"chosen {r['chosen']}; curve in the run's JSON and PNG."})
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", nargs="+", default=["movielens-1m-lcfn"])
    p.add_argument("--methods", nargs="+", default=["default", "als"], choices=["default", "als"])
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="ALS's threads and torch's for evaluation")
    p.add_argument("--out", default="runs/time_to_quality")
    p.add_argument("--records", help="append records to this JSONL file")
    p.add_argument("--replot", action="store_true",
                   help="only draw OUT/time_to_quality.png again from every OUT/*.json")
    args = p.parse_args(argv)
    if args.replot:
        saved = {path.stem: json.loads(path.read_text())
                 for path in sorted(Path(args.out).glob("*.json"))}
        plot({k: {m: r for m, r in v.items() if m != "load"} for k, v in saved.items()},
             Path(args.out) / "time_to_quality.png")
        return
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    for dataset in args.datasets:
        _, train, test, fit_on, validation = tune_peers.data(dataset)
        load0 = os.getloadavg()[0]
        by_method: dict[str, dict] = {}
        for method in args.methods:
            print(f"{dataset} {method} ...", flush=True)
            by_method[method] = (run_default(dataset, train, test) if method == "default" else
                                 run_als(dataset, train, test, fit_on, validation, args.threads))
            torch.set_num_threads(args.threads)
            f = by_method[method]["final"]
            print(f"  test recall@20 {f['recall@20']:.4f} after {f['seconds']:.1f} s", flush=True)
        load1 = os.getloadavg()[0]
        load = (f"shared with other jobs (load average {load0:.0f} to {load1:.0f})"
                if max(load0, load1) > 1.5 * (os.cpu_count() or 1) / 2 else "quiet")
        results[dataset] = by_method
        (out / f"{Path(dataset).name}.json").write_text(
            json.dumps({"load": load, **by_method}, indent=1))
        if args.records:
            with open(args.records, "a") as fh:
                for row in records(dataset, by_method, load):
                    fh.write(json.dumps(row) + "\n")
    plot(results, out / "time_to_quality.png")
    print(f"wrote {out / 'time_to_quality.png'}")


if __name__ == "__main__":
    sys.exit(main())
