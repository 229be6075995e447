"""Replays recorded validation curves under a stricter stopping rule: where would a plateau run
have stopped with --max-decays N, and what validation best would it have kept?

    python bench/research/stop_replay.py RUN_DIR/history.csv [...] [--max-decays 1 2]
        [--select recall@20] [--lr 0.01] [--decay 0.1]

The replay is exact, not a simulation: --max-decays only ends training sooner (at the first
validation without improvement once the rate has decayed N times), so every epoch before that
stop is the epoch the recorded run trained. Reads each history.csv (a run of the plateau
schedule without --max-decays) and prints, per curve and per N, the stop epoch, the best
validation at the stop against the whole run's, and the share of the epochs' seconds saved.
The test split is never read.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from negspace.training.schedule import PlateauSchedule


def replay(rows: list[dict[str, str]], key: str, schedule: PlateauSchedule,
           min_epochs: int = 5) -> tuple[int, float]:
    """(stop epoch, best validation) of the recorded epochs under `schedule`."""
    best, stale, epoch = float("-inf"), 0, 0
    for row in rows:
        epoch, score = int(row["epoch"]), float(row[key])
        # the trainer's own decision (its decays are already in the recorded rates)
        decision = schedule.decide(score, best, stale, float(row["lr"]))
        stale = decision.stale
        if decision.improved:
            best = score
        if decision.stop and epoch >= min_epochs:
            break
    return epoch, best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("histories", nargs="+", type=Path)
    p.add_argument("--max-decays", type=int, nargs="+", default=[1, 2])
    p.add_argument("--select", default="recall@20")
    p.add_argument("--lr", type=float, default=0.01, help="the runs' first learning rate")
    p.add_argument("--decay", type=float, default=0.1)
    a = p.parse_args()
    print("| curve | whole run: epochs, best | " + " | ".join(
        f"--max-decays {n}: stop, best, seconds saved" for n in a.max_decays) + " |")
    print("|---" * (2 + len(a.max_decays)) + "|")
    for path in a.histories:
        rows = list(csv.DictReader(path.open()))
        key = f"val_{a.select}"
        seconds = [float(r["seconds"]) for r in rows]
        whole = replay(rows, key, PlateauSchedule.for_rate("plateau", a.lr, a.decay, 1e-6))
        cells = [f"{whole[0]}, {whole[1]:.5f}"]
        for n in a.max_decays:
            stop, best = replay(rows, key, PlateauSchedule.for_rate(
                "plateau", a.lr, a.decay, 1e-6, n))
            saved = sum(seconds[stop:whole[0]]) / max(sum(seconds[:whole[0]]), 1e-9)
            cells.append(f"{stop}, {best:.5f} ({100 * (best / whole[1] - 1):+.2f}%), {100 * saved:.0f}%")
        print(f"| {path.parent.name or path.name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
