"""Grids of training runs (sampler x negatives x batch x fold x ...), resumable, with a result
table (mean +- std over folds, Markdown and CSV) and plots.

A grid file:

    out = "runs/grid-lastfm"            # output folder
    metrics = ["map@50", "ndcg@50", "mmr@50"]
    [base]                              # options shared by every cell (any `negspace train` key)
    dataset = "lastfm-hetrec2011"
    [grid]                              # the axes; the cells are their product
    sampler = ["uniform", "popularity", "two-stage"]
    negatives = [1, 2, 5]
    batch_size = [4096, 1024, 256]
    fold = [0, 1, 2, 3]
    [[restrict]]                        # optional: cells matching `if` keep only the `then` values
    if = { sampler = ["popularity", "two-stage"] }
    then = { batch_size = [256] }
"""

from __future__ import annotations

import itertools
import json
import signal
import time
from pathlib import Path
from typing import Any

import pandas as pd

from negspace.errors import NegspaceError, TrainingInterrupted
from negspace.io import read_toml, write_text
from negspace.config import MACHINE_OPTIONS, make_config, normalise_keys
from negspace.plotting import pyplot_or_none

DEFAULT_METRICS = ["map@50", "ndcg@50", "mmr@50", "recall@20", "ndcg@20"]


def load_grid(path: str | Path) -> dict[str, Any]:
    spec = read_toml(path, "grid")
    unknown = set(spec) - {"out", "metrics", "base", "grid", "restrict"}
    if unknown:
        raise NegspaceError(f"{path}: unknown section(s) {', '.join(sorted(unknown))}")
    spec["base"] = normalise_keys(spec.get("base", {}), f"{path} [base]")
    spec["grid"] = normalise_keys(spec.get("grid", {}), f"{path} [grid]")
    if not spec["grid"]:
        raise NegspaceError(f"{path}: [grid] defines no axis")
    for key, values in spec["grid"].items():
        if not isinstance(values, list) or not values:
            raise NegspaceError(f"{path}: [grid] {key} must be a non-empty list")
    return spec


