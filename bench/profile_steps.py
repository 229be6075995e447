"""Where a training step and an evaluation spend their time, each against a lower bound.

Run:  .venv/bin/python bench/profile_steps.py [--dataset movielens-1m-lcfn] [--batch-size 256]
                                         [--threads 1] [--steps 50] [--compare] [--out FILE]

Training step, per sampler (real training data, d = 64, B = 256 by default): median
milliseconds of sampling, forward (loss), backward, optimiser (zero_grad + step), and the whole
step (CML's hand-written step, training/fused.py, compiled with numba when installed, has its
loss and gradient in "forward" and no backward; `--compare` adds its torch version and the
autograd step of the same rows), measured
phase by phase on the trainer's own objects (the same calls as Trainer.step).
Its bound: gathering the rows the batch touches (users, positives and negatives, or the shared /
candidate items) from d-wide tables and writing an update back into the same rows
(index_select + index_add_), nothing else. For the two-tower model the bound counts its id
embeddings only (its MLPs are extra work the bound leaves out).

Second table (added with the first fixes; the bound above is unchanged): the trainer's own loop
(Trainer.run_epoch over the same number of batches, so with the background draw of the next
batch's negatives where the trainer does it) in wall and CPU ms per step and its process CPU time
over wall time (2.0 = both cores busy all the time); and a second bound, "bound + dense", that adds to the
touched rows what the model cannot avoid either: the history rows the two-tower's user tower
reads (B x up to 50 item rows, gathered and updated), and the bare matrix products of the loss,
forward and backward (shared negatives' and in-batch/bank scores [B, d] x [d, K], the towers'
MLP layers), timed with torch.mm and no autograd. The last ratio divides the loop's time on the
bound's clock (wall, or CPU with --clock cpu) by that bound.

Evaluation: negspace's evaluate() (every test user, all items scored, training items masked,
top 50, metrics) against the bare work: the same users' vectors times every item vector plus a
top-50, in the same chunks, no masking. The ratio printed is measured / bound (1 = at the bound).
Targets (issue 6): evaluation at most 2x its bound, a step at most 3x at B = 256.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

import negspace  # noqa: F401  -- first: its OpenMP setting must precede torch
import numpy as np
import torch

from negspace.data.loaders import load_dataset
from negspace.evaluation.evaluator import evaluate
from negspace.samplers.base import SamplerKind
from negspace.pipeline.build import build_model, build_objective, build_sampler
from negspace.pipeline.fit import split_for
from negspace.config import make_config
from negspace.training.fused import CMLTripletStep
from negspace.training.trainer import Trainer, TrainerOptions, score_fn, to_tensor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

CASES = harness.CASES  # one configuration per sampler, shared with gpu_bench.py


_now = time.perf_counter  # --clock cpu: time.process_time (CPU time of all the process's threads)


def _ms(samples: list[float]) -> float:
    return 1000.0 * statistics.median(samples)


def _make_trainer(cfg, train, variant: str) -> Trainer:
    """A fresh trainer; variant: "default" (what negspace picks), "torch" (CML's hand-written
    step in torch operations, even with numba installed) or "autograd"."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, train.n_users, train.n_items, history=train)
    options = TrainerOptions(batch_size=cfg.batch_size, negatives=cfg.negatives, epochs=1,
                             lr=cfg.lr, seed=cfg.seed, progress=False,
                             fused=variant != "autograd")
    trainer = Trainer(model, build_sampler(cfg), build_objective(cfg), train, options, None)
    if trainer.fused is not None and variant == "torch":
        trainer.fused.compiled = False
    return trainer


def step_label(trainer: Trainer) -> str:
    if getattr(trainer, "shared_step", None) is not None:
        return "compiled step"
    if trainer.fused is None:
        return "autograd step" if CMLTripletStep.applies(
            trainer.model, trainer.objective, trainer.sampler, trainer.optimizer.row_adam) else ""
    return "compiled step" if trainer.fused.compiled else "hand-written step, torch"


def profile_loop(cfg, train, steps: int, warmup: int = 5, variant: str = "default") -> dict[str, float]:
    """The trainer's own loop (run_epoch) over warmup + steps batches of a fresh trainer."""
    trainer = _make_trainer(cfg, train, variant)
    trainer.n_steps = warmup
    trainer.run_epoch(None)
    trainer.n_steps = warmup + steps  # run_epoch continues from step `warmup`, same shuffle
    w0, c0 = time.perf_counter(), time.process_time()
    trainer.run_epoch(None)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return {"loop": 1000.0 * wall / steps, "cpu_wall": cpu / wall,
            "prefetch": bool(getattr(trainer, "can_prefetch", False))}


def dense_ms(b: int, dim: int, products: list[tuple[int, int, int]], steps: int) -> float:
    """Bare forward and backward matrix products: for each (rows, k_in, k_out), x [rows, k_in]
    times w [k_in, k_out], then the two products of its backward."""
    gen = torch.Generator().manual_seed(2)
    mats = [(torch.randn(r, i, generator=gen), torch.randn(i, o, generator=gen),
             torch.randn(r, o, generator=gen)) for r, i, o in products]
    samples = []
    for s in range(steps + 5):
        t0 = _now()
        for x, w, g in mats:
            x @ w
            g @ w.T
            x.T @ g
        if s >= 5:
            samples.append(_now() - t0)
    return _ms(samples)


