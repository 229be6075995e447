"""Folding the validation interactions back into a trained model, measured without the test split.

    python bench/research/fold_back.py --dataset gowalla-lightgcn --threads 2 \
        [--epochs 3] [--rates best first] [--steps '' 2] [--control] [--refit] \
        [--set key=value ...]

A run early-stops on a validation split carved from its training data, so its model has not
trained on those interactions. A refit trains again on all of them (twice the time); a fold-back
continues the validated model on all of them for a few epochs. To compare them without reading
the test split, this script nests the run one level down: the run's validation split V plays
the test, a second split V2 carved from the rest chooses the epochs as validation does. It
prints Recall@20 / NDCG@20 and MAP@50 / NDCG@50 on V of
  - the validated model (its graph over every interaction it may see, as the export does),
  - after each fold-back epoch (a fresh Adam at the chosen rate; with `--steps`, decayed after
    the epochs given, else constant),
  - with `--control`, after each epoch of the same on the validated run's own data (V2 left
    out): the extra epochs' share of the gain,
  - with `--refit`, the refit (pipeline/refit.py: the chosen epochs and decays again on all).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

from negspace.config import make_config, with_default_recipe
from negspace.evaluation.evaluator import evaluate
from negspace.pipeline.build import build_trainer
from negspace.pipeline.fit import load_for
from negspace.pipeline.refit import refit_config
from negspace.pipeline.split import hold_out_validation, resolved_split
from negspace.training.options import TrainerOptions
from negspace.training.trainer import score_fn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/
from harness import recipe_option  # noqa: E402


def on_v(model, seen, v, training_on=None) -> dict[str, float]:
    """Recall@20 / NDCG@20 (and MAP@50 / NDCG@50, the k-fold sets' measures) on V, with every
    interaction the model may see excluded (and its graph over them); `training_on`: the graph to
    put back for the training that goes on."""
    model.eval()
    if model.reads_history:
        model.set_history(seen)
    with torch.no_grad():
        m = evaluate(score_fn(model), seen, v, ks=(20, 50))
    model.train()
    if model.reads_history and training_on is not None:
        model.set_history(training_on)
    return {k: round(m[k], 4) for k in ("recall@20", "ndcg@20", "map@50", "ndcg@50")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--epochs", type=int, default=3, help="fold-back epochs")
    p.add_argument("--rates", nargs="+", default=["best", "first"],
                   help="fold-back rates: best (the rate at the best epoch), first (the run's "
                        "first rate) or a number")
    p.add_argument("--steps", nargs="+", default=[""], metavar="EPOCHS",
                   help="fold-back schedules: each a --lr-steps value (the epochs after which the "
                        "rate is multiplied by --lr-decay), '' for a constant rate")
    p.add_argument("--refit", action="store_true", help="also the refit, for comparison")
    p.add_argument("--control", action="store_true",
                   help="also go on at each rate on the validated run's own data (without V2): "
                        "what the extra epochs give without the folded-back interactions")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    extra = dict(recipe_option(s) for s in a.set)
    cfg = make_config(with_default_recipe({"dataset": a.dataset, "refit": "no", "progress": False,
                                           "threads": a.threads, **extra}))
    dataset = load_for(cfg)
    # the test split is not used below; V (the run's validation) plays this probe's "test"
    cfg, train, _, seen, v = resolved_split(cfg, dataset)
    inner = dataclasses.replace(cfg, seed=cfg.seed + 1, val_users=0)
    fit_on, v2 = hold_out_validation(inner, dataset, seen, None)
    select = "recall@20" if dataset.protocol == "given" else "ndcg@50"
    print(f"d {cfg.dim}, T {cfg.temperature}, batch {cfg.batch_size}, layers {cfg.layers}; "
          f"pairs fit {fit_on.nnz}, V2 {v2.nnz}, V {v.nnz}", flush=True)

    def trainer_for(c, data, validation, model=None, show=True):
        opts = TrainerOptions.from_config(c, select, on_epoch=(lambda r: print(
            {k: (round(x, 4) if isinstance(x, float) else x) for k, x in r.items()
             if k in ("epoch", "lr", "cpu_seconds", f"val_{select}", "val_ndcg@20")},
            flush=True)) if show else None)
        return build_trainer(c, train.n_users, train.n_items, data, validation, opts,
                             torch.device("cpu"),
                             model_factory=None if model is None else (lambda *_: model))

    t = time.perf_counter()
    chosen = trainer_for(cfg, fit_on, v2)
    result = chosen.fit()
    seconds = time.perf_counter() - t
    model = chosen.model
    history = result.history
    best_lr = history[result.best_epoch - 1]["lr"]
    base = on_v(model, seen, v)
    print(f"validated: best epoch {result.best_epoch} (lr {best_lr}), {seconds:.0f} s; on V {base}",
          flush=True)
    state = {k: x.clone() for k, x in model.state_dict().items()}
    for rate, steps, data in [(r, s, d) for r in a.rates for s in a.steps
                              for d in ((seen, fit_on) if a.control else (seen,))]:
        lr = best_lr if rate == "best" else cfg.lr if rate == "first" else float(rate)
        name = ("fold-back" if data is seen else "control (no V2)") + (
            f" decays after {steps}" if steps else "")
        model.load_state_dict(state)
        if model.reads_history:
            model.set_history(data)
        c = dataclasses.replace(cfg, epochs=a.epochs, lr=lr, validation=0.0,
                                lr_schedule="steps" if steps else "none", lr_steps=steps)
        t = time.perf_counter()
        fold = trainer_for(c, data, None, model=model, show=False)
        # evaluated on V after each epoch (the callback runs at the epoch's end)
        fold.opt.on_epoch = lambda row: print(
            f"{name} lr {lr:g} epoch {row['epoch']} ({time.perf_counter() - t:.0f} s): on V "
            f"{on_v(model, seen, v, data)}", flush=True)
        fold.fit()
    if a.refit:
        final = refit_config(dataclasses.replace(cfg, refit="yes"), history, result.best_epoch,
                             select)
        t = time.perf_counter()
        again = trainer_for(final, seen, None)
        again.fit()
        print(f"refit ({final.epochs} epochs, {time.perf_counter() - t:.0f} s): on V "
              f"{on_v(again.model, seen, v)}", flush=True)


if __name__ == "__main__":
    main()
