"""Issue 3 experiment: two-tower with in-batch, uniform sampled-softmax and cross-batch (memory
bank) negatives. Each cell is one `negspace train` process under /usr/bin/time, so that its peak
resident memory is measured on its own; finished cells (metrics.json) are skipped, so the script
resumes.

    python bench/research/cbns.py run ml100k      # trains the cells into runs/cbns-ml100k/
    python bench/research/cbns.py report ml100k   # table (markdown) and quality-vs-time plot
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NEGSPACE = str(ROOT / ".venv" / "bin" / "negspace")

# Options chosen on the validation split of MovieLens-100k fold 0 (lr 0.001 beat 0.01 on
# val ndcg@50 after 8 epochs: 0.234 vs 0.221, runs/cbns-lrsel); never on test data.
COMMON = ["--model", "two-tower", "--dim", "64", "--lr", "0.001", "--threads", "1",
          "--no-progress", "--patience", "2", "--seed", "0"]
DATASETS = {
    "ml100k": ["--dataset", "movielens-100k", "--fold", "0", "--epochs", "20", "--min-epochs", "3"],
    "ml1m": ["--dataset", "movielens-1m-lcfn", "--no-side-features", "--epochs", "8",
             "--min-epochs", "3"],
    # the same cells again on this session's quieter machine, for seconds comparable with the new
    # cells (the first ML-1M cells ran beside up to five other processes)
    "ml100k-now": ["--dataset", "movielens-100k", "--fold", "0", "--epochs", "20", "--min-epochs", "3"],
    "ml1m-now": ["--dataset", "movielens-1m-lcfn", "--no-side-features", "--epochs", "8",
                 "--min-epochs", "3"],
    # Unit vectors and a temperature (not in the paper; the TF implementation uses tau 0.05): with
    # dot products the bank's detached negatives let the item norms grow without bound.
    "ml100k-cos": ["--dataset", "movielens-100k", "--fold", "0", "--epochs", "20",
                   "--min-epochs", "3", "--measure", "cosine", "--temperature", "0.1"],
    "abook": ["--dataset", "amazon-book-kgat", "--no-side-features", "--epochs", "4",
              "--min-epochs", "2"],
    # Temperature of the cosine score, chosen on the validation split (10% of each user's
    # training items) of MovieLens-100k fold 0, in-batch B = 256; `report ml100k-tune` prints the
    # validation numbers only. T = 0.1 is runs/cbns-ml100k-cos/in-batch-b256.
    "ml100k-tune": ["--dataset", "movielens-100k", "--fold", "0", "--epochs", "20",
                    "--min-epochs", "3", "--measure", "cosine"],
    # the cosine grid again at the temperature chosen on validation (T = 0.2, `report ml100k-tune`)
    "ml100k-cos2": ["--dataset", "movielens-100k", "--fold", "0", "--epochs", "20",
                    "--min-epochs", "3", "--measure", "cosine", "--temperature", "0.2"],
}
TEMPERATURES = [0.05, 0.2, 0.5]
DOT_TEMPERATURES = [0.5, 2.0, 4.0]  # T = 1 is runs/cbns-ml100k/in-batch-b256
IN_BATCH = [64, 128, 256, 512, 1024, 2048]
BANK = [(b, m) for b in (64, 128, 256) for m in (512, 2048, 8192)]


def cells(name: str) -> dict[str, list[str]]:
    out = {f"in-batch-b{b}": ["--sampler", "in-batch", "--batch-size", str(b)] for b in IN_BATCH}
    out.update({f"bank-b{b}-m{m}": ["--sampler", "memory-bank", "--batch-size", str(b),
                                    "--bank-size", str(m), "--warmup", "100"] for b, m in BANK})
    out["uniform-softmax-b256-n2048"] = ["--sampler", "uniform-softmax", "--batch-size", "256",
                                         "--negatives", "2048"]
    # not in the paper: the bank's softmax trains the user tower only, the item tower learns from
    # the in-batch softmax (--split-bank-gradient)
    out.update({f"bank-split-b{b}-m{m}": [*out[f"bank-b{b}-m{m}"], "--split-bank-gradient"]
                for b, m in BANK})
    if name == "ml100k-tune":
        tune = {f"cos-t{t}": ["--sampler", "in-batch", "--batch-size", "256", "--temperature", str(t)]
                for t in TEMPERATURES}
        tune.update({f"dot-t{t}": ["--sampler", "in-batch", "--batch-size", "256", "--temperature",
                                   str(t), "--measure", "dot"] for t in DOT_TEMPERATURES})
        return tune
    if name in ("ml100k-cos", "ml100k-cos2"):
        keep = ["in-batch-b64", "bank-b64-m2048", "in-batch-b256", "bank-b256-m2048",
                "in-batch-b2048", "bank-b64-m512", "bank-b256-m8192", "in-batch-b512"]
        keep += ["bank-split-b256-m2048", "bank-split-b64-m2048"] if name == "ml100k-cos2" else []
        return {k: out[k] for k in keep}
    if name not in ("ml100k", "ml100k-now"):  # the larger catalogues: the cells the time allows, cheapest first
        keep = ["in-batch-b256", "in-batch-b2048", "bank-b256-m2048", "in-batch-b1024",
                "bank-b256-m8192", "uniform-softmax-b256-n2048", "bank-b256-m512",
                "in-batch-b512", "bank-b128-m2048", "in-batch-b128", "bank-split-b256-m2048",
                "bank-split-b256-m8192", "bank-split-b128-m2048"]
        out = {k: out[k] for k in keep}
    return out


def run(name: str, only: str = "") -> None:
    """Trains the cells of `name` (or only those listed, comma-separated, in that order)."""
    base = ROOT / "runs" / f"cbns-{name}"
    base.mkdir(parents=True, exist_ok=True)
    todo = cells(name)
    if only:
        todo = {k: todo[k] for k in only.split(",")}
    for cell, args in todo.items():
        out = base / cell
        if (out / "metrics.json").exists():
            continue
        cmd = ["/usr/bin/time", "-f", "%M", "-o", str(base / f"{cell}.rss"), NEGSPACE, "train",
               *DATASETS[name], *COMMON, *args, "--out", str(out), "--overwrite"]
        with open(base / f"{cell}.log", "w") as log:
            subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False)


def tune_report() -> None:
    """Validation numbers only (the selection metric, ndcg@50, at the kept epoch) per temperature."""
    tune = ROOT / "runs" / "cbns-ml100k-tune"
    runs = {("cosine", 0.1): ROOT / "runs" / "cbns-ml100k-cos" / "in-batch-b256",
            ("dot", 1.0): ROOT / "runs" / "cbns-ml100k" / "in-batch-b256"}
    runs.update({("cosine", t): tune / f"cos-t{t}" for t in TEMPERATURES})
    runs.update({("dot", t): tune / f"dot-t{t}" for t in DOT_TEMPERATURES})
    print("| score | T | epochs (best) | val NDCG@50 | val Recall@20 | val NDCG@20 |")
    print("|---|---|---|---|---|---|")
    for (measure, t), out in sorted(runs.items()):
        if not (out / "metrics.json").exists():
            continue
        hist = list(csv.DictReader((out / "history.csv").open()))
        best = int(json.loads((out / "metrics.json").read_text())["best_epoch"])
        h = hist[best - 1]
        print(f"| {measure} | {t} | {len(hist)} ({best}) | {float(h['val_ndcg@50']):.4f} "
              f"| {float(h['val_recall@20']):.4f} | {float(h['val_ndcg@20']):.4f} |")


def report(name: str) -> None:
    if name == "ml100k-tune":
        return tune_report()
    # A cell rerun under NAME-now (same options, on a quieter machine: the same metrics, other
    # seconds) is reported from there, marked "(rerun)".
    now = ROOT / "runs" / f"cbns-{name}-now"
    rows = []
    for cell in cells(name):
        rerun = (now / cell / "metrics.json").exists() and (now / f"{cell}.rss").exists()
        base = now if rerun else ROOT / "runs" / f"cbns-{name}"
        out = base / cell
        rss_file = base / f"{cell}.rss"
        if not (out / "metrics.json").exists() or not rss_file.read_text().strip():
            continue  # unfinished (the peak memory is written when the process exits)
        m = json.loads((out / "metrics.json").read_text())
        t = json.loads((out / "timing.json").read_text())
        hist = list(csv.DictReader((out / "history.csv").open()))
        rss = rss_file.read_text().split()[-1]
        rows.append({"cell": cell + (" (rerun)" if rerun else ""), "recall@20": m["recall@20"], "ndcg@20": m["ndcg@20"],
                     "epochs": len(hist), "best_epoch": int(m["best_epoch"]),
                     "s_per_epoch": sum(float(h["seconds"]) for h in hist) / len(hist),
                     "train_s": t["train_seconds"], "peak_mb": int(rss) / 1024,
                     "drift_1": float(hist[-1].get("drift_1", "nan")),
                     "drift_10": float(hist[-1].get("drift_10", "nan")),
                     # when it finished: cells of different sessions ran under different loads
                     "finished": time.strftime("%H:%M", time.gmtime((out / "metrics.json").stat().st_mtime))})
    print("| cell | Recall@20 | NDCG@20 | epochs (best) | s/epoch | train s | peak RSS MB | drift 1 / 10 steps (last epoch) | finished (UTC) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['cell']} | {r['recall@20']:.4f} | {r['ndcg@20']:.4f} | {r['epochs']} ({r['best_epoch']}) "
              f"| {r['s_per_epoch']:.1f} | {r['train_s']:.0f} | {r['peak_mb']:.0f} "
              f"| {r['drift_1']:.1f} / {r['drift_10']:.1f} | {r['finished']} |")
    if not rows:
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for kind, marker in (("in-batch", "o"), ("bank", "s"), ("bank-split", "D"),
                         ("uniform-softmax", "^")):
        pts = [r for r in rows if r["cell"].startswith(kind + "-")
               and not (kind == "bank" and r["cell"].startswith("bank-split-"))]
        ax.scatter([r["train_s"] for r in pts], [r["ndcg@20"] for r in pts], marker=marker,
                   label=kind)
        for r in pts:
            ax.annotate(r["cell"].replace(kind + "-", ""), (r["train_s"], r["ndcg@20"]), fontsize=6)
    ax.set_xscale("log")
    ax.set_xlabel("training seconds (whole run, 1 thread, shared CPU)")
    ax.set_ylabel("test NDCG@20")
    ax.set_title(f"two-tower on {name}")
    ax.legend()
    fig.tight_layout()
    img = ROOT / "docs" / "img" / f"cbns-{name}.png"
    fig.savefig(img, dpi=110)
    print(f"\nplot: {img.relative_to(ROOT)}")


if __name__ == "__main__":
    {"run": run, "report": report}[sys.argv[1]](*sys.argv[2:])
