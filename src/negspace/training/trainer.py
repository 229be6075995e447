"""The training loop: shuffled positive pairs, sampled negatives, sparse Adam, validation, early
stopping with the best model kept."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from tqdm.auto import tqdm

from negspace.data.interactions import Interactions
from negspace.errors import NegspaceError
from negspace.evaluation.evaluator import evaluate
from negspace.models.base import EmbeddingModel, score_matrix
from negspace.samplers.base import NegativeSampler, to_tensor
from negspace.training.objective import Objective
from negspace.training.optim import SparseFriendlyAdam


@dataclass
class TrainerOptions:
    """Args:
        batch_size: positive pairs per step.
        negatives: negatives per positive.
        epochs: maximum number of epochs.
        lr: learning rate.
        seed: seeds the shuffling generator.
        eval_every: validate every this many epochs.
        patience: validations without improvement before stopping.
        min_epochs: no early stop before this epoch.
        select_metric: validation metric to maximise.
        progress: show a tqdm bar.
    """

    batch_size: int = 256
    negatives: int = 5
    epochs: int = 20
    lr: float = 1e-3
    seed: int = 0
    eval_every: int = 1
    patience: int = 3
    min_epochs: int = 5
    select_metric: str = "ndcg@50"
    progress: bool = True


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_score: float = float("-inf")
    train_seconds: float = 0.0


def score_fn(model: EmbeddingModel) -> Callable[[torch.Tensor], torch.Tensor]:
    """Full-ranking scorer for the evaluator, with the item vectors computed once."""
    with torch.no_grad():
        items = model.item_vectors(None)
    def _score(users: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return score_matrix(model.user_vectors(users), items, model.measure)
    return _score


class Trainer:
    """Trains `model` on `train` with negatives from `sampler`.

    Args:
        model: the model (already initialised and seeded).
        sampler: a negative sampler (fit on `train` here).
        objective: the batch loss.
        train: training interactions.
        options: loop options.
        validation: held-out interactions for model selection (never the test set); None trains
            for the full number of epochs and keeps the last model.
    """

    def __init__(self, model: EmbeddingModel, sampler: NegativeSampler, objective: Objective,
                 train: Interactions, options: TrainerOptions,
                 validation: Interactions | None = None) -> None:
        self.model, self.sampler, self.objective = model, sampler, objective
        self.train, self.validation, self.opt = train, validation, options
        if train.nnz == 0:
            raise NegspaceError("no training interactions")
        self.sampler.fit(train)
        self.optimizer = SparseFriendlyAdam(model, options.lr)
        self.gen = torch.Generator().manual_seed(options.seed)
        users, items = train.pairs()
        self.users, self.items = to_tensor(users), to_tensor(items)

    def step(self, users: torch.Tensor, items: torch.Tensor) -> float:
        neg = self.sampler.sample(users.numpy(), items.numpy(), self.opt.negatives, self.model)
        loss = self.objective(self.model, users, items, to_tensor(neg))
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def run_epoch(self, epoch: int, bar: tqdm | None) -> float:
        self.model.train()
        perm = torch.randperm(len(self.users), generator=self.gen)
        total, steps = 0.0, 0
        for start in range(0, len(perm), self.opt.batch_size):
            idx = perm[start:start + self.opt.batch_size]
            loss = self.step(self.users[idx], self.items[idx])
            if not math.isfinite(loss):
                raise NegspaceError(f"loss became {loss} at epoch {epoch}, step {steps}: "
                                    "lower --lr or check the data")
            total += loss
            steps += 1
            if bar is not None:
                bar.update(len(idx))
        return total / max(steps, 1)

    def validate(self) -> dict[str, float]:
        self.model.eval()
        return evaluate(score_fn(self.model), self.train, self.validation, ks=(20, 50))

    def fit(self) -> TrainResult:
        result = TrainResult()
        best_state = None
        stale = 0
        n = len(self.users)
        for epoch in range(1, self.opt.epochs + 1):
            bar = tqdm(total=n, desc=f"epoch {epoch}/{self.opt.epochs}", unit="pair", leave=False,
                       disable=not self.opt.progress, dynamic_ncols=True)
            t0 = time.perf_counter()
            loss = self.run_epoch(epoch, bar)
            seconds = time.perf_counter() - t0
            bar.close()
            result.train_seconds += seconds
            row: dict = {"epoch": epoch, "loss": loss, "seconds": round(seconds, 4)}
            if getattr(self.sampler, "released", False):
                row["fallback_rows"] = self.sampler.last_fallback_rows
            last = epoch == self.opt.epochs
            if self.validation is not None and (epoch % self.opt.eval_every == 0 or last):
                metrics = self.validate()
                row.update({f"val_{k}": v for k, v in metrics.items() if "@" in k})
                score = metrics[self.opt.select_metric]
                if score > result.best_score:
                    result.best_score, result.best_epoch, stale = score, epoch, 0
                    best_state = copy.deepcopy(self.model.state_dict())
                else:
                    stale += 1
                if self.opt.progress:
                    tqdm.write(f"epoch {epoch}: loss {loss:.4f}  val {self.opt.select_metric} "
                               f"{score:.4f}  ({seconds:.1f}s)")
            result.history.append(row)
            if stale >= self.opt.patience and epoch >= self.opt.min_epochs:
                break
        if best_state is not None:
            self.model.load_state_dict(best_state)
        else:
            result.best_epoch = len(result.history)
        return result


def check_finite(model: EmbeddingModel) -> None:
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            raise NegspaceError(f"parameter {name} is not finite")


__all__ = ["Trainer", "TrainerOptions", "TrainResult", "score_fn", "check_finite"]
