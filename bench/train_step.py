"""Milliseconds a training step of the default recipe takes on a dataset, under each of glibc's
heap settings (training/heap.py), each measured in a fresh process within this one run.

    python bench/train_step.py --dataset gowalla-lightgcn [--threads 2] [--steps 20] \
        [--set dim=256 ...]

The variants: glibc's own thresholds; the mmap threshold raised; the mmap and trim thresholds
raised (what the trainer sets). Each child builds the trainer as `negspace train` would (the
default recipe resolved for the data, its training split), runs three warm-up steps and prints
the median of `--steps` timed ones. Prints each variant's milliseconds and its speed-up over the
first; the machine is shared, so compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from harness import recipe_option  # bench/ is on the path when run as a script

VARIANTS = ("glibc", "mmap", "mmap+trim")


def child(a: argparse.Namespace) -> None:
    """Times the steps in this process under heap variant `a.child`."""
    from negspace.training import heap

    if a.child == "glibc":
        heap.keep_glibc_defaults()  # the trainer's call then changes nothing
    else:
        heap.keep_large_blocks(trim=a.child == "mmap+trim")
    import torch

    from negspace.config import make_config, resolve_for_data, with_default_recipe
    from negspace.pipeline.build import build_trainer
    from negspace.pipeline.fit import load_for
    from negspace.pipeline.split import split_with_validation
    from negspace.training.options import TrainerOptions

    torch.set_num_threads(a.threads)
    cfg = make_config(with_default_recipe({"dataset": a.dataset, "refit": "no", "epochs": 1,
                                           "progress": False, "threads": a.threads,
                                           **dict(recipe_option(s) for s in a.set)}))
    train, _, fit_on, validation = split_with_validation(cfg, load_for(cfg))
    cfg = resolve_for_data(cfg, train.n_users, train.n_items, train.nnz)
    trainer = build_trainer(cfg, train.n_users, train.n_items, fit_on, validation,
                            TrainerOptions.from_config(cfg, "recall@20"), torch.device("cpu"))
    torch.set_num_threads(a.threads)
    perm = torch.randperm(len(trainer.users), generator=torch.Generator().manual_seed(0))
    bs = cfg.batch_size
    trainer.model.train()
    times = []
    for s in range(3 + a.steps):
        idx = perm[s * bs:(s + 1) * bs]
        t = time.perf_counter()
        trainer.step(trainer.users[idx], trainer.items[idx])
        times.append(time.perf_counter() - t)
    kept = sorted(times[3:])
    print(json.dumps({"ms": 1000 * kept[len(kept) // 2], "dim": cfg.dim, "layers": cfg.layers,
                      "sampler": cfg.sampler}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="one more recipe option (a JSON value, or a string)")
    p.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        return child(a)
    first = None
    for variant in VARIANTS:
        cmd = [sys.executable, __file__, "--dataset", a.dataset, "--threads", str(a.threads),
               "--steps", str(a.steps), "--child", variant, *(x for s in a.set for x in ("--set", s))]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        row = json.loads(out.strip().splitlines()[-1])
        first = first or row["ms"]
        print(f"{a.dataset} (d {row['dim']}, layers {row['layers']}, {row['sampler']}) "
              f"{a.threads} thread(s)  {variant:<10} {row['ms']:7.1f} ms a step  "
              f"{first / row['ms']:.2f}x", flush=True)


if __name__ == "__main__":
    main()
