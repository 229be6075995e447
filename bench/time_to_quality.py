"""How long negspace's models take to reach the best peer's quality, measured on the validation
split both can be scored on (issue 6's time target).

The peer (ALS, the best peer on every dataset here) is fitted with its bench/peers.py settings on
the same 90% of the training data negspace trains on and scored on the same 10% validation split
(`holdout_split(train, 0.1, seed 0)`, what `negspace train` carves); negspace's per-epoch
validation metrics and epoch seconds are read from bench/peers.py's JSONs. Printed per model: the
first epoch whose validation metric reaches the peer's, and the training seconds up to it,
against the peer's fit seconds on the full training data (from the same JSONs). The test split is
not touched.

Run:  NEGSPACE_DATA=... .venv/bin/python bench/time_to_quality.py [--out runs/peers-quiet]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import negspace  # noqa: F401  -- first: its OpenMP setting must precede torch
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import DATASETS, FITS, PEERS, csr, factor_score_fn, split  # noqa: E402

from negspace.data.splits import holdout_split  # noqa: E402
from negspace.evaluation.evaluator import evaluate  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/peers-quiet")
    p.add_argument("--peer", default="als", choices=list(PEERS))
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    lines = ["| dataset | metric | peer on validation | peer fit s (all training data) | model "
             "| best validation | epoch reaching the peer | seconds to it |",
             "|---|---|---|---|---|---|---|---|"]
    for dataset, (protocol, dim) in DATASETS.items():
        folder = Path(args.out) / dataset
        if not (folder / f"{args.peer}.json").exists():
            continue
        metric = "recall@20" if protocol == "given" else "ndcg@50"
        train, _ = split(dataset)
        fit_on, val = holdout_split(train, 0.1, 0)
        users, items, bias, _ = FITS[args.peer](csr(fit_on), dim, args.threads, 0,
                                                PEERS[args.peer])
        target = evaluate(factor_score_fn(users, items, bias), fit_on, val, ks=(20, 50))[metric]
        peer_s = json.loads((folder / f"{args.peer}.json").read_text())["train_seconds"]
        for path in sorted(folder.glob("*.json")):
            r = json.loads(path.read_text())
            history = r.get("history") or []
            if not history or f"val_{metric}" not in history[0]:
                continue  # a peer, or a refit (no validation split)
            seconds, reached = 0.0, None
            for row in history:
                seconds += row["seconds"]
                if reached is None and row[f"val_{metric}"] >= target:
                    reached = (row["epoch"], seconds)
            best = max(row[f"val_{metric}"] for row in history)
            lines.append(f"| {dataset} | {metric} | {target:.4f} | {peer_s:.1f} | {r['method']} "
                         f"| {best:.4f} | {reached[0] if reached else 'never'} "
                         f"| {f'{reached[1]:.1f}' if reached else '-'} |")
            print(lines[-1], flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
