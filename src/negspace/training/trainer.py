"""The training loop: shuffled positive pairs, sampled negatives, sparse Adam, validation, early
stopping with the best model kept."""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from negspace.data.confidence import draw_pairs, pair_cdf
from negspace.data.interactions import Interactions
from negspace.errors import NegspaceError
from negspace.evaluation.evaluator import evaluate
from negspace.evaluation.scoring import model_scorer
from negspace.models.base import EmbeddingModel
from negspace.registry import LossFamily
from negspace.samplers.base import NegativeSampler, SamplerKind, to_tensor
from negspace.samplers.in_batch import positive_rows
from negspace.training.checkpoint import StopSignals
from negspace.training.drift import DriftMeter
from negspace.training.objective import Objective
from negspace.training.fused import CMLTripletStep
from negspace.training.shared_step import SharedCosineStep
from negspace.training.device_step import DeviceStep
from negspace.training.optim import SparseFriendlyAdam
from negspace.training.options import TrainerOptions, TrainResult
from negspace.training.heap import keep_large_blocks
from negspace.training.schedule import PlateauSchedule, current_lr, scale_lr
# check_finite and first_non_finite are re-exported: they lived here before the split
from negspace.training.trainer_state import (TrainerCheckpoints, check_finite,  # noqa: F401
                                             first_non_finite)


def score_fn(model: EmbeddingModel) -> Callable[[torch.Tensor], torch.Tensor]:
    """Full-ranking scorer for the evaluator, with the item vectors computed once."""
    return model_scorer(model)  # one score buffer reused over the chunks (evaluation/scoring.py)


