"""Two tuning workers released together on a study with queued trials: how often one trial is
claimed twice (both mark the WAITING trial RUNNING; the slower then fails with "Cannot tell a
COMPLETE trial" or runs it again). Issue 20, item 11.

Each run: a fresh SQLite study with 4 queued trials, two spawned workers behind a barrier, each
optimize(n_trials=3) with a 50 ms objective. Failure: a worker error or a trial number run twice.
"old" opens the storage as negspace did before (lock timeout only); "new" uses open_storage.

Run:  .venv/bin/python bench/research/tune_claim_race.py old 40   (then: new 40)
Measured (2-core machine, shared): old 20 of 40 runs failed, new 0 of 40.
"""

from __future__ import annotations

import collections
import multiprocessing as mp
import sys
import tempfile
import time


def worker(url: str, barrier, mode: str, q) -> None:
    import optuna
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if mode == "new":
        from negspace.tuning.study import open_storage
        storage = open_storage(url)
    else:  # the storage as it was: only the lock timeout
        storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 120}})
    study = optuna.load_study(study_name="s", storage=storage)
    ran: list[int] = []

    def objective(trial) -> float:
        ran.append(trial.number)
        trial.suggest_float("x", 0, 10)
        time.sleep(0.05)
        return 0.0

    barrier.wait()
    try:
        study.optimize(objective, n_trials=3)
        q.put(("ok", ran))
    except Exception as e:  # noqa: BLE001 -- what the race raises is what is counted
        q.put(("err", ran, f"{type(e).__name__}: {str(e)[:80]}"))


def main() -> None:
    import optuna
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    mode, n = sys.argv[1], int(sys.argv[2])
    ctx = mp.get_context("spawn")
    fails = 0
    for it in range(n):
        url = f"sqlite:///{tempfile.mkdtemp()}/s.db"
        study = optuna.create_study(study_name="s", storage=url)
        for k in range(4):
            study.enqueue_trial({"x": float(k)})
        barrier, q = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=worker, args=(url, barrier, mode, q)) for _ in range(2)]
        for p in procs:
            p.start()
        results = [q.get() for _ in procs]
        for p in procs:
            p.join()
        ran = collections.Counter(x for r in results for x in r[1])
        bad = any(r[0] == "err" for r in results) or any(c > 1 for c in ran.values())
        fails += bad
        if bad:
            print(it, results, flush=True)
    print(f"{mode}: {fails} of {n} runs failed", flush=True)


if __name__ == "__main__":
    main()
