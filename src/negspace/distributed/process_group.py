"""Data-parallel training with torch.distributed: N processes, replicated tables, reduced gradients.

Launch: `negspace train ... --nproc N` starts N local workers through torch.distributed's own
launcher (`torch.distributed.launcher.api.elastic_launch`, the engine behind torchrun);
`torchrun --nnodes M --nproc-per-node N -m negspace train ...` runs the same worker code across
machines. A worker is any process started with RANK and WORLD_SIZE > 1 in its environment.

What each rank does (design and limits: docs/scale.md):
- reads the data itself and builds the same model from the same seed (the parameters are also
  broadcast from rank 0 once, so they start equal whatever the initialiser does);
- takes, at step s of an epoch, its contiguous share of the global batch s of the epoch's
  shuffled positives (every rank draws the same permutation from the same generator), so N ranks
  of B see exactly the rows one process of N x B sees, in the same order;
- draws its negatives from its own sampler, seeded by (seed, rank);
- runs the autograd step, then all-reduces (sums) the gradients: sparse embedding gradients as
  sparse tensors on gloo, dense ones as dense. A loss averaged over the batch is weighted by
  B_rank / B_global first and a summed one (the triplet hinge) is not, so the reduced gradient is
  that of one process on the global batch. Every rank then applies the same update to the same
  parameters: they stay equal, bit for bit (tested after every step);
- validates and evaluates its share of the users; the ranked lists are gathered and the metrics
  computed from all of them, and rank 0's metrics are broadcast, so early stopping and the
  learning-rate schedule see the same numbers on every rank;
- checkpoints: rank 0 writes the file, holding every rank's sampler and RNG states (gathered),
  so that `--resume` continues each rank exactly; all ranks read it.
Only rank 0 writes the run directory.

Candidate samplers (`NegativeSampler.share_batch`): in-batch and memory-bank candidates are the global
batch (ids gathered, vectors gathered with gradient through torch.distributed.nn's all_gather;
the bank enqueues the whole gathered batch in rank order, so every rank holds the same bank);
uniform sampled softmax takes rank 0's draw; the full catalogue needs nothing.

Not distributed (refused with one line): the accelerator step (--device).
The hand-written and compiled steps (CML triplet, cosine MF over shared negatives) are replaced
by the autograd step under --nproc (their row gradients are not reduced; docs/scale.md has the
measured cost).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist
# Imported before any process group exists, on purpose: torch.distributed.nn.functional binds
# `group=group.WORLD` as a default argument of its functions when it is first imported, so an
# import after init_process_group (ours in gather_rows, or torch._dynamo's, which the first
# optimizer construction triggers) keeps the default group alive after destroy_process_group:
# gloo's worker threads then run on into interpreter exit, where one dropping the last reference
# to a finished all_gather's Python tensors needs the GIL, is ended by pthread_exit, and aborts
# the rank ("terminate called without an active exception", SIGABRT). Core dump of an aborted
# test rank: pt_gloo_runloop -> ~AsyncAllgatherWork -> THPVariable_dealloc -> take_gil ->
# pthread_exit -> std::terminate, while the main thread was in Py_FinalizeEx.
import torch.distributed.nn.functional as _dist_nn  # noqa: E402

from negspace.data.interactions import Interactions
from negspace.errors import NegspaceError
from negspace.registry import SAMPLERS, LossFamily

TIMEOUT_ENV = "NEGSPACE_DIST_TIMEOUT"  # seconds a collective may wait for a lost rank
FAULT_ENV = "NEGSPACE_FAULT_AT"  # "RANK:STEP": that rank kills itself before that global step (tests)
_RANK_SEED = 1_000_003  # rank r's sampler seed is seed + r * this: rank 0 draws as one process does


def in_worker() -> bool:
    """Whether this process is one rank of a distributed run (RANK and WORLD_SIZE > 1 set)."""
    return "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


def sampler_seed(seed: int, rank: int) -> int:
    """The seed of rank `rank`'s sampler."""
    return seed + rank * _RANK_SEED


