"""models/unit_rows.py: F.normalize's forward to the bit, its gradient to float rounding."""

import pytest
import torch

from negspace.models.unit_rows import unit_rows


def _rows() -> torch.Tensor:
    x = torch.randn(50, 24, generator=torch.Generator().manual_seed(0))
    x[3] = 0.0       # a zero row: the norm's floor
    x[7] *= 1e-14    # under the floor
    x[9] *= 1e4
    return x


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_is_normalize_and_gradient_is_autograds(dtype):
    x = _rows().to(dtype)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
    mine, ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    y = unit_rows(mine)
    expected = torch.nn.functional.normalize(ref, dim=-1)
    assert torch.equal(y, expected)
    y.backward(g)
    expected.backward(g)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert torch.allclose(mine.grad, ref.grad, rtol=tol, atol=tol * ref.grad.abs().max())
    assert torch.equal(mine.grad[3], ref.grad[3]) and mine.grad[7].abs().max() > 0


def test_gradcheck_and_batched_rows():
    x = torch.randn(2, 3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(unit_rows, (x,))


def test_without_a_gradient_it_is_normalize_itself():
    x = _rows()
    assert torch.equal(unit_rows(x), torch.nn.functional.normalize(x, dim=-1))
    with torch.no_grad():
        y = unit_rows(x.clone().requires_grad_())
    assert y.grad_fn is None


def test_a_bfloat16_table_keeps_its_dtype_and_bits():
    x = _rows()[:20].bfloat16().requires_grad_()
    y = unit_rows(x)
    assert y.dtype == torch.bfloat16 and torch.equal(y, torch.nn.functional.normalize(x, dim=-1))
    y.float().pow(2).sum().backward()
    assert x.grad.dtype == torch.bfloat16 and torch.isfinite(x.grad.float()).all()
