"""A planted synthetic data set at any size (`negspace data synth`).

Each item belongs to one topic and, inside it, has power-law popularity (the r-th item of a topic
is drawn with weight r^-exponent). Each user has a topic mixture drawn from a symmetric Dirichlet
(small concentration: a few topics per user) and a number of distinct items (negative binomial,
at least 2, mean --pairs-per-user); its items are drawn topic first, then item, without
repetition. A seeded fraction of each user's items forms the test split. The result is written as
train.txt / test.txt (`user item item ...`, the layout of the named given-split sets), so
`negspace train --dataset DIR` reads it, plus synth.json (the options and the counts).

Users are generated in chunks with numpy only, each chunk from its own seeded generator, so the
memory is bounded by the chunk and the output is the same for the same options.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from negspace.errors import NegspaceError

CHUNK_USERS = 16_384  # users generated at a time: a few tens of MB of arrays
OVERDRAW = 1.5  # draws per wanted item before the repeats are removed


@dataclass(frozen=True)
class SynthSpec:
    """The options of a planted data set (the CLI flags of `negspace data synth`)."""

    users: int = 10_000
    items: int = 5_000
    topics: int = 50
    pairs_per_user: float = 30.0
    exponent: float = 1.0
    concentration: float = 0.1
    dispersion: float = 1.0
    test_fraction: float = 0.2
    seed: int = 0

    def check(self) -> "SynthSpec":
        """Raises NegspaceError naming the first bad option."""
        rules = [(self.users >= 1, "--users must be >= 1"),
                 (self.items >= 2, "--items must be >= 2"),
                 (1 <= self.topics <= self.items, "--topics must be between 1 and --items"),
                 (2 <= self.pairs_per_user <= self.items / 2,
                  "--pairs-per-user must be between 2 and half of --items"),
                 (0 <= self.exponent <= 5, "--exponent must be between 0 and 5"),
                 (self.concentration > 0, "--concentration must be > 0"),
                 (self.dispersion > 0, "--dispersion must be > 0"),
                 (0 <= self.test_fraction < 1, "--test-fraction must be in [0, 1)"),
                 (self.seed >= 0, "--seed must be >= 0")]
        for ok, message in rules:
            if not ok:
                raise NegspaceError(message)
        return self


def item_topics(spec: SynthSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The planted catalogue: (topic of each item, items ordered by topic then popularity rank,
    cumulative in-topic weights offset by the topic, so that topic t's item for a uniform r in
    [0, 1) is found by searching t + r)."""
    rng = np.random.default_rng([spec.seed, 0])
    order = rng.permutation(spec.items)  # topic t holds order[t::topics], most popular first
    topic = np.empty(spec.items, np.int64)
    topic[order] = np.arange(spec.items) % spec.topics
    by_topic, cdf = [], []
    for t in range(spec.topics):
        members = order[t::spec.topics]
        w = np.arange(1, len(members) + 1, dtype=np.float64) ** -spec.exponent
        c = np.cumsum(w) / w.sum()
        c[-1] = 1.0
        by_topic.append(members)
        cdf.append(t + c)
    return topic, np.concatenate(by_topic), np.concatenate(cdf)