def check_supported(sampler: str, world: int, device: str = "auto") -> None:
    """Refuses, in one line, a configuration the distributed step does not handle."""
    if world > 1 and device not in ("auto", "cpu"):
        raise NegspaceError(f"--nproc > 1 trains on CPUs with gloo (NCCL has no sparse "
                            f"all-reduce for the embedding tables; docs/scale.md); drop "
                            f"--device {device} or train in one process")
    if world > 1 and sampler in SAMPLERS and not SAMPLERS[sampler].distributed:
        raise NegspaceError(f"--sampler {sampler} is not supported with --nproc > 1 yet (its "
                            "candidates would have to be gathered across ranks); use a per-row "
                            "or shared sampler, or one process")


@dataclass
class DistContext:
    """This process's place in the run and the collective operations the trainer calls.

    Args:
        rank, world: this rank and the number of ranks.
        summed_loss: the objective sums its terms over the batch (triplet) instead of averaging.
    """

    rank: int
    world: int
    summed_loss: bool = False
    weight: float = 1.0  # this rank's gradient weight at the current step
    # the rows a batch's loss averages over, when not one per batch entry (user batches average
    # over their users' positive pairs)
    rows: Callable[[torch.Tensor], int] | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ----------------------------------------------------------------------------- data
    def local_steps(self, n: int, batch_size: int) -> int:
        """Steps per epoch on every rank: the global batches of N x B; a last global batch
        smaller than N rows is dropped (at most N - 1 positives of the epoch's shuffle)."""
        g = self.world * batch_size
        full, tail = divmod(n, g)
        return full + (1 if tail >= self.world else 0)

    def shard(self, perm: torch.Tensor, batch_size: int) -> torch.Tensor:
        """This rank's positives of the epoch, laid out so that the trainer's slice
        [s * B, (s + 1) * B] is the rank's contiguous share of global batch s.

        Args:
            perm: the epoch's permutation of all positives (the same on every rank).
            batch_size: B, the per-rank batch.
        """
        g = self.world * batch_size
        full, tail = divmod(len(perm), g)
        mine = perm[:full * g].view(full, self.world, batch_size)[:, self.rank].reshape(-1)
        if tail >= self.world:  # the last global batch, split into near-equal contiguous parts
            last = perm[full * g:]
            bounds = [len(last) * r // self.world for r in range(self.world + 1)]
            mine = torch.cat([mine, last[bounds[self.rank]:bounds[self.rank + 1]]])
        return mine

    # ----------------------------------------------------------------------------- steps
    def global_loss(self, value: float, users: torch.Tensor, global_step: int) -> float:
        """The loss of the global batch from every rank's (loss, rows); sets this rank's loss
        weight (its share of the rows the global loss averages over).

        Args:
            value: this rank's loss on its rows.
            users: this rank's batch (one entry per row, or per user for user batches).
            global_step: the step about to run (0-based), for the fault-injection hook.
        """
        _maybe_fault(self.rank, global_step)
        batch = len(users) if self.rows is None else self.rows(users)
        both = torch.tensor([[float(batch), value]], dtype=torch.float64)
        parts = [torch.empty_like(both) for _ in range(self.world)]
        dist.all_gather(parts, both)
        table = torch.cat(parts)
        total = float(table[:, 0].sum())
        weights = torch.ones(self.world, dtype=torch.float64) if self.summed_loss \
            else table[:, 0] / total
        self.weight = float(weights[self.rank])
        # summed in rank order from the gathered table: the same bits on every rank
        return float((weights * table[:, 1]).sum())

    def reduce_gradients(self, model: torch.nn.Module) -> None:
        """Sums every parameter's gradient over the ranks (sparse ones as sparse tensors). The
        trainer has already weighted this rank's loss by `weight` before backward: in-batch
        vectors gathered with gradient carry other ranks' loss terms back here, so the weights
        must be in the loss, not applied to the gradients afterwards. Parameters without a
        gradient are left alone: a parameter the step did not reach has none on any rank."""
        for p in model.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad)  # sparse COO on gloo is reduced in place as well

    # ----------------------------------------------------------------------------- in-batch
    def gather_rows(self, local: torch.Tensor, with_grad: bool = False) -> torch.Tensor:
        """Every rank's rows of `local` ([b_r, ...], b_r may differ by rank), concatenated in
        rank order. With `with_grad`, through torch.distributed.nn's all_gather: the gradient
        of each rank's loss flows back to the rank whose rows they were."""
        sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(self.world)]
        dist.all_gather(sizes, torch.tensor([len(local)], dtype=torch.int64))
        sizes = [int(s) for s in sizes]
        pad = max(sizes) - len(local)
        padded = local if pad == 0 else torch.cat([local, local.new_zeros((pad, *local.shape[1:]))])
        if with_grad:
            parts = list(_dist_nn.all_gather(padded, group=dist.group.WORLD))
        else:
            parts = [torch.empty_like(padded) for _ in range(self.world)]
            dist.all_gather(parts, padded.detach())
        return torch.cat([part[:size] for part, size in zip(parts, sizes)])

    def broadcast(self, tensor: torch.Tensor) -> torch.Tensor:
        """Rank 0's `tensor` on every rank (a uniform sampled-softmax draw: samplers/in_batch.py)."""
        out = tensor.clone()
        dist.broadcast(out, src=0)
        return out

    def broadcast_parameters(self, model: torch.nn.Module) -> None:
        """Rank 0's parameters and dense buffers on every rank (sparse ones, the graph encoder's
        graph, are data every rank builds from the same interactions; gloo sends dense only)."""
        with torch.no_grad():
            for t in [*model.parameters(), *model.buffers()]:
                if t.layout == torch.strided:
                    dist.broadcast(t.data, src=0)

    # ----------------------------------------------------------------------------- evaluation
    def evaluate(self, score_fn: Callable[[torch.Tensor], torch.Tensor], train: Interactions,
                 test: Interactions, ks: Sequence[int] = (20, 50)) -> dict[str, float]:
        """`evaluate` with the users split over the ranks: each ranks its share (every N-th
        user), the lists are gathered, and rank 0's metrics are broadcast."""
        from negspace.evaluation.evaluator import auto_chunk_size, metrics_from_top
        from negspace.retrieval.topk import topk_items

        users = np.flatnonzero(test.user_degrees() > 0)
        mine = users[self.rank::self.world]
        top, _ = topk_items(score_fn, mine, max(ks), exclude=train,
                            chunk_size=auto_chunk_size(train.n_items))
        parts: list[Any] = [None] * self.world
        dist.all_gather_object(parts, top)
        metrics = None
        if self.is_main:
            full = np.empty((len(users), max(ks)), np.int64)
            for r, part in enumerate(parts):
                full[r::self.world] = part
            metrics = metrics_from_top(full, users, train, test, ks)
        box = [metrics]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    # ----------------------------------------------------------------------------- checkpoints
    def gather_state(self, state: dict[str, Any]) -> dict[str, Any] | None:
        """Rank 0: the trainer's state with every rank's sampler and RNG states under
        "ranks"; the others: None (they do not write)."""
        mine = {"sampler": state["sampler"], "rng": state["rng"]}
        parts: list[Any] = [None] * self.world
        dist.all_gather_object(parts, mine)
        if not self.is_main:
            return None
        return {**state, "ranks": parts, "world": self.world}

    def local_state(self, state: dict[str, Any]) -> dict[str, Any]:
        """A checkpoint's state with this rank's own sampler and RNG states."""
        if state.get("world") != self.world or "ranks" not in state:
            raise NegspaceError(f"the checkpoint was written by {state.get('world', 1)} "
                                f"process(es); resume it with --nproc {state.get('world', 1)}")
        own = state["ranks"][self.rank]
        return {**state, "sampler": own["sampler"], "rng": own["rng"]}

    def barrier(self) -> None:
        dist.barrier()


