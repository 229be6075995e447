"""Paired significance tests of test metrics: negspace's default and recipes against tuned peers.

    python bench/significance.py --dataset book-crossing-caserec-subset \
        --method default \
        --method recipe=configs/recipes/book-crossing-caserec-subset.toml \
        --method 'als={"factors": 512, "regularization": 39.2, "alpha": 9.82, "iterations": 20}' \
        --method ease=56.23 --metrics map@50 ndcg@50 [--record accuracy]

Every method is trained on the split `negspace train --dataset NAME` uses (the given split, or
fold 0 of 4), with settings fixed beforehand (chosen on validation by `negspace tune` and
bench/tune_peers.py; nothing here chooses anything), and ranks the test users once. Each pair is
then compared user by user (evaluation/significance.py: a randomization test and a bootstrap
interval of the mean difference over test users). Per-user values are kept in
OUT/DATASET/KIND-TAG.npz (TAG names the method's value), so a rerun only trains the methods it
lacks; delete them after changing the code they measure.

Methods: `default` (the default recipe), `recipe=FILE` (a TOML recipe), `als=JSON` (implicit's
ALS: factors, regularization, alpha, iterations; needs the bench extra), `ease=LAMBDA`.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402  -- imports negspace first (its OpenMP setting precedes torch)
import harness  # noqa: E402

from negspace.config import load_toml, make_config, with_default_recipe  # noqa: E402
from negspace.evaluation.evaluator import per_user_metrics, rank_test_users  # noqa: E402
from negspace.evaluation.significance import compare_paired  # noqa: E402
from negspace.pipeline.fit import run_training  # noqa: E402
from negspace.training.trainer import score_fn  # noqa: E402

KS = (20, 50)
LABELS = {"default": "negspace default", "recipe": "negspace recipe", "als": "ALS tuned",
          "ease": "EASE"}


def parse_method(text: str) -> tuple[str, str]:
    """`KIND` or `KIND=VALUE` -> (kind, value); an unknown kind is a one-line error."""
    kind, _, value = text.partition("=")
    if kind not in LABELS:
        raise SystemExit(f"error: unknown method {kind!r}; use one of {', '.join(LABELS)}")
    if (kind == "default") == bool(value):
        raise SystemExit(f"error: --method {text!r}: default takes no value, the others one")
    return kind, value


def split_digest(train, test) -> str:
    """Names the split: two methods are paired only when they were trained and tested on the
    same one (a recipe with another seed splits the folds differently)."""
    h = hashlib.sha1()
    for part in (train, test):
        m = part.matrix.tocsr()
        h.update(np.ascontiguousarray(m.indptr, np.int64).tobytes())
        h.update(np.ascontiguousarray(m.indices, np.int64).tobytes())
    return h.hexdigest()


def per_user(kind: str, value: str, dataset: str, threads: int
             ) -> tuple[np.ndarray, dict, str]:
    """(test users, per-user metrics, the split's digest) of one method trained on the run's
    split."""
    if kind in ("default", "recipe"):
        values = with_default_recipe({"dataset": dataset}) if kind == "default" else \
            {**load_toml(value), "dataset": dataset}
        out = run_training(make_config({**values, "fold": 0, "threads": threads,
                                        "progress": False}))
        train, test, scores = out.train, out.test, score_fn(out.model)
    else:
        _, train, test = harness.load_split(dataset)
        if kind == "als":
            p = json.loads(value)
            factors = int(p.pop("factors"))
            users, items, bias, _ = peers.FITS["als"](peers.csr(train), factors, threads, 0, p)
            scores = peers.factor_score_fn(users, items, bias)
        else:
            scores = peers.Ease(peers.csr(train), float(value)).score_fn()
    users, top = rank_test_users(scores, train, test, KS)
    return users, per_user_metrics(top, users, test, KS), split_digest(train, test)


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Writes `path` atomically (a killed run leaves no half file to be reused)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
    os.close(fd)
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--method", action="append", required=True, dest="methods",
                   help="default, recipe=FILE, als=JSON or ease=LAMBDA (repeat; two or more)")
    p.add_argument("--metrics", nargs="+", default=["map@50", "ndcg@50"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--resamples", type=int, default=10_000)
    p.add_argument("--out", type=Path, default=Path("runs/significance"))
    p.add_argument("--record", metavar="TOPIC", help="append each pair to bench/records/TOPIC.jsonl")
    a = p.parse_args(argv)
    methods = [parse_method(m) for m in a.methods]
    if len(methods) < 2:
        raise SystemExit("error: give two methods or more")
    known = {f"{n}@{k}" for k in KS for n in ("map", "ndcg", "recall", "precision", "hit")}
    if set(a.metrics) - known:
        raise SystemExit(f"error: unknown metric(s) {sorted(set(a.metrics) - known)}; "
                         f"use {sorted(known)}")
    values: dict[str, dict] = {}
    digest: str | None = None
    users = np.empty(0, np.int64)
    kinds = [kind for kind, _ in methods]
    # a name per method: its kind, numbered when the kind repeats (two recipes)
    names = [k if kinds.count(k) == 1 else f"{k}-{kinds[:i + 1].count(k)}"
             for i, k in enumerate(kinds)]
    for name, (kind, value) in zip(names, methods):
        tag = hashlib.sha1(value.encode()).hexdigest()[:8] if value else "default"
        path = a.out / Path(a.dataset).name / f"{kind}-{tag}.npz"  # reused for the same method
        if path.exists():
            saved = np.load(path)
            u, split = saved["users"], str(saved["split"])
            metrics = {k: saved[k] for k in saved.files if k not in ("users", "split")}
        else:
            print(f"{name}: training and ranking the test users", flush=True)
            u, metrics, split = per_user(kind, value, a.dataset, a.threads)
            save_npz(path, users=u, split=np.array(split), **metrics)
        if digest is not None and (split != digest or not np.array_equal(users, u)):
            raise SystemExit(f"error: {name} was trained and tested on another split ({path}): "
                             "not paired")
        users, digest, values[name] = u, split, metrics
    print(f"{a.dataset}: {len(users)} test users")
    label = {n: LABELS[k] + ("" if n == k else f" {n.rsplit('-', 1)[1]}")
             for n, k in zip(names, kinds)}
    for ka, kb in itertools.combinations(names, 2):
        for metric in a.metrics:
            c = compare_paired(values[ka][metric], values[kb][metric], metric,
                               n_resamples=a.resamples)
            print(f"{ka:>8} vs {kb:<8} {metric:8} {c.mean_a:.4f} vs {c.mean_b:.4f}: "
                  f"{100 * c.relative:+.1f}%, 95% interval of the difference "
                  f"[{c.ci_low:+.4f}, {c.ci_high:+.4f}], p {c.p_value:.3f}: "
                  + c.verdict(a=ka, b=kb), flush=True)
            if a.record:
                harness.record(
                    a.record, id=f"significance-{a.dataset}-{ka}-{kb}-{metric}",
                    section="significance", dataset=a.dataset,
                    method=f"{label[ka]} vs {label[kb]}, {metric}",
                    protocol="settings fixed beforehand (chosen on validation); test read once "
                             "per method",
                    metrics={"mean_a": round(c.mean_a, 5), "mean_b": round(c.mean_b, 5),
                             "difference_pct": round(100 * c.relative, 2),
                             "ci_low": round(c.ci_low, 5), "ci_high": round(c.ci_high, 5),
                             "p_value": round(c.p_value, 4), "test_users": len(users)},
                    command=harness.command(argv), note=c.verdict(a=label[ka], b=label[kb])
                    + f" at the 5% level (paired randomization test, {a.resamples:,} resamples; "
                      "95% bootstrap interval of the mean difference over test users)")


if __name__ == "__main__":
    main()
