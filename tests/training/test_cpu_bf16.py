"""`--precision bf16` on a CPU (the full softmax's score products in bfloat16) and `auto`,
which takes it where the CPU multiplies bfloat16 natively (training/device.py)."""

import json

import pytest
import torch

from negspace.config import make_config, with_default_recipe
from negspace.models.base import score_matrix
from negspace.pipeline.fit import run_training
from negspace.training import device
from negspace.training.device import cpu_multiplies_bf16, resolve_precision
from negspace.training.objective import Objective


@pytest.mark.parametrize("flags, native", [("fpu avx512f avx512_bf16 sse", True),
                                           ("fpu amx_bf16 amx_tile", True),
                                           ("fpu avx512f avx512_vnni", False)])
def test_native_bf16_is_read_from_the_cpu_flags(tmp_path, flags, native):
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nvendor_id\t: X\nflags\t\t: {flags}\n")
    assert cpu_multiplies_bf16(str(info)) is native
    assert cpu_multiplies_bf16(str(tmp_path / "missing")) is False


def test_auto_is_bf16_only_on_a_cpu_that_multiplies_it(monkeypatch):
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    for native in (True, False):
        monkeypatch.setattr(device, "cpu_multiplies_bf16", lambda native=native: native)
        assert resolve_precision("auto", cpu) == ("bf16" if native else "fp32")
        assert resolve_precision("auto", gpu) == "fp32"
        assert resolve_precision("fp32", cpu) == "fp32"  # what is asked stays
        assert resolve_precision("bf16", cpu) == "bf16"
    assert make_config(with_default_recipe({})).precision == "auto"
    assert make_config({"model": "mf"}).precision == "fp32"


def test_bf16_scores_are_float32_and_close_to_the_float32_product():
    g = torch.Generator().manual_seed(0)
    u, v = torch.randn(16, 64, generator=g), torch.randn(300, 64, generator=g)
    exact = score_matrix(u, v, "dot")
    low = Objective(loss="softmax", bf16_scores=True)._scores(u, v, "dot")
    assert low.dtype == torch.float32 and not torch.equal(low, exact)  # the product did change
    assert torch.allclose(low, exact, atol=0.1 * exact.abs().max().item() / 8)
    # l2 scores subtract squared norms: kept float32
    assert torch.equal(Objective(loss="softmax", bf16_scores=True)._scores(u, v, "l2"),
                       score_matrix(u, v, "l2"))


def test_a_bf16_run_records_its_precision_and_repeats_bit_for_bit(toy_csv, tmp_path):
    values = {"dataset": str(toy_csv), "model": "mf", "loss": "softmax", "sampler": "full",
              "batch_by": "user", "dim": 16, "epochs": 3, "seed": 0, "progress": False,
              "threads": 1, "precision": "bf16"}
    out = run_training(make_config(values), tmp_path / "run")
    assert json.loads((tmp_path / "run" / "config.json").read_text())["precision"] == "bf16"
    again = run_training(make_config(values))
    assert torch.equal(out.model.items.weight, again.model.items.weight)
    fp32 = run_training(make_config({**values, "precision": "fp32"}))
    assert not torch.equal(out.model.items.weight, fp32.model.items.weight)


def test_the_sampled_softmax_keeps_float32(toy_csv):
    values = {"dataset": str(toy_csv), "model": "mf", "loss": "softmax",
              "sampler": "uniform-softmax", "negatives": 20, "batch_by": "user", "dim": 16,
              "epochs": 2, "seed": 0, "progress": False, "threads": 1}
    bf16 = run_training(make_config({**values, "precision": "bf16"}))
    fp32 = run_training(make_config({**values, "precision": "fp32"}))
    assert torch.equal(bf16.model.items.weight, fp32.model.items.weight)