def group_exists() -> bool:
    """Whether this process has joined a process group already."""
    return dist.is_initialized()


def init_worker() -> DistContext:
    """Joins the process group (gloo, from the launcher's environment)."""
    if not dist.is_initialized():
        timeout = float(os.environ.get(TIMEOUT_ENV, "600"))
        dist.init_process_group("gloo", timeout=timedelta(seconds=timeout))
    ctx = DistContext(dist.get_rank(), dist.get_world_size())
    if not ctx.is_main and sys.stdout is sys.__stdout__:  # one report per run: rank 0's
        sys.stdout = open(os.devnull, "w")  # (errors still reach stderr)
    return ctx


def shutdown() -> None:
    """Destroys the process group (its gloo threads end here, not during interpreter exit)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def attach(trainer: Any, ctx: DistContext) -> None:
    """Makes a freshly built Trainer data-parallel: the autograd step (the hand-written CML
    step's row gradients are not reduced), steps per epoch over the global batch, equal
    starting parameters, the loss reduction the gradient weights follow."""
    trainer.dist = ctx
    for step in ("fused", "shared_step"):  # hand-written steps: their row gradients are not reduced
        if hasattr(trainer, step):
            setattr(trainer, step, None)
    if getattr(trainer, "device_step", None) is not None:
        raise NegspaceError("--nproc > 1 trains on the CPU with gloo; the accelerator step "
                            "(--device) is not distributed yet")
    ctx.summed_loss = trainer.objective.family is LossFamily.HINGE  # summed, not averaged
    if getattr(trainer.opt, "batch_by", "pair") == "user":  # the multinomial loss: mean over pairs
        degrees = torch.from_numpy(trainer.train.user_degrees())
        ctx.rows = lambda users: int(degrees[users].sum())
    trainer.n_steps = ctx.local_steps(len(trainer.users), trainer.opt.batch_size)
    ctx.broadcast_parameters(trainer.model)
    trainer.sampler.share_batch(ctx)  # candidate samplers: the global batch's candidates


def _maybe_fault(rank: int, global_step: int) -> None:
    spec = os.environ.get(FAULT_ENV)
    if spec:
        r, s = (int(x) for x in spec.split(":"))
        if r == rank and s == global_step:
            os.kill(os.getpid(), signal.SIGKILL)


# --------------------------------------------------------------------------------- launching

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(entry: Callable[..., Any], values: dict[str, Any], out: str | None, overwrite: bool,
            resume: bool) -> Any:
    """Entry point of each local rank: `entry` (the pipeline's one training run) inside the
    process group; a NegspaceError becomes this rank's one-line message and exit code 2."""
    try:
        result = entry(values, out, overwrite, resume)
    except NegspaceError as e:
        print(f"negspace (rank {os.environ.get('RANK')}): {e}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    return result if int(os.environ.get("RANK", "0")) == 0 else None


def launch(entry: Callable[..., Any], values: dict[str, Any], nproc: int, out: str | None,
           overwrite: bool, resume: bool) -> Any:
    """Runs `entry(values, out, overwrite, resume)` in nproc local processes through
    torch.distributed's launcher (the pipeline passes its training run; a module-level function,
    so that spawned processes can import it).

    Returns:
        Rank 0's RunOutput.

    Raises:
        NegspaceError: a rank failed or died; names it and how to continue.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc,
                          run_id=f"negspace-{uuid.uuid4().hex[:8]}", rdzv_backend="c10d",
                          rdzv_endpoint=f"127.0.0.1:{_free_port()}", max_restarts=0,
                          monitor_interval=0.2, start_method="spawn")
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # as torchrun does for several local workers
    try:
        results = elastic_launch(config, _worker)(entry, values, out, overwrite, resume)
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()  # the cause; the others were stopped after it
        code = failure.exitcode
        how = (f"was killed by {signal.Signals(-code).name}" if code < 0
               else f"exited with code {code}")
        hint = (f"; the last checkpoint in {out} is kept: continue with `negspace train "
                f"--resume {out}`" if out and code != 2 else "")
        raise NegspaceError(f"distributed training failed: rank {rank} of {nproc} {how}{hint}") from None
    return results[0]