def profile_step(cfg, train, steps: int, warmup: int = 5, variant: str = "default"
                 ) -> dict[str, Any]:
    trainer = _make_trainer(cfg, train, variant)
    model = trainer.model
    sampler, objective, opt = trainer.sampler, trainer.objective, trainer.optimizer
    gen = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(trainer.users), generator=gen)
    bs, n = cfg.batch_size, cfg.negatives
    times: dict[str, list[float]] = {k: [] for k in ("sample", "forward", "backward", "optim",
                                                     "step")}
    touched_items: list[int] = []
    history_rows: list[int] = []
    products: list[tuple[int, int, int]] = []
    for s in range(warmup + steps):
        idx = perm[s * bs:(s + 1) * bs]
        users, items = trainer.users[idx], trainer.items[idx]
        t0 = _now()
        if sampler.kind is SamplerKind.CANDIDATES:
            cands = sampler.candidates(users.numpy(), items.numpy(), n)
            t1 = _now()
            loss = objective.with_candidates(model, users, items, cands, None)
            # in-batch candidates are the positives' rows; the bank holds copies, not rows
            extra = 0 if torch.equal(cands.ids, items) else len(cands.ids)
            t2 = _now()
            loss.backward()  # enqueue (after the loss) is counted in the optimiser phase
            t3 = _now()
            with torch.no_grad():
                sampler.enqueue(items, model.item_vectors(items))
        elif sampler.kind is SamplerKind.SHARED:
            neg, keep = sampler.sample_shared(users.numpy(), items.numpy(), n)
            t1 = _now()
            extra = len(neg)
            if trainer.shared_step is not None:  # compiled: loss and gradient in one phase
                loss, update = trainer.shared_step(users, items, to_tensor(neg), to_tensor(keep))
                t2 = t3 = _now()
            else:
                loss = objective(model, users, items, to_tensor(neg), to_tensor(keep))
                t2 = _now()
                loss.backward()
                t3 = _now()
        elif trainer.fused is not None:  # hand-written: loss and gradient in one phase
            neg = sampler.sample(users.numpy(), items.numpy(), n, model)
            t1 = _now()
            loss, update = trainer.fused(users, items, to_tensor(neg))
            extra = neg.size
            t2 = t3 = _now()
        else:
            neg = sampler.sample(users.numpy(), items.numpy(), n, model)
            t1 = _now()
            loss = objective(model, users, items, to_tensor(neg))
            extra = neg.size
            t2 = _now()
            loss.backward()
            t3 = _now()
        if trainer.fused is not None or getattr(trainer, "shared_step", None) is not None:
            update()
        else:
            opt.step()
            opt.zero_grad()
        t4 = _now()
        if s >= warmup:
            for key, value in (("sample", t1 - t0), ("forward", t2 - t1), ("backward", t3 - t2),
                               ("optim", t4 - t3), ("step", t4 - t0)):
                times[key].append(value)
            touched_items.append(len(items) + extra)
            if hasattr(model, "hist_len"):
                history_rows.append(int(model.hist_len[users].sum()))
            if s == warmup + steps - 1:  # the bank is as full as it gets here
                products = _products(cfg, model, len(items), n, extra,
                                     cands if sampler.kind is SamplerKind.CANDIDATES else None)
    out: dict[str, Any] = {k: _ms(v) for k, v in times.items()}
    out["label"] = step_label(trainer)
    n_items = int(np.median(touched_items))
    out["bound"] = bound_ms(train.n_users, train.n_items, cfg.dim, bs, n_items, steps)
    n_hist = int(np.median(history_rows)) if history_rows else 0
    out["bound_dense"] = (bound_ms(train.n_users, train.n_items, cfg.dim, bs, n_items + n_hist,
                                   steps) + (dense_ms(bs, cfg.dim, products, steps)
                                             if products else 0.0))
    return out


def _products(cfg, model, b: int, n: int, extra: int, cands) -> list[tuple[int, int, int]]:
    """The loss's matrix products (rows, k_in, k_out): scores against shared or candidate
    vectors, and each tower layer (two-tower)."""
    d = cfg.dim
    out = []
    if cfg.resolved_negative_mode == "shared":
        out.append((b, d, n))  # [B, d] x [d, N]
    if cands is not None:
        k = len(cands.ids) + (0 if cands.bank_vectors is None else len(cands.bank_vectors))
        out.append((b, d, k))
    for mlp, rows in ((getattr(model, "user_mlp", None), b), (getattr(model, "item_mlp", None), b)):
        if mlp is not None:
            out += [(rows, layer.in_features, layer.out_features) for layer in mlp
                    if isinstance(layer, torch.nn.Linear)]
    return out


