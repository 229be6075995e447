"""What the bench suite shares: a dataset and its split as `negspace train` makes them, timing,
a description of the machine (CPU model, cores, load average, torch, GPU), and result records,
one JSON object a line in bench/records/TOPIC.jsonl, from which `python -m bench.report`
renders docs/results.md.

A record (keys after `machine` are optional):
    {"id": "unique-slug", "section": "summary|accuracy|schedule|speed|scale|serving|peers|
     published-protocol", "dataset": "movielens-1m-lcfn", "method": "negspace default",
     "metrics": {"recall@20": 0.2806}, "command": "negspace train --dataset movielens-1m-lcfn",
     "date": "2026-12-05", "machine": "2-core x86_64, shared", "protocol": "...",
     "train_s": 57.7, "load": "shared with other jobs", "note": "one short sentence"}

Only the standard library is imported at module level, so the report runs without torch;
negspace is imported by the functions that need it.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import shlex
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "bench" / "records"
REQUIRED = ("id", "section", "dataset", "method", "metrics", "command", "date", "machine")
# a home, a scratch folder or a mount of one machine: commands name datasets or $NEGSPACE_DATA
ABSOLUTE = re.compile(r"(?<![\w.$}])/(?:work|home|tmp|root|mnt|Users|scratch)/")


# ---------------------------------------------------------------- machine and load

def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """CPU model, cores, load average (1, 5, 15 min), platform, torch and GPU when present."""
    info: dict[str, Any] = {"cpu": cpu_model(), "cores": os.cpu_count(),
                            "arch": platform.machine(), "python": platform.python_version()}
    try:
        info["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        info["loadavg"] = None
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    return info


def machine_text(info: dict[str, Any] | None = None) -> str:
    info = info or machine_info()
    text = f"{info['cores']}-core {info['arch']} ({info['cpu']})"
    return text + (f", {info['gpu']}" if info.get("gpu") else "")


def load_text(info: dict[str, Any] | None = None) -> str:
    """'quiet' when the 1-minute load average is under half the cores, else 'shared'."""
    info = info or machine_info()
    if not info.get("loadavg"):
        return "unknown"
    one = info["loadavg"][0]
    word = "quiet" if one < 0.5 * (info["cores"] or 1) else "shared with other jobs"
    return f"{word} (load average {one:.1f} on {info['cores']} cores)"


# ---------------------------------------------------------------- the benchmarked settings

# One configuration per sampler (the settings bench/peers.py trains with, N = 5 per-row), as
# TrainConfig options: profile_steps.py times each step, gpu_bench.py each epoch.
CASES: dict[str, dict[str, Any]] = {
    "uniform": {"model": "cml", "sampler": "uniform", "negatives": 5, "lr": 0.01},
    "popularity": {"model": "cml", "sampler": "popularity", "negatives": 5, "lr": 0.01},
    "two-stage": {"model": "cml", "sampler": "two-stage", "two_stage_temperature": 64.0,
                  "two_stage_cap": 0.875, "negatives": 5, "lr": 0.01},
    "shared-800 (mf, mml)": {"model": "mf", "loss": "mml", "sampler": "uniform",
                             "negative_mode": "shared", "negatives": 800, "lr": 1e-3},
    "in-batch (two-tower)": {"model": "two-tower", "loss": "softmax", "sampler": "in-batch",
                             "lr": 1e-3, "side_features": False},
    "memory-bank (two-tower)": {"model": "two-tower", "loss": "softmax",
                                "sampler": "memory-bank", "bank_size": 2048, "lr": 1e-3,
                                "side_features": False},
}


# ---------------------------------------------------------------- timing

@contextmanager
def timed() -> Iterator[dict[str, float]]:
    """`with timed() as t: ...` then t["wall_s"], t["cpu_s"] (this process's CPU seconds)."""
    t: dict[str, float] = {}
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield t
    finally:
        t["wall_s"] = time.perf_counter() - wall
        t["cpu_s"] = time.process_time() - cpu


# ---------------------------------------------------------------- data

def recipe_option(text: str) -> tuple[str, Any]:
    """A `--set KEY=VALUE` of the research scripts: (key with dashes as underscores, the value
    as JSON, or the string itself where it is not JSON)."""
    key, _, value = text.partition("=")
    try:
        return key.replace("-", "_"), json.loads(value)
    except json.JSONDecodeError:
        return key.replace("-", "_"), value


def load_split(dataset: str, fold: int = 0, seed: int = 0, **values: Any) -> tuple[Any, Any, Any]:
    """(config, train, test) of a named dataset (or a file), split as `negspace train` splits it:
    the given split, or fold `fold` of 4 (seed `seed`) for k-fold data."""
    from negspace.pipeline.fit import load_for, split_for
    from negspace.config import make_config

    cfg = make_config({"dataset": dataset, "fold": fold, "seed": seed, **values})
    train, test = split_for(cfg, load_for(cfg))
    return cfg, train, test


# ---------------------------------------------------------------- records

def command(argv: list[str] | None = None, script: str | None = None) -> str:
    """This process's command line, path-free: the script and other paths in the repository
    relative to it, the data folder as $NEGSPACE_DATA, the temporary folder as $TMPDIR and the
    home folder as ~."""
    argv = list(sys.argv if argv is None else argv)
    head = script or (Path(argv[0]).resolve().relative_to(ROOT).as_posix() if argv else "")
    prefixes = [(str(ROOT) + "/", ""), (str(ROOT), "."),
                (tempfile.gettempdir(), "$TMPDIR"), (str(Path.home()), "~")]
    if os.environ.get("NEGSPACE_DATA"):
        prefixes.insert(0, (os.environ["NEGSPACE_DATA"].rstrip("/"), "$NEGSPACE_DATA"))
    words = []
    for word in argv[1:]:
        for prefix, short in prefixes:
            if prefix not in ("", "/") and prefix in word:
                word = word.replace(prefix, short)
                break
        words.append(word if word[:1] in "$~" or "=$" in word else shlex.quote(word))
    return " ".join(["python", head, *words])


def check(record: dict[str, Any]) -> list[str]:
    """What is wrong with a record (empty when nothing)."""
    problems = [f"missing {key}" for key in REQUIRED if key not in record]
    if not isinstance(record.get("metrics", {}), dict):
        problems.append("metrics is not an object")
    if ABSOLUTE.search(str(record.get("command", ""))):
        problems.append("command names an absolute machine path")
    return problems


def record(topic: str, folder: Path = RECORDS, **fields: Any) -> dict[str, Any]:
    """Appends one record to FOLDER/TOPIC.jsonl; date, machine and load default to now/here."""
    info = machine_info()
    rec = {"date": _dt.datetime.now(_dt.timezone.utc).date().isoformat(),
           "machine": machine_text(info), "load": load_text(info), **fields}
    problems = check(rec)
    if problems:
        raise ValueError(f"record {rec.get('id')!r}: " + "; ".join(problems))
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{topic}.jsonl", "a") as f:
        f.write(json.dumps(rec) + "\n")
    return rec


def read_records(folder: Path = RECORDS) -> list[dict[str, Any]]:
    """Every record of FOLDER/*.jsonl, by file name then line; a bad line is an error naming it."""
    out = []
    for path in sorted(folder.glob("*.jsonl")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path.name}:{number}: not JSON ({e.msg})") from None
            problems = check(rec)
            if problems:
                raise ValueError(f"{path.name}:{number}: " + "; ".join(problems))
            rec.setdefault("topic", path.stem)
            out.append(rec)
    return out
