"""Golden outputs: fixed configurations whose metrics and model bytes must not change when code
moves without a change in behaviour.

    python tests/golden/record.py --write            # record tests/golden/golden.json
    python tests/golden/record.py --check [--quick]  # run again and compare (exit 1 on a diff)

Records are kept per platform (`platform_key`: the CPU's vendor and the vector unit torch
dispatches to): MKL takes other code paths on other CPUs, so the last bits of every product, and
with them the vector bytes and the history's losses, differ from one to another (seen between an
Intel Xeon and an AMD EPYC, both AVX-512: every case's bytes, and ranking metrics by up to 0.014
after the sampled cases' 3 epochs). On a platform with a record of a case the comparison is
exact; elsewhere the ranking metrics must lie within CROSS_PLATFORM_TOLERANCE of another
platform's record, which catches a change of behaviour but not of the last bits.

Each case prints its training seconds (timing.json), so the same command run on two commits
compares their speed on one machine.

`--quick` runs only the configurations on small data (tests/test_golden.py runs those). Data is
found as `negspace train` finds it (`$NEGSPACE_DATA`, ../shared/data).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import re
import sys
import tempfile
from pathlib import Path

GOLDEN = Path(__file__).with_name("golden.json")
CROSS_PLATFORM_TOLERANCE = 0.03  # absolute, on map / ndcg / recall / precision / hit @K
_RANKING = re.compile(r"^(map|ndcg|recall|precision|hit)@\d+$")

# name -> (train options, small data?)
CASES: dict[str, tuple[dict, bool]] = {
    "default-ml1m": ({"dataset": "movielens-1m-lcfn", "epochs": 3}, False),
    "cml-two-stage-lastfm": ({"dataset": "lastfm-hetrec2011", "model": "cml",
                              "sampler": "two-stage", "epochs": 3}, True),
    "mf-mml-shared": ({"dataset": "movielens-100k", "model": "mf", "loss": "mml",
                       "negative_mode": "shared", "negatives": 300, "epochs": 3}, True),
    "two-tower-bank": ({"dataset": "movielens-100k", "model": "two-tower",
                        "sampler": "memory-bank", "bank_size": 512, "epochs": 3}, True),
    "simplex-ccl": ({"dataset": "movielens-100k", "model": "simplex", "loss": "ccl",
                     "epochs": 3}, True),
    "mf-refit": ({"dataset": "movielens-100k", "model": "mf", "loss": "softmax",
                  "sampler": "in-batch", "refit": "yes", "epochs": 3}, True),
    "default-ml100k": ({"dataset": "movielens-100k", "epochs": 3}, True),
}
RESUMED = "cml-uniform-resumed"  # trained 2 epochs, stopped, resumed to 4


def _api():
    try:
        from negspace.config import make_config
        from negspace.pipeline.fit import resume_training, run_training
    except ImportError:  # the layout before the redesign: before/after timings of the same cases
        from negspace.experiments.run import resume_training, run_training
        from negspace.training.config import make_config
    return run_training, resume_training, make_config


def _digest(run_dir: Path) -> dict:
    """What must stay the same: test metrics, the vectors' bytes and the validation history."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    if metrics.get("item_filter") == 0.0:  # no item filter: recorded as before the option
        del metrics["item_filter"]
    history = (run_dir / "history.csv").read_text().splitlines()
    header = history[0].split(",")
    keep = [i for i, h in enumerate(header) if "second" not in h]
    rows = [",".join(r.split(",")[i] for i in keep) for r in history]
    seconds = json.loads((run_dir / "timing.json").read_text())["train_seconds"]
    print(f"  train_seconds {seconds}", flush=True)
    return {"metrics": metrics,
            "vectors_sha256": hashlib.sha256((run_dir / "model.safetensors").read_bytes()).hexdigest(),
            "history_sha256": hashlib.sha256("\n".join(rows).encode()).hexdigest()}


def run_case(name: str, root: Path) -> dict:
    run_training, resume_training, make_config = _api()
    base = {"seed": 0, "threads": 1, "progress": False}
    if name == RESUMED:
        cfg = make_config({**base, "dataset": "movielens-100k", "model": "cml",
                           "sampler": "uniform", "epochs": 4, "lr_schedule": "none",
                           "min_epochs": 4})

        class Stop(Exception):
            pass

        def stop_after_two(row: dict) -> None:
            if row["epoch"] == 2:
                raise Stop

        try:
            run_training(cfg, root / name, on_epoch=stop_after_two)
        except Stop:
            pass
        resume_training(root / name)
    else:
        run_training(make_config({**base, **CASES[name][0]}), root / name)
    return _digest(root / name)


def platform_key() -> str:
    """The machine, CPU vendor and torch's CPU capability, e.g. x86_64-GenuineIntel-AVX512."""
    import torch

    vendor = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            vendor = next((line.split(":", 1)[1].strip() for line in f
                           if line.startswith("vendor_id")), vendor)
    except OSError:
        pass
    return f"{platform.machine()}-{vendor}-{torch.backends.cpu.get_cpu_capability()}"


def load() -> dict[str, dict[str, dict]]:
    """The stored records: platform key -> case -> digest."""
    return json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}


def differences(got: dict, stored: dict[str, dict[str, dict]], name: str) -> list[str]:
    """What differs between case `name`'s digest `got` and the records: the whole digest against
    this platform's record, else each ranking metric farther than CROSS_PLATFORM_TOLERANCE from
    another platform's; [] when nothing does (or nothing is recorded)."""
    here = stored.get(platform_key(), {})
    if name in here:
        return [k for k in here[name] if got.get(k) != here[name][k]]
    other = next((records[name] for records in stored.values() if name in records), None)
    if other is None:
        return []
    return [k for k, v in other["metrics"].items() if _RANKING.match(k)
            and abs(got["metrics"].get(k, float("inf")) - v) > CROSS_PLATFORM_TOLERANCE]


def names(quick: bool) -> list[str]:
    return [n for n, (_, small) in CASES.items() if small or not quick] + [RESUMED]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--write", action="store_true")
    p.add_argument("--check", action="store_true")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", nargs="*")
    a = p.parse_args(argv)
    stored = load()
    key = platform_key()
    todo = a.only or names(a.quick)
    diffs = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in todo:
            got = run_case(name, Path(tmp))
            print(name, got["metrics"].get("recall@20"), got["vectors_sha256"][:12], flush=True)
            if a.write:
                stored.setdefault(key, {})[name] = got
            elif differences(got, stored, name):
                diffs.append(name)
    if a.write:
        GOLDEN.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")
    if diffs:
        print("changed:", ", ".join(diffs))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