def bound_ms(n_users: int, n_items: int, dim: int, b: int, n_item_rows: int, steps: int) -> float:
    """Gather the touched rows of d-wide user and item tables, add an update into them."""
    users_t, items_t = torch.randn(n_users, dim), torch.randn(n_items, dim)
    rng = torch.Generator().manual_seed(1)
    samples = []
    for s in range(steps + 5):
        u = torch.randint(n_users, (b,), generator=rng)
        i = torch.randint(n_items, (n_item_rows,), generator=rng)
        t0 = _now()
        gu, gi = users_t.index_select(0, u), items_t.index_select(0, i)
        users_t.index_add_(0, u, gu, alpha=-1e-3)
        items_t.index_add_(0, i, gi, alpha=-1e-3)
        if s >= 5:
            samples.append(_now() - t0)
    return _ms(samples)


def profile_eval(cfg, train, test, repeats: int = 3) -> dict[str, float]:
    model = build_model(cfg, train.n_users, train.n_items, history=train)
    model.eval()
    fn = score_fn(model)
    measured = []
    for _ in range(repeats):
        t0 = _now()
        evaluate(fn, train, test, ks=(20, 50))
        measured.append(_now() - t0)
    users = np.flatnonzero(test.user_degrees() > 0)
    with torch.no_grad():
        u_all, v = model.user_vectors(None), model.item_vectors(None)
    bare = []
    for _ in range(repeats):
        t0 = _now()
        for start in range(0, len(users), 4096):
            rows = torch.from_numpy(users[start:start + 4096])
            torch.topk(u_all[rows] @ v.T, 50, dim=1)
        bare.append(_now() - t0)
    return {"evaluate": _ms(measured), "bound": _ms(bare), "users": len(users)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="movielens-1m-lcfn")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1, what negspace trains with by default)")
    p.add_argument("--compare", action="store_true",
                   help="where CML's hand-written step applies, also profile its torch version "
                        "(when numba makes the compiled one the default) and the autograd step")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--out", default=None, help="also write the tables to this file")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="time the phases, bounds and evaluation in wall time (default) or in the "
                        "process's CPU time, which a loaded machine inflates much less (the loop "
                        "table always gives wall time and CPU / wall)")
    args = p.parse_args(argv)
    global _now
    _now = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    lines = [f"{args.dataset}, d = {args.dim}, B = {args.batch_size}, {args.threads} threads, "
             f"torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
             f"load average {os.getloadavg()[0]:.2f} at the start, {args.clock} clock", "",
             "| sampler | sample ms | forward ms | backward ms | optimiser ms | step ms "
             "| bound ms | step / bound |", "|---|---|---|---|---|---|---|---|"]
    base = {"dataset": args.dataset, "dim": args.dim, "batch_size": args.batch_size,
            "threads": args.threads, "progress": False, "validation": 0.0}
    dataset = load_dataset(args.dataset)
    train, test = split_for(make_config(base), dataset)
    loops = ["", "| sampler | trainer loop ms / step | loop CPU ms / step | CPU / wall "
             "| background draw | bound + dense ms | loop / (bound + dense) |",
             "|---|---|---|---|---|---|---|"]
    variants = ("default", "torch", "autograd") if args.compare else ("default",)
    for case in args.cases:
        cfg = make_config({**base, **CASES[case]})
        seen = set()
        for variant in variants:
            label = step_label(_make_trainer(cfg, train, variant))
            if label in seen:  # no hand-written step here, or no numba: same row as before
                continue
            seen.add(label)
            name = f"{case} ({label})" if label else case
            r = profile_step(cfg, train, args.steps, variant=variant)
            lines.append(f"| {name} | {r['sample']:.2f} | {r['forward']:.2f} | {r['backward']:.2f} "
                         f"| {r['optim']:.2f} | {r['step']:.2f} | {r['bound']:.3f} "
                         f"| {r['step'] / r['bound']:.1f}x |")
            print(lines[-1], flush=True)
            lp = profile_loop(cfg, train, args.steps, variant=variant)
            cpu_ms = lp["loop"] * lp["cpu_wall"]
            same_clock = cpu_ms if args.clock == "cpu" else lp["loop"]  # the bound's clock
            loops.append(f"| {name} | {lp['loop']:.2f} | {cpu_ms:.2f} | {lp['cpu_wall']:.2f} "
                         f"| {'yes' if lp['prefetch'] else 'no'} | {r['bound_dense']:.3f} "
                         f"| {same_clock / r['bound_dense']:.1f}x |")
            print(loops[-1], flush=True)
    lines += loops
    e = profile_eval(make_config({**base, **CASES["uniform"]}), train, test)
    lines += ["", "| evaluation | users | evaluate() ms | bare product + top-50 ms | ratio |",
              "|---|---|---|---|---|",
              f"| full ranking, k = 20 and 50 | {e['users']} | {e['evaluate']:.1f} "
              f"| {e['bound']:.1f} | {e['evaluate'] / e['bound']:.2f}x |"]
    lines += ["", f"load average {os.getloadavg()[0]:.2f} at the end"]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