class Trainer(TrainerCheckpoints):
    """Trains `model` on `train` with negatives from `sampler`.

    The loop's whole state (position in the epoch included) lives on the object, so that a
    checkpoint taken between two steps and loaded into a fresh Trainer continues bit for bit
    (`state`, `load_state`, `save_checkpoint`: training/trainer_state.py).

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
        keep_large_blocks()  # large score matrices reuse memory instead of faulting it in afresh
        self.train, self.validation, self.opt = train, validation, options
        if train.nnz == 0:
            raise NegspaceError("no training interactions")
        self.sampler.fit(train)
        self.optimizer = SparseFriendlyAdam(model, options.lr)
        row_adam = self.optimizer.row_adam
        self.fused = (CMLTripletStep(model, objective, row_adam) if options.fused and
                      CMLTripletStep.applies(model, objective, sampler, row_adam) else None)
        # cosine MF + MML/CCL over shared negatives: compiled step (training/shared_step.py)
        self.shared_step = (SharedCosineStep(model, objective, row_adam) if options.fused and
                            SharedCosineStep.applies(model, objective, sampler, row_adam) else None)
        self.gen = torch.Generator().manual_seed(options.seed)
        users, items = train.pairs()
        if options.batch_by == "user":  # a batch is B users, each with all its positives
            users = items = np.flatnonzero(train.user_degrees() > 0)
        self.users, self.items = to_tensor(users), to_tensor(items)
        # weighted: each epoch draws its pairs in proportion to the values (data/confidence.py)
        if options.weighted and options.batch_by == "user":
            raise NegspaceError("--confidence weights the draw of positive pairs; --batch-by user "
                                "draws users: use --batch-by pair")
        self.pair_cdf = pair_cdf(train) if options.weighted else None
        self.n_steps = -(-len(self.users) // options.batch_size)
        self.result = TrainResult()
        self.best_state: dict | None = None
        self.stale = 0
        self.schedule = PlateauSchedule.for_rate(options.lr_schedule, options.lr,
                                                 options.lr_decay, options.lr_floor,
                                                 options.max_decays, options.patience,
                                                 options.min_gain)
        self.finished = False
        # Position: the next step is step `step_in_epoch` (0-based) of epoch `epoch` (1-based).
        self.epoch, self.step_in_epoch, self.global_step = 1, 0, 0
        self.epoch_loss, self.epoch_seconds, self.epoch_cpu = 0.0, 0.0, 0.0
        self.epoch_gen_state = self.gen.get_state()  # the shuffle of this epoch is drawn from it
        self.last_checkpoint: tuple[int, int] | None = None
        self.checkpoint_cost = (0.0, 0.0)  # (seconds the last write took, perf_counter at its end)
        self.drift = DriftMeter(train.n_items, seed=options.seed) if options.drift else None
        # Prefetching is exact only for draws that depend on nothing a step changes.
        self.can_prefetch = (options.prefetch and usable_cores() >= 2
                             and sampler.kind is not SamplerKind.CANDIDATES
                             and not sampler.reads_model)
        self._executor: ThreadPoolExecutor | None = None
        # (batch users, batch items, future of their draw, sampler state before that draw)
        self._pending: tuple[torch.Tensor, torch.Tensor, Future, dict] | None = None
        self.following: tuple[torch.Tensor, torch.Tensor] | None = None
        self.dist: Any = None  # a DistContext under --nproc (distributed/process_group.py attaches it)
        self.device_step = DeviceStep.build(self, options.precision, options.device_step)

    def _draw(self, users: torch.Tensor, items: torch.Tensor) -> Any:
        if self.sampler.kind is SamplerKind.SHARED:
            return self.sampler.sample_shared(users.numpy(), items.numpy(), self.opt.negatives)
        return self.sampler.sample(users.numpy(), items.numpy(), self.opt.negatives, self.model)

    def _negatives(self, users: torch.Tensor, items: torch.Tensor,
                   following: tuple[torch.Tensor, torch.Tensor] | None) -> Any:
        """This batch's draw (prefetched when the previous step started it), and the start of the
        following batch's draw in the background thread."""
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] is users and pending[1] is items:
            out = pending[2].result()
        else:
            if pending is not None:  # not this batch: undo that draw
                self._pending = pending
                self._drop_prefetch()
            out = self._draw(users, items)
        if following is not None and self.can_prefetch:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="negspace-sampler")
            before = self.sampler.state_dict()
            self._pending = (*following, self._executor.submit(self._draw, *following), before)
        return out

    def _drop_prefetch(self) -> None:
        """Waits for a background draw and puts the sampler back where it was before it."""
        pending, self._pending = self._pending, None
        if pending is not None:
            try:
                pending[2].result()
            except Exception:  # discarded anyway; an error of this step's own is what matters
                pass
            self.sampler.load_state_dict(pending[3])

    def step(self, users: torch.Tensor, items: torch.Tensor) -> float:
        """One update on the batch (users, items). When the epoch loop has set `self.following`
        to the next batch, the draw of its negatives starts in the background (see
        TrainerOptions.prefetch)."""
        following, self.following = self.following, None
        if self.device_step is not None:  # on an accelerator: no host round trip per step
            return self.device_step(users, items)
        enqueue, update = False, None
        if self.opt.batch_by == "user":  # the multinomial likelihood over the catalogue
            sample = self.sampler.draw_items(self.opt.negatives)  # None: the exact sum
            loss = self.objective.multinomial(self.model, users, positive_rows(self.train, users),
                                              sample)
        elif self.sampler.kind is SamplerKind.CANDIDATES:
            # In-batch, uniform sampled-softmax or memory-bank negatives, scored as vectors.
            cands = self.sampler.candidates(users.numpy(), items.numpy(), self.opt.negatives)
            neg = None
            if self.objective.family is LossFamily.HINGE:  # per-row negatives, the bank's joining them
                neg = to_tensor(self.sampler.sample(users.numpy(), items.numpy(),
                                                    self.opt.negatives, self.model))
            loss = self.objective.with_candidates(self.model, users, items, cands, neg)
            enqueue = True
        elif self.sampler.kind is SamplerKind.SHARED:
            # One draw for the whole batch, scored by one matmul; rows mask their own positives.
            neg, keep = self._negatives(users, items, following)
            if self.shared_step is not None:  # loss now, update after the check
                loss, update = self.shared_step(users, items, to_tensor(neg), to_tensor(keep))
            else:
                loss = self.objective(self.model, users, items, to_tensor(neg), to_tensor(keep))
        else:
            neg = to_tensor(self._negatives(users, items, following))
            if self.fused is not None:  # CML's hand-written step: loss now, update after the check
                loss, update = self.fused(users, items, neg)
            else:
                loss = self.objective(self.model, users, items, neg)
        value = float(loss.detach())
        if self.dist is not None:  # the global batch's loss (distributed/process_group.py)
            value = self.dist.global_loss(value, users, self.global_step)
        if not math.isfinite(value):  # before the update: the parameters stay as they were
            raise self._diverged(f"loss became {value} at epoch {self.epoch}, step "
                                 f"{self.step_in_epoch + 1} of {self.n_steps} (step "
                                 f"{self.global_step + 1} of the run)")
        if enqueue:  # after the loss, before the update: the vectors this step's loss saw
            with torch.no_grad():
                self.sampler.enqueue(items, self.model.item_vectors(items))
        if update is not None:
            update()
        else:
            self.optimizer.zero_grad()
            # under --nproc the loss carries this rank's share of the global batch's loss
            (loss if self.dist is None else loss * self.dist.weight).backward()
            if self.dist is not None:
                self.dist.reduce_gradients(self.model)
            self.optimizer.step()
        if self.drift is not None:
            self.drift.record(self.model)
        return value

    def run_epoch(self, bar: tqdm | None, signals: StopSignals | None = None) -> float:
        """Runs the rest of the current epoch (all of it unless resumed mid-epoch).

        Returns:
            The mean batch loss of the epoch.
        """
        self.model.train()
        if self.step_in_epoch == 0:
            self.epoch_gen_state = self.gen.get_state()
        else:  # resumed mid-epoch: draw the same shuffle again, the generator ends where it did
            self.gen.set_state(self.epoch_gen_state)
        perm = (torch.randperm(len(self.users), generator=self.gen) if self.pair_cdf is None
                else draw_pairs(self.pair_cdf, self.gen))
        if self.dist is not None:  # this rank's share of every global batch
            perm = self.dist.shard(perm, self.opt.batch_size)
        every = self.opt.checkpoint_every if self.opt.checkpoint is not None else 0
        threads = torch.get_num_threads()
        step_threads = self.opt.step_threads if self.opt.step_threads != 0 else self.auto_threads()
        if step_threads:
            torch.set_num_threads(step_threads)
        try:
            self._run_steps(perm, bar, signals, every)
        finally:
            torch.set_num_threads(threads)
            try:
                self._drop_prefetch()
            finally:  # the prefetch thread ends with the epoch, whatever ended the epoch
                if self._executor is not None:
                    self._executor.shutdown()
                    self._executor = None
        return self.epoch_loss / self.n_steps

    def auto_threads(self) -> int:
        """Torch threads for step_threads 0: every usable core where one large product is most
        of a step and no draw needs a core beside it (the full softmax by users; shared
        negatives, one small draw per batch); else one, as measured fastest for steps of small
        operations (docs/design.md, "Threads"); under --nproc the launcher's setting."""
        if self.dist is not None:
            return torch.get_num_threads()
        large = self.opt.batch_by == "user" or self.sampler.kind is SamplerKind.SHARED
        return usable_cores() if large else 1

    def _run_steps(self, perm: torch.Tensor, bar: tqdm | None, signals: StopSignals | None,
                   every: int) -> None:
        bs = self.opt.batch_size
        t0, c0 = time.perf_counter(), time.process_time()  # CPU: every thread (the draw's too)
        batch = self.users[perm[self.step_in_epoch * bs:(self.step_in_epoch + 1) * bs]], \
            self.items[perm[self.step_in_epoch * bs:(self.step_in_epoch + 1) * bs]]
        for s in range(self.step_in_epoch, self.n_steps):
            idx = perm[s * bs:(s + 1) * bs]
            following = None
            if s + 1 < self.n_steps:
                nxt = perm[(s + 1) * bs:(s + 2) * bs]
                following = (self.users[nxt], self.items[nxt])
            self.following = following
            self.epoch_loss += self.step(*batch)
            batch = following
            self.step_in_epoch, self.global_step = s + 1, self.global_step + 1
            if bar is not None:
                bar.update(len(idx))
            stop = signals is not None and signals.received is not None
            if s + 1 < self.n_steps and (stop or (every and self.global_step % every == 0)):
                self.epoch_seconds += time.perf_counter() - t0
                self.epoch_cpu += time.process_time() - c0
                self.save_checkpoint()
                t0, c0 = time.perf_counter(), time.process_time()
                if stop:
                    raise self._interrupted(signals.received)
        if self.device_step is not None:
            self.epoch_loss += self.device_step.flush()  # waits for the device: timings are whole
        self.epoch_seconds += time.perf_counter() - t0
        self.epoch_cpu += time.process_time() - c0

    def validate(self) -> dict[str, float]:
        self.model.eval()
        if self.dist is not None:  # users split over the ranks, rank 0's metrics broadcast
            return self.dist.evaluate(score_fn(self.model), self.train, self.validation)
        return evaluate(score_fn(self.model), self.train, self.validation, ks=(20, 50))

    def fit(self, resume: dict[str, Any] | None = None) -> TrainResult:
        """Trains until the last epoch or the early stop, then loads the best validated state.

        Args:
            resume: a checkpoint's state (see `load_checkpoint`) to continue from.

        Returns:
            History, best epoch and score, training seconds (over every session of the run).
        """
        if resume is not None:
            self.load_state(resume)
        # Under --nproc the launcher ends every rank on a signal; a rank that checkpointed alone
        # would wait forever for the others in the gather, so only a single process traps them.
        guard = (StopSignals() if self.opt.checkpoint is not None and self.dist is None
                 else contextlib.nullcontext())
        with guard as signals:
            while not self.finished:
                self._epoch(signals)
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        else:
            self.result.best_epoch = len(self.result.history)
        return self.result

    def _epoch(self, signals: StopSignals | None) -> None:
        epoch, n, result = self.epoch, len(self.users), self.result
        bar = tqdm(total=n, initial=min(self.step_in_epoch * self.opt.batch_size, n),
                   desc=f"epoch {epoch}/{self.opt.epochs}",
                   unit="user" if self.opt.batch_by == "user" else "pair", leave=False,
                   disable=not self.opt.progress, dynamic_ncols=True)
        loss = self.run_epoch(bar, signals)
        bar.close()
        self._check_parameters()  # the loss is checked every step, the parameters once an epoch
        seconds = self.epoch_seconds
        result.train_seconds += seconds
        row: dict = {"epoch": epoch, "loss": loss, "seconds": round(seconds, 4),
                     "cpu_seconds": round(self.epoch_cpu, 4)}
        row.update(self.sampler.epoch_notes())
        if self.drift is not None:
            row.update(self.drift.epoch_summary())
        last = epoch == self.opt.epochs
        lr = current_lr(self.optimizer.optimizers)
        row["lr"] = lr
        score = None  # None: not validated this epoch
        if self.validation is not None and (epoch % self.opt.eval_every == 0 or last):
            metrics = self.validate()
            row.update({f"val_{k}": v for k, v in metrics.items() if "@" in k})
            score = metrics[self.opt.select_metric]
        decision = self.schedule.decide(score, result.best_score, self.stale, lr, last)
        self.stale = decision.stale
        if decision.improved:
            result.best_score, result.best_epoch = score, epoch
            self.best_state = copy.deepcopy(self.model.state_dict())
        elif decision.decay and self.best_state is not None:
            # continue from the best weights with smaller steps (the optimiser's moments stay)
            self.model.load_state_dict(self.best_state)
            scale_lr(self.optimizer.optimizers, self.opt.lr_decay, self.schedule.floor)
        if score is not None and self.opt.progress:
            tqdm.write(f"epoch {epoch}: loss {loss:.4f}  val {self.opt.select_metric} "
                       f"{score:.4f}  ({seconds:.1f}s)")
        result.history.append(row)
        if self.opt.lr_schedule == "steps" and epoch in self.opt.lr_steps:  # listed k times: k decays
            scale_lr(self.optimizer.optimizers, self.opt.lr_decay ** self.opt.lr_steps.count(epoch),
                     self.opt.lr_floor)
        stop = self.opt.on_epoch is not None and bool(self.opt.on_epoch(row))
        self.finished = stop or last or (decision.stop and epoch >= self.opt.min_epochs)
        self.epoch, self.step_in_epoch, self.epoch_loss = epoch + 1, 0, 0.0
        self.epoch_seconds, self.epoch_cpu = 0.0, 0.0
        stopping = signals is not None and signals.received is not None
        if self.opt.checkpoint is not None and (self.finished or stopping or
                                                self.checkpoint_due()):
            self.save_checkpoint()
        if stopping and not self.finished:
            raise self._interrupted(signals.received)


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


__all__ = ["Trainer", "TrainerOptions", "TrainResult", "score_fn", "check_finite",
           "first_non_finite"]
