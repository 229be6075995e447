"""One step of the full softmax by users (scores, loss, backward), as autograd computed it and
as losses/multinomial.py does, before and after training/heap.py raises glibc's mmap threshold,
and then with models/unit_rows.py's backward of the cosine's normalisation in place of
F.normalize's.

    python bench/softmax_step.py [--threads 1] [--shape gowalla|ml1m] [--steps 12]

Prints the median milliseconds of each of the five set-ups and their ratios to the first, all
measured in this one run (the machine is shared: compare ratios, not times across runs). The
shapes: gowalla (256 users x 40,981 items, d 64, 27 positives a user) and ml1m (256 x 3,043,
d 512, 132 positives a user).
"""

from __future__ import annotations

import argparse
import time

import torch

from negspace.losses.multinomial import multinomial_nll
from negspace.models.unit_rows import unit_rows
from negspace.training.heap import keep_large_blocks

SHAPES = {"gowalla": (256, 40981, 64, 27), "ml1m": (256, 3043, 512, 132)}


def autograd_nll(logits: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """The loss as the objective computed it before losses/multinomial.py."""
    counts = logits.new_zeros(len(logits)).index_add_(0, rows, logits.new_ones(len(rows)))
    lse = torch.logsumexp(logits, dim=1)
    return ((counts * lse).sum() - logits[rows, cols].sum()) / len(rows)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """The cosine's normalisation as autograd differentiates it."""
    return torch.nn.functional.normalize(x, dim=1)


def median_ms(loss_fn, u: torch.Tensor, v: torch.Tensor, rows: torch.Tensor,
              cols: torch.Tensor, steps: int, unit=normalize) -> float:
    times = []
    for _ in range(steps + 2):  # the first two warm up
        t = time.perf_counter()
        un = unit(u) / 0.1
        logits = un @ unit(v).T
        loss_fn(logits, rows, cols).backward()
        times.append(time.perf_counter() - t)
    kept = sorted(times[2:])
    return 1000 * kept[len(kept) // 2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--shape", choices=sorted(SHAPES), default="gowalla")
    p.add_argument("--steps", type=int, default=12)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    b, n, d, per = SHAPES[a.shape]
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(b, d, generator=gen, requires_grad=True)
    v = torch.randn(n, d, generator=gen, requires_grad=True)
    pairs = torch.unique(torch.arange(b).repeat_interleave(per) * n
                         + torch.randint(0, n, (b * per,), generator=gen))
    rows, cols = pairs // n, pairs % n
    results = {}
    for heap in (False, True):  # the heap setting cannot be undone: without it first
        if heap and not keep_large_blocks():
            print("glibc's mallopt is not available here: the heap rows are left out")
            break
        for name, fn in (("autograd", autograd_nll), ("hand-written", multinomial_nll)):
            results[f"{name}{', heap' if heap else ''}"] = median_ms(fn, u, v, rows, cols, a.steps)
    results["hand-written, heap, unit_rows"] = median_ms(multinomial_nll, u, v, rows, cols,
                                                          a.steps, unit_rows)
    first = next(iter(results.values()))
    for name, ms in results.items():
        print(f"{a.shape} {a.threads} thread(s)  {name:<30} {ms:7.1f} ms  {first / ms:.2f}x")


if __name__ == "__main__":
    main()