def cells(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The product of the grid axes, minus what the restrict rules remove."""
    axes = spec["grid"]
    out = []
    for combo in itertools.product(*axes.values()):
        cell = dict(zip(axes.keys(), combo))
        if all(_allowed(cell, rule) for rule in spec.get("restrict", [])):
            out.append(cell)
    return out


def _allowed(cell: dict[str, Any], rule: dict[str, Any]) -> bool:
    cond = normalise_keys(rule.get("if", {}), "restrict.if")
    then = normalise_keys(rule.get("then", {}), "restrict.then")
    if all(cell.get(k) in (v if isinstance(v, list) else [v]) for k, v in cond.items()):
        return all(cell.get(k) in (v if isinstance(v, list) else [v]) for k, v in then.items())
    return True


def cell_name(cell: dict[str, Any]) -> str:
    return "_".join(f"{k}={v}" for k, v in cell.items()).replace("/", "-")


def run_grid(path: str | Path, out: str | Path | None = None, dry_run: bool = False,
             device: str | None = None) -> pd.DataFrame:
    """Runs every unfinished cell (a cell is finished when its metrics.json exists), then writes
    results.csv, results.md and the plots into the output folder. `device` (--device) overrides
    the file's for every cell."""
    from negspace.pipeline.fit import run_training

    spec = load_grid(path)
    out_dir = Path(out or spec.get("out") or Path(path).with_suffix(""))
    todo = cells(spec)
    forced = {} if device is None else {"device": device}
    configs = [make_config({**spec["base"], **cell, "progress": False, **forced}) for cell in todo]
    if dry_run:
        for cell in todo:
            print(cell_name(cell))
        print(f"{len(todo)} cells")
        return pd.DataFrame(todo)
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    for i, (cell, cfg) in enumerate(zip(todo, configs), 1):
        cell_dir = out_dir / "cells" / cell_name(cell)
        if (cell_dir / "metrics.json").exists():
            continue
        t0 = time.perf_counter()
        try:
            result = run_training(cfg, cell_dir, overwrite=True, resume=_resumable(cell_dir, cfg))
        except TrainingInterrupted as e:
            raise TrainingInterrupted(
                f"interrupted by {signal.Signals(e.signum).name} in cell {cell_name(cell)} (its "
                f"checkpoint is saved); rerun `negspace grid {path}` to continue: finished cells "
                "are kept, this one resumes", e.signum) from None
        shown = "  ".join(f"{k} {result.metrics[k]:.4f}" for k in spec.get("metrics", DEFAULT_METRICS)
                          if k in result.metrics)
        print(f"[{i}/{len(todo)}] {cell_name(cell)}  {shown}  ({time.perf_counter() - t0:.1f}s)",
              flush=True)
    print(f"grid finished in {time.perf_counter() - t_start:.1f}s", flush=True)
    return summarise(out_dir, spec)


def _resumable(cell_dir: Path, cfg: Any) -> bool:
    """An unfinished cell continues from its checkpoint when it was started with the same options;
    otherwise (killed before its first checkpoint, or the grid file changed) it starts again."""
    from negspace.training.checkpoint import CHECKPOINT_FILE

    try:
        stored = json.loads((cell_dir / "config.json").read_text())
    except (OSError, ValueError):
        return False
    free = MACHINE_OPTIONS
    added = ("precision", "deterministic")  # absent from cells started before they existed
    same = all(stored.get(k) == v for k, v in cfg.to_dict().items()
               if k not in free and not (k in added and k not in stored))
    return same and (cell_dir / CHECKPOINT_FILE).exists()


def collect(out_dir: Path, spec: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for cell in cells(spec):
        metrics_file = out_dir / "cells" / cell_name(cell) / "metrics.json"
        if metrics_file.exists():
            timing = metrics_file.with_name("timing.json")  # train_seconds, since metrics are seed-only
            extra = json.loads(timing.read_text()) if timing.exists() else {}
            rows.append({**cell, **json.loads(metrics_file.read_text()),
                         **{k: v for k, v in extra.items() if k == "train_seconds"}})
    return pd.DataFrame(rows)


def summarise(out_dir: Path, spec: dict[str, Any]) -> pd.DataFrame:
    """Mean and sample std over folds per cell group; writes results.csv, results.md and plots."""
    df = collect(out_dir, spec)
    if df.empty:
        raise NegspaceError(f"{out_dir}: no finished cell to summarise")
    metrics = [m for m in spec.get("metrics", DEFAULT_METRICS) if m in df.columns]
    keys = [k for k in spec["grid"] if k != "fold"]
    extra = [c for c in ("train_seconds", "best_epoch") if c in df.columns]
    grouped = df.groupby(keys, sort=False)[metrics + extra]
    table = grouped.mean()
    std = grouped.std(ddof=1).fillna(0.0)
    table = table.join(std[metrics].add_suffix("_std"))
    table["folds"] = grouped.size()
    table = table.reset_index()
    write_text(out_dir / "results.csv", table.to_csv(index=False))
    write_text(out_dir / "results.md", markdown_table(table, keys, metrics, extra))
    plot(table, keys, metrics, out_dir)
    return table


def markdown_table(table: pd.DataFrame, keys: list[str], metrics: list[str], extra: list[str]) -> str:
    head = keys + metrics + extra + ["folds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, row in table.iterrows():
        cells_ = [str(row[k]) for k in keys]
        cells_ += [f"{row[m]:.4f} ± {row[m + '_std']:.4f}" for m in metrics]
        cells_ += [f"{row[e]:.1f}" for e in extra]
        cells_.append(str(int(row["folds"])))
        lines.append("| " + " | ".join(cells_) + " |")
    return "\n".join(lines) + "\n"


def plot(table: pd.DataFrame, keys: list[str], metrics: list[str], out_dir: Path) -> None:
    """One figure per metric against batch size: a panel per number of negatives, a line per
    sampler (error bars: std over folds)."""
    if "batch_size" not in keys:
        return
    plt = pyplot_or_none()
    if plt is None:
        return

    panel_key = "negatives" if "negatives" in keys else None
    panels = sorted(table[panel_key].unique()) if panel_key else [None]
    line_keys = [k for k in keys if k not in ("batch_size", panel_key)]
    for metric in metrics:
        fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4), squeeze=False,
                                 sharey=True)
        for ax, panel in zip(axes[0], panels):
            sub = table if panel is None else table[table[panel_key] == panel]
            for label, group in sub.groupby(line_keys, sort=False) if line_keys else [("", sub)]:
                group = group.sort_values("batch_size")
                name = label if isinstance(label, str) else "/".join(map(str, label))
                ax.errorbar(group["batch_size"], group[metric], yerr=group[metric + "_std"],
                            marker="o", capsize=3, label=name)
            ax.set_xscale("log", base=2)
            ax.set_xlabel("batch size")
            ax.set_title(f"N = {panel}" if panel is not None else metric)
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel(metric)
        axes[0][-1].legend(fontsize=8)
        fig.tight_layout()
        tmp = out_dir / f".{metric.replace('@', '_at_')}.png.tmp.png"
        fig.savefig(tmp, dpi=110)
        plt.close(fig)
        tmp.replace(out_dir / f"{metric.replace('@', '_at_')}.png")
