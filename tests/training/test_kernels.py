"""The numba kernels of the CML step (training/kernels.py, the `fast` extra) against the torch
hand-written step and RowAdam."""

import numpy as np
import pytest
import torch

from negspace.models.cml import CML
from negspace.training import kernels
from negspace.training.fused import CMLTripletStep
from negspace.training.objective import Objective
from negspace.training.optim import RowAdam, sum_rows

from .test_fused import _batch

pytestmark = pytest.mark.skipif(not kernels.AVAILABLE, reason="numba (the fast extra) missing")

OBJECTIVES = [Objective(), Objective(margin=0.5, gor_weight=1.0),
              Objective(rank_weight=True, gor_weight=0.1), Objective(margin=4.0)]


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_loss_and_gradients_equal_the_torch_step(objective):
    torch.manual_seed(2)
    model = CML(30, 40, 8)
    users, items, negatives = _batch(30, 40)
    step = CMLTripletStep(model, objective, RowAdam(model.parameters()), compiled=False)
    loss, (g_u, g_p, g_n) = step.loss_and_grads(users, items, negatives)
    b, n = negatives.shape
    mine = [np.empty((b, 8), np.float32), np.empty((b, 8), np.float32),
            np.empty((b, n, 8), np.float32)]
    got = kernels.loss_and_grads(model.users.weight.detach().numpy(),
                                 model.items.weight.detach().numpy(), users.numpy(),
                                 items.numpy(), negatives.numpy(), objective.margin,
                                 objective.gor_weight,
                                 model.n_items if objective.rank_weight else 0, *mine)
    assert got == pytest.approx(loss.item(), rel=1e-5) and loss.item() > 0
    for ref, out in zip((g_u, g_p, g_n), (mine[0], mine[1], mine[2].reshape(b * n, 8))):
        np.testing.assert_allclose(out, ref.numpy(), rtol=1e-4, atol=1e-6)


def test_adam_rows_equals_row_adam_with_repeated_rows():
    rng = np.random.default_rng(0)
    ref, mine = (torch.nn.Parameter(torch.from_numpy(rng.standard_normal((50, 6)).astype(np.float32)))
                 for _ in range(2))
    with torch.no_grad():
        mine.copy_(ref)
    start = ref.detach().clone()
    opt_ref, opt = RowAdam([ref], lr=0.05), RowAdam([mine], lr=0.05)
    for _ in range(4):
        ids = rng.integers(0, 30, 80)  # repeats; rows 30.. never touched
        grads = rng.standard_normal((80, 6)).astype(np.float32)
        opt_ref.update_rows(ref, *sum_rows(torch.from_numpy(ids), torch.from_numpy(grads)))
        exp_avg, exp_avg_sq, step_size, (b1, b2, eps) = opt.advance(mine)
        kernels.adam_rows(mine.detach().numpy(), exp_avg.numpy(), exp_avg_sq.numpy(), ids,
                          np.argsort(ids, kind="stable"), grads, b1, b2, eps, step_size)
    torch.testing.assert_close(mine, ref, rtol=1e-5, atol=1e-6)
    for key in ("exp_avg", "exp_avg_sq"):
        torch.testing.assert_close(opt.state[mine][key], opt_ref.state[ref][key], rtol=1e-5,
                                   atol=1e-7)
    assert opt.state[mine]["step"] == opt_ref.state[ref]["step"] == 4
    assert torch.equal(mine.detach()[30:], start[30:])  # lazy: untouched rows never move
    assert not torch.equal(mine.detach()[:30], start[:30])


def test_compiled_step_is_the_default_when_numba_is_there():
    model = CML(5, 6, 4)
    assert CMLTripletStep(model, Objective(), RowAdam(model.parameters())).compiled
