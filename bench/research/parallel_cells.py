"""Runs the unfinished cells of grid files on several processes (one thread each), in the run
directory layout `negspace grid` uses, so that `negspace grid FILE` afterwards only summarises.

    python bench/research/parallel_cells.py configs/grid-mml-ml1m-mf.toml ... --workers 16 [--data-dir D]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import negspace  # noqa: F401  -- sets the OpenMP policy before torch starts


def _run(values: dict, cell_dir: str) -> tuple[str, str]:
    from negspace.pipeline.fit import run_training
    from negspace.config import make_config

    t0 = time.perf_counter()
    try:
        out = run_training(make_config(values), cell_dir, overwrite=True)
    except Exception:  # report and go on with the other cells
        return cell_dir, "FAILED\n" + traceback.format_exc()
    return cell_dir, (f"recall@20 {out.metrics['recall@20']:.4f} ndcg@20 {out.metrics['ndcg@20']:.4f}"
                      f" ({time.perf_counter() - t0:.0f}s)")


def main() -> None:
    from negspace.tuning.grid import cell_name, cells, load_grid

    ap = argparse.ArgumentParser()
    ap.add_argument("grids", nargs="+")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--data-dir")
    args = ap.parse_args()
    jobs = []
    for path in args.grids:
        spec = load_grid(path)
        out_dir = Path(spec.get("out") or Path(path).with_suffix(""))
        for cell in cells(spec):
            cell_dir = out_dir / "cells" / cell_name(cell)
            if (cell_dir / "metrics.json").exists():
                continue
            values = {**spec["base"], **cell, "progress": False, "threads": 1}
            if args.data_dir:
                values["data_dir"] = args.data_dir
            jobs.append((values, str(cell_dir)))
    print(f"{len(jobs)} cells on {args.workers} processes", flush=True)
    with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("fork")) as pool:
        futures = [pool.submit(_run, values, cell_dir) for values, cell_dir in jobs]
        for f in as_completed(futures):
            cell_dir, message = f.result()
            print(f"{cell_dir}: {message}", flush=True)


if __name__ == "__main__":
    main()
