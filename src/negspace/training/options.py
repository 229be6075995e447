"""The training loop's options (`TrainerOptions`) and its outcome (`TrainResult`).

The options that are configuration (batch size, epochs, learning rate, schedule, ...) take their
defaults from `TrainConfig`, the only source of defaults; `TrainerOptions.from_config` copies a
configuration's values. The rest are the loop's runtime hooks (checkpoint file, callbacks).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from negspace.config import TrainConfig

_CONFIG_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _configured(name: str) -> Any:
    """A field whose default is TrainConfig's field of the same name."""
    return field(default=_CONFIG_FIELDS[name].default)


def selection_metric(cfg: TrainConfig, protocol: str) -> str:
    """The validation metric that selects the epoch: `select_metric` when given, else NDCG@50 for
    k-fold data and data held in memory (the Python API), Recall@20 for given splits (the
    metric their published results report)."""
    return cfg.select_metric or ("recall@20" if protocol == "given" else "ndcg@50")


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
        min_gain: the relative gain over the best validation that counts as an improvement.
        min_epochs: no early stop before this epoch.
        select_metric: validation metric to maximise.
        progress: show a tqdm bar.
        checkpoint: file to write checkpoints to (every epoch end); None writes none and leaves
            SIGINT and SIGTERM alone.
        checkpoint_every: also write one every this many steps (0: only at epoch ends).
        checkpoint_share: large checkpoints at most about this share of the time: an epoch's end
            writes none while the last write took a second or more and more than this share of
            the seconds since it ended (the last epoch, and a stop signal, always write; 0:
            every epoch).
        fingerprint: identifies the configuration; a checkpoint with another one is refused.
        drift: measure the item vectors' drift over 1, 5 and 10 steps (history columns drift_k).
        prefetch: draw the next batch's negatives in a background thread while this batch's
            loss, backward and update run, when the process may use 2 cores or more (whatever
            torch's thread count: one torch thread plus the draw is the fastest set-up measured
            at B = 256 and 1024, d = 64; docs/performance.md). Samplers that read neither the
            model nor a bank only: uniform, popularity, shared. Same draws in the same order,
            so the same results.
        step_threads: torch threads for the training steps (validation keeps the caller's);
            None leaves torch's setting alone; 0 chooses by the path (Trainer.auto_threads:
            every usable core for the full softmax by users and shared negatives, else one).
            One, with the draw above on a second core, is the fastest set-up measured for steps
            at B = 256 to 1024 and d = 64 on 2 cores (docs/performance.md), while evaluation's
            large products gain from every core.
        fused: take the hand-written step of training/fused.py where it applies (CML on the
            sphere, triplet hinge, per-row negatives): the same maths without autograd.
        precision, device_step: for a model on an accelerator (training/device_step.py): the
            step, its draws and the loss sum stay on the device; device_step None: when the
            model is off the CPU (True forces it on the CPU, for tests).
        weighted: each epoch draws len(pairs) positive pairs with replacement, in proportion to
            the training matrix's values (the confidences of data/confidence.py), instead of
            every pair once in a shuffled order.
        batch_by: "pair" (a batch is `batch_size` positive pairs) or "user" (`batch_size` users,
            each with its every training positive: the full softmax computed once per user and
            summed over its positives, `Objective.multinomial`).
        lr_steps: with lr_schedule "steps", the epochs after which the rate is multiplied by
            `lr_decay` (a plateau run's decays replayed without validation: the tuner's refit).
        lr_schedule, lr_decay, lr_floor: "plateau" multiplies the learning rate by `lr_decay`
            (not below `lr_floor`) and reloads the best validated weights after each validation
            that does not improve; "none" keeps the rate (training/schedule.py). Either way
            `patience` consecutive validations without improvement end training.
        max_decays: with "plateau", the rate after this many decays is a floor that ends
            training at the next validation without improvement (0: `lr_floor` alone).
        on_epoch: called with each epoch's history row once it is recorded (validated epochs
            hold `val_<metric>` keys); returning True ends training there as an early stop
            does (the tuner's time budget), an exception it raises aborts it (the tuner's
            pruning). Not part of checkpoints.
    """

    batch_size: int = _configured('batch_size')
    negatives: int = _configured('negatives')
    epochs: int = _configured('epochs')
    lr: float = _configured('lr')
    seed: int = _configured('seed')
    eval_every: int = _configured('eval_every')
    patience: int = _configured('patience')
    min_gain: float = _configured('min_gain')
    min_epochs: int = _configured('min_epochs')
    select_metric: str = "ndcg@50"  # a resolved name (selection_metric), not a config default
    progress: bool = _configured('progress')
    checkpoint: Path | None = None
    checkpoint_every: int = _configured('checkpoint_every')
    checkpoint_share: float = _configured('checkpoint_share')
    fingerprint: str = ""
    drift: bool = False
    prefetch: bool = True
    step_threads: int | None = None
    fused: bool = True
    on_epoch: Callable[[dict], bool | None] | None = None
    lr_schedule: str = _configured('lr_schedule')
    lr_steps: tuple[int, ...] = ()
    batch_by: str = _configured('batch_by')
    lr_decay: float = _configured('lr_decay')
    lr_floor: float = _configured('lr_floor')
    max_decays: int = _configured('max_decays')
    precision: str = _configured('precision')
    device_step: bool | None = None
    weighted: bool = False


    @classmethod
    def from_config(cls, cfg: TrainConfig, select_metric: str, **runtime: Any) -> "TrainerOptions":
        """The loop's options that follow from `cfg` (one place for the CLI, the Python API, the
        tuner and the benchmarks), copied field by field where the names agree.

        Args:
            cfg: the configuration.
            select_metric: the validation metric that selects the epoch (`selection_metric`).
            **runtime: further fields (checkpoint, fingerprint, on_epoch, drift, ...) or overrides.
        """
        own = {f.name for f in dataclasses.fields(cls)}
        values = {k: getattr(cfg, k) for k in own & set(_CONFIG_FIELDS)}
        values.update(select_metric=select_metric, step_threads=cfg.step_threads,
                      lr_steps=cfg.lr_step_list, weighted=cfg.confidence > 0)
        return cls(**{**values, **runtime})


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_score: float = float("-inf")
    train_seconds: float = 0.0
