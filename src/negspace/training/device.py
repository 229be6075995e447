"""Where a run computes: `--device auto|cpu|cuda|cuda:N`, `--precision fp32|bf16|tf32|auto`
and `--deterministic`, resolved once and applied in one place.

Tables and optimiser state are float32 in every precision. `bf16` runs the two-tower MLPs and
score products under CUDA autocast (bfloat16 matmuls, float32 accumulation; softmaxes and losses
stay float32, as autocast keeps them), and on a CPU the full softmax's [B, d] x [d, n_items]
score products under CPU autocast (training/objective.py; the scores come back as float32);
`tf32` lets CUDA matmuls use TensorFloat-32 (a no-op on the CPU). `auto` is bf16 on a CPU whose
vector unit multiplies bfloat16 natively (avx512_bf16 or amx_bf16), else fp32: without them
oneDNN emulates the products, 2.2x slower than float32 (bench/records/speed.jsonl). Results stay
bit-exact for a seed on one machine in every precision. What can differ on a GPU is listed in
docs/reliability.md ("GPU").
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, ContextManager

import torch

from negspace.errors import NegspaceError

DEVICES_HELP = "auto (a GPU when there is one), cpu, cuda or cuda:N"
PRECISIONS = ("fp32", "bf16", "tf32", "auto")
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """The torch device for `spec`.

    Args:
        spec: "auto" (or None): cuda when torch sees a GPU, else cpu; "cpu"; "cuda"; "cuda:N";
            or a torch.device.

    Returns:
        The device.

    Raises:
        NegspaceError: an unknown spec, or a GPU asked for where there is none (one line).
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    text = "auto" if spec is None else str(spec).strip().lower()
    if text == "auto":
        return torch.device("cuda" if cuda_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        index = text[5:]
        if index and not index.isdigit():
            raise NegspaceError(f"--device {spec!r}: expected {DEVICES_HELP}")
        if not cuda_available():
            raise NegspaceError(f"--device {spec}: no CUDA device is available here (torch "
                                f"{torch.__version__}); use --device cpu or auto")
        if index and int(index) >= torch.cuda.device_count():
            raise NegspaceError(f"--device {spec}: only {torch.cuda.device_count()} CUDA "
                                f"device(s) here (cuda:0 to cuda:{torch.cuda.device_count() - 1})")
        return torch.device(text if index else "cuda:0")
    raise NegspaceError(f"--device {spec!r}: expected {DEVICES_HELP}")


def cuda_available() -> bool:
    """Whether torch can use a CUDA GPU (False, never an error, on a CPU-only build)."""
    try:
        return bool(torch.cuda.is_available())
    except Exception:  # a broken driver reads as no GPU
        return False


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise NegspaceError(f"--precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    return precision


def cpuinfo_value(key: str, cpuinfo: str = "/proc/cpuinfo") -> str:
    """The first `key : value` line's value in `cpuinfo` ("" where the key is absent or the file
    cannot be read: other systems)."""
    try:
        with open(cpuinfo) as f:
            return next((line.split(":", 1)[1].strip() for line in f
                         if line.split(":", 1)[0].strip() == key), "")
    except OSError:
        return ""


def cpu_multiplies_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU reports a native bfloat16 product (NATIVE_BF16_FLAGS); False where it
    cannot be read (other systems)."""
    flags = cpuinfo_value("flags", cpuinfo).split()
    return any(flag in flags for flag in NATIVE_BF16_FLAGS)


def resolve_precision(precision: str, device: torch.device) -> str:
    """`precision` with "auto" replaced: bf16 on a CPU that multiplies bfloat16 natively, else
    fp32 (GPUs keep fp32 unless asked)."""
    check_precision(precision)
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cpu" and cpu_multiplies_bf16() else "fp32"


def configure(device: torch.device, precision: str = "fp32", deterministic: bool = False) -> None:
    """Process-wide settings for a run on `device`: TF32 matmuls for `tf32` (and `bf16`, whose
    remaining float32 products may use them too) and, with `deterministic`, deterministic CUDA
    algorithms where torch has them (cuBLAS needs its workspace setting before first use).
    Nothing changes on the CPU, whose kernels are deterministic already."""
    check_precision(precision)
    if device.type != "cuda":
        return
    torch.backends.cuda.matmul.allow_tf32 = precision in ("tf32", "bf16")
    torch.backends.cudnn.allow_tf32 = precision in ("tf32", "bf16")
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        # warn_only: index_add_ and friends have no deterministic CUDA kernel in every version;
        # torch then warns once instead of failing the run
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def autocast(device: torch.device, precision: str) -> ContextManager[Any]:
    """bfloat16 autocast on CUDA for `bf16`; a no-op context everywhere else."""
    if precision == "bf16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def score_autocast() -> ContextManager[Any]:
    """bfloat16 autocast on the CPU, for `bf16`'s full-softmax score products (training/
    objective.py decides when). On CUDA the products follow `autocast`."""
    return torch.autocast("cpu", dtype=torch.bfloat16)


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of a model's parameters (cpu for a model without any)."""
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def device_name(device: torch.device) -> str:
    """A readable name: the GPU's, or "cpu"."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


def synchronize(device: torch.device) -> None:
    """Waits for the device's queued work (for timings); nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


__all__ = ["resolve_device", "resolve_precision", "cpuinfo_value", "cpu_multiplies_bf16",
           "cuda_available", "configure", "autocast", "score_autocast", "model_device",
           "device_name", "synchronize", "check_precision", "PRECISIONS", "DEVICES_HELP"]