def _chunk(spec: SynthSpec, index: int, n: int, catalogue: tuple) -> tuple[np.ndarray, ...]:
    """(user, item, is_test) of `n` users, local user indices, sorted by user then item."""
    _, ordered, cdf = catalogue
    rng = np.random.default_rng([spec.seed, 1, index])
    k = spec.topics
    theta = rng.dirichlet(np.full(k, spec.concentration), size=n)
    # distinct items per user: negative binomial with mean pairs_per_user, at least 2
    mean = spec.pairs_per_user - 2
    p = spec.dispersion / (spec.dispersion + mean)
    want = np.minimum(2 + rng.negative_binomial(spec.dispersion, p, n), spec.items // 2)
    draws = np.ceil(want * OVERDRAW).astype(np.int64) + 4
    user = np.repeat(np.arange(n), draws)
    # topic of each draw from its user's mixture: one search over the row-offset cumulative sums
    cum = np.cumsum(theta, axis=1)
    cum[:, -1] = 1.0
    cum += np.arange(n)[:, None]
    z = np.searchsorted(cum.ravel(), user + rng.random(len(user)), side="right") - user * k
    z = np.clip(z, 0, k - 1)
    # item inside the topic
    pos = np.searchsorted(cdf, z + rng.random(len(user)), side="right")
    ends = np.searchsorted(cdf, np.arange(1, k + 1), side="right")  # one past each topic
    pos = np.minimum(pos, ends[z] - 1)
    item = ordered[pos]
    # repeats removed: a user keeps its first `want` distinct items in draw order (sequential
    # sampling without replacement)
    _, first = np.unique(user * spec.items + item, return_index=True)
    first.sort()
    user, item = user[first], item[first]
    rank = _rank_in_group(user)
    keep = rank < want[user]
    user, item = user[keep], item[keep]
    # test split: a seeded share of each user's items, stochastically rounded, >= 1 train item
    have = np.bincount(user, minlength=n)
    n_test = np.floor(have * spec.test_fraction + rng.random(n)).astype(np.int64)
    n_test = np.clip(n_test, 1 if spec.test_fraction > 0 else 0, None)
    n_test = np.minimum(n_test, have - 1)
    shuffle = np.argsort(user + rng.random(len(user)))  # users in order, items shuffled
    is_test = np.empty(len(user), bool)
    is_test[shuffle] = _rank_in_group(user[shuffle]) < n_test[user[shuffle]]
    order = np.argsort(user * spec.items + item)
    return user[order], item[order], is_test[order]


def _rank_in_group(keys: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each run of equal values of a grouped array."""
    starts = np.r_[0, np.flatnonzero(keys[1:] != keys[:-1]) + 1]
    lengths = np.diff(np.r_[starts, len(keys)])
    return np.arange(len(keys)) - np.repeat(starts, lengths)


def write_lists(f: IO[str], user: np.ndarray, item: np.ndarray) -> None:
    """`user item item ...` lines of pairs sorted by user."""
    if len(user) == 0:
        return
    starts = np.r_[0, np.flatnonzero(user[1:] != user[:-1]) + 1, len(user)]
    tokens = list(map(str, item.tolist()))
    heads = user[starts[:-1]].tolist()
    f.write("".join(f"{u} {' '.join(tokens[a:b])}\n"
                    for u, a, b in zip(heads, starts[:-1].tolist(), starts[1:].tolist())))


def generate(spec: SynthSpec, out: str | Path, overwrite: bool = False) -> dict:
    """Writes the data set to folder `out` (built beside it, then renamed into place).

    Returns:
        synth.json's content: the options and the counts written.
    """
    spec.check()
    out = Path(out)
    if out.exists() and not (overwrite or (out.is_dir() and not any(out.iterdir()))):
        raise NegspaceError(f"{out} exists and is not empty (--overwrite replaces it)")
    if out.exists() and not out.is_dir():
        raise NegspaceError(f"{out} exists and is not a folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        counts = _write(spec, tmp)
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return counts


def _write(spec: SynthSpec, folder: Path) -> dict:
    catalogue = item_topics(spec)
    n_train = n_test = 0
    seen = np.zeros(spec.items, bool)
    with open(folder / "train.txt", "w") as ftrain, open(folder / "test.txt", "w") as ftest:
        for index, start in enumerate(range(0, spec.users, CHUNK_USERS)):
            n = min(CHUNK_USERS, spec.users - start)
            user, item, is_test = _chunk(spec, index, n, catalogue)
            user += start
            write_lists(ftrain, user[~is_test], item[~is_test])
            write_lists(ftest, user[is_test], item[is_test])
            n_test += int(is_test.sum())
            n_train += int((~is_test).sum())
            seen[item] = True
    info = {"generator": "negspace data synth", "options": dataclasses.asdict(spec),
            "users": spec.users, "items_used": int(seen.sum()), "train_pairs": n_train,
            "test_pairs": n_test}
    (folder / "synth.json").write_text(json.dumps(info, indent=1) + "\n")
    return info
