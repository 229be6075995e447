"""Validation metrics of the default's validated run scored with float32 products and with
bfloat16 ones, at the same weights after every epoch.

    python bench/research/val_precision.py --dataset movielens-1m-lcfn [--threads 2]

Trains the default recipe as resolved for the data (its validated run only, which follows the
float32 scores as the shipped trainer does) and prints, after each epoch, Recall@20, NDCG@20 and
NDCG@50 from both scorers and their relative difference. The test split is never read. Why:
bfloat16 products would make validation about 3x cheaper on a CPU with avx512_bf16, but the
schedule decides on differences of about 0.1% near its plateau.
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from negspace.config import make_config, with_default_recipe
from negspace.evaluation.evaluator import evaluate
from negspace.evaluation.scoring import model_scorer
from negspace.pipeline.build import build_trainer
from negspace.pipeline.fit import load_for
from negspace.pipeline.split import resolved_split
from negspace.training.device import configure, resolve_precision
from negspace.training.options import TrainerOptions, selection_metric

KEYS = ("recall@20", "ndcg@20", "ndcg@50")


def bf16_scores(model):
    """users -> float32 scores whose product ran in bfloat16 (rounded to bfloat16 on the way)."""
    scorer = model_scorer(model)
    items_t = scorer.items_t.bfloat16()

    def scores(users: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            u = scorer.user_vectors(users).detach()
            if scorer.measure == "cosine":
                u = torch.nn.functional.normalize(u, dim=-1)
            return (u.bfloat16() @ items_t).float()
    return scores


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    cfg = make_config(with_default_recipe({"dataset": a.dataset, "refit": "no", "progress": False,
                                           "threads": a.threads}))
    dataset = load_for(cfg)
    cfg, train, _, fit_on, validation = resolved_split(cfg, dataset)
    device = torch.device("cpu")
    cfg = dataclasses.replace(cfg, precision=resolve_precision(cfg.precision, device))  # as run_training
    configure(device, cfg.precision, cfg.deterministic)
    options = TrainerOptions.from_config(cfg, selection_metric(cfg, dataset.protocol))
    trainer = build_trainer(cfg, train.n_users, train.n_items, fit_on, validation, options,
                            device)
    float32_validate = trainer.validate

    def validate() -> dict[str, float]:
        ref = float32_validate()
        low = evaluate(bf16_scores(trainer.model), trainer.train, trainer.validation, ks=(20, 50))
        print(f"epoch {trainer.epoch:>2}  " + "  ".join(
            f"{k} {ref[k]:.5f} / {low[k]:.5f} ({100 * (low[k] - ref[k]) / ref[k]:+.3f}%)"
            for k in KEYS), flush=True)
        return ref
    trainer.validate = validate
    trainer.fit()


if __name__ == "__main__":
    main()
