"""One training run end to end: data, split, model, sampler, training, test metrics, run directory."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from negspace.data.dataset import Dataset
from negspace.data.interactions import Interactions
from negspace.data.loaders import load_dataset
from negspace.data.splits import holdout_split, kfold_split
from negspace.evaluation.evaluator import evaluate
from negspace.experiments.rundir import (prepare_run_dir, save_interactions, save_vectors,
                                         write_history)
from negspace.io import write_json
from negspace.models import CML, MF, EmbeddingModel
from negspace.samplers import NegativeSampler, PopularitySampler, TwoStageSampler, UniformSampler
from negspace.training.config import TrainConfig
from negspace.training.objective import Objective
from negspace.training.trainer import Trainer, TrainerOptions, score_fn


def build_sampler(cfg: TrainConfig) -> NegativeSampler:
    if cfg.sampler == "uniform":
        return UniformSampler(seed=cfg.seed)
    if cfg.sampler == "popularity":
        return PopularitySampler(beta=cfg.beta, seed=cfg.seed)
    return TwoStageSampler(n_candidates=cfg.candidates, beta=cfg.beta,
                           temperature=cfg.two_stage_temperature, cap=cfg.two_stage_cap,
                           released=cfg.sampler == "two-stage-released",
                           refresh_every=cfg.refresh_every, seed=cfg.seed)


def build_model(cfg: TrainConfig, n_users: int, n_items: int) -> EmbeddingModel:
    torch.manual_seed(cfg.seed)
    if cfg.model == "cml":
        return CML(n_users, n_items, cfg.dim, norm=cfg.norm)
    return MF(n_users, n_items, cfg.dim)


def build_objective(cfg: TrainConfig) -> Objective:
    return Objective(loss=cfg.resolved_loss, margin=cfg.margin, rank_weight=cfg.rank_weight,
                     gor_weight=cfg.resolved_gor_weight, cov_weight=cfg.cov_weight,
                     l2_weight=cfg.l2_weight)


def load_for(cfg: TrainConfig) -> Dataset:
    return load_dataset(cfg.dataset, cfg.data_dir, rating_threshold=cfg.rating_threshold,
                        min_user_interactions=cfg.min_user_interactions,
                        min_item_interactions=cfg.min_item_interactions)


def split_for(cfg: TrainConfig, dataset: Dataset) -> tuple[Interactions, Interactions]:
    """(training interactions, test interactions) of this run: the given split or fold `cfg.fold`."""
    if dataset.protocol == "given":
        return dataset.interactions.binarized(), dataset.test.binarized()
    return kfold_split(dataset.interactions.binarized(), cfg.n_folds, cfg.fold, cfg.seed)


@dataclass
class RunOutput:
    metrics: dict[str, float]
    history: list[dict]
    model: EmbeddingModel
    train: Interactions
    test: Interactions
    seconds: float


def run_training(cfg: TrainConfig, out: str | Path | None = None, overwrite: bool = False) -> RunOutput:
    """Trains one configuration and, when `out` is given, writes the run directory.

    The validation split is carved from the training data; the test data is touched once, at the
    end, with the selected model.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run_dir = prepare_run_dir(out, overwrite) if out is not None else None
    t0 = time.perf_counter()
    dataset = load_for(cfg)
    train, test = split_for(cfg, dataset)
    if cfg.validation > 0:
        fit_on, validation = holdout_split(train, cfg.validation, cfg.seed)
    else:
        fit_on, validation = train, None
    select = cfg.select_metric or ("ndcg@50" if dataset.protocol == "kfold" else "recall@20")
    model = build_model(cfg, train.n_users, train.n_items)
    options = TrainerOptions(batch_size=cfg.batch_size, negatives=cfg.negatives, epochs=cfg.epochs,
                             lr=cfg.lr, seed=cfg.seed, eval_every=cfg.eval_every,
                             patience=cfg.patience, min_epochs=cfg.min_epochs,
                             select_metric=select, progress=cfg.progress)
    trainer = Trainer(model, build_sampler(cfg), build_objective(cfg), fit_on, options, validation)
    result = trainer.fit()
    model.eval()
    metrics = evaluate(score_fn(model), train, test, ks=(20, 50))
    metrics.update({"best_epoch": result.best_epoch, "train_seconds": round(result.train_seconds, 3)})
    seconds = time.perf_counter() - t0
    if run_dir is not None:
        write_run(run_dir, cfg, dataset, model, train, metrics, result.history)
    return RunOutput(metrics, result.history, model, train, test, seconds)


def write_run(run_dir: Path, cfg: TrainConfig, dataset: Dataset, model: EmbeddingModel,
              train: Interactions, metrics: dict, history: list[dict]) -> None:
    with torch.no_grad():
        save_vectors(run_dir, model.user_vectors(None), model.item_vectors(None), model.measure)
    save_interactions(run_dir, train)
    write_history(run_dir, history)
    write_json(run_dir / "config.json", {**cfg.to_dict(), "protocol": dataset.protocol})
    # metrics.json last: its presence marks a finished run (the grid relies on it).
    write_json(run_dir / "metrics.json", {k: float(v) for k, v in metrics.items()})


__all__ = ["run_training", "build_model", "build_sampler", "build_objective", "split_for",
           "load_for", "RunOutput"]
