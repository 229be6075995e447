"""Tables and the Recall@20-vs-N plot of the CCL / MML grids (issue 4), from their run directories.

    python bench/research/mml_report.py runs/mml-ml1m-mf runs/mml-ml1m-simplex --png docs/img/mml.png
    (one table and one plot per dataset: docs/img/mml-DATASET.png)
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import pandas as pd


def collect(grid_dirs: list[str]) -> pd.DataFrame:
    rows = []
    for grid in grid_dirs:
        for cell in sorted(Path(grid).glob("cells/*")):
            if not (cell / "metrics.json").exists():
                continue
            cfg = json.loads((cell / "config.json").read_text())
            metrics = json.loads((cell / "metrics.json").read_text())
            with open(cell / "history.csv") as f:
                history = list(csv.DictReader(f))
            seconds = [float(r["seconds"]) for r in history]
            rows.append({"dataset": cfg["dataset"], "model": cfg["model"], "loss": _label(cfg),
                         "N": cfg["negatives"], **{k: metrics[k] for k in
                                                   ("recall@20", "ndcg@20", "recall@50", "ndcg@50")},
                         "best_epoch": int(metrics["best_epoch"]), "epochs_run": len(history),
                         "s_per_epoch": sum(seconds) / len(seconds),
                         "val_recall@20": max(float(r["val_recall@20"]) for r in history)})
    return pd.DataFrame(rows).sort_values(["dataset", "model", "loss", "N"])


CHOSEN_CCL = (0.3, 10.0)  # margin and weight chosen on ML-1M validation (docs/results.md)


def _label(cfg: dict) -> str:
    """"ccl" for the chosen CCL setting, "ccl (m M, w W)" for any other, "mml" as run."""
    if cfg["loss"] != "ccl" or (cfg["margin"], cfg["negative_weight"]) == CHOSEN_CCL:
        return cfg["loss"]
    return f"ccl (m {cfg['margin']:g}, w {cfg['negative_weight']:g})"


def markdown(df: pd.DataFrame) -> str:
    head = ["model", "loss", "N", "Recall@20", "NDCG@20", "Recall@50", "NDCG@50", "val R@20",
            "best / run epochs", "s / epoch"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in df.iterrows():
        lines.append(f"| {r['model']} | {r['loss']} | {r['N']} | {r['recall@20']:.4f} | "
                     f"{r['ndcg@20']:.4f} | {r['recall@50']:.4f} | {r['ndcg@50']:.4f} | "
                     f"{r['val_recall@20']:.4f} | {r['best_epoch']} / {r['epochs_run']} | "
                     f"{r['s_per_epoch']:.1f} |")
    return "\n".join(lines)


def gains(df: pd.DataFrame) -> str:
    """MML relative to CCL at each (model, N) where both ran."""
    lines = ["| model | N | CCL R@20 | MML R@20 | MML/CCL R@20 | CCL N@20 | MML N@20 | MML/CCL N@20 |",
             "|---|---|---|---|---|---|---|---|"]
    for (model, n), g in df.groupby(["model", "N"], sort=True):
        by = {r["loss"]: r for _, r in g.iterrows()}
        if {"ccl", "mml"} <= set(by):
            c, m = by["ccl"], by["mml"]
            lines.append(f"| {model} | {n} | {c['recall@20']:.4f} | {m['recall@20']:.4f} | "
                         f"{m['recall@20'] / c['recall@20'] - 1:+.1%} | {c['ndcg@20']:.4f} | "
                         f"{m['ndcg@20']:.4f} | {m['ndcg@20'] / c['ndcg@20'] - 1:+.1%} |")
    return "\n".join(lines)


def plot(df: pd.DataFrame, png: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for (model, loss), g in df.groupby(["model", "loss"]):
        g = g.sort_values("N")
        style = "-" if loss == "mml" else "--" if loss == "ccl" else ":"
        ax.plot(g["N"], g["recall@20"], marker="o", linestyle=style,
                label=f"{'MF' if model == 'mf' else 'SimpleX'}-{loss[:3].upper()}{loss[3:]}")
    ax.set_xscale("log")
    ax.set_xlabel("negatives per positive N")
    ax.set_ylabel("test Recall@20")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("grids", nargs="+")
    ap.add_argument("--png", type=Path)
    args = ap.parse_args()
    df = collect(args.grids)
    for dataset, part in df.groupby("dataset", sort=False):
        print(f"### {dataset}\n")
        print(markdown(part))
        print()
        print(gains(part))
        print()
        if args.png:
            png = args.png.with_name(args.png.stem + f"-{dataset}" + args.png.suffix)
            plot(part, png, f"{dataset}, test Recall@20 (d = 64)")
            print(f"![Recall@20 against N on {dataset}]({png.relative_to('docs')})\n")


if __name__ == "__main__":
    main()
