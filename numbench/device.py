"""Which device a command computes on (``--device auto|cpu|cuda[:N]``), and what a result
records of it.

On a CUDA device every reported number stays exact float32 arithmetic: TF32 is switched
off for matrix products and convolutions, and torch's deterministic algorithms are asked
for (with a warning where an op has none), so the same model file, protocol, seed and
device give the same numbers. Training steps may still run their products in bf16 where
the GPU has it (``EngineConfig.train_precision``), as on a CPU with bf16 dot products.
"""

from __future__ import annotations

import os
import re

import torch

from .errors import NumbenchError
from .machine import cpu_description

DEVICE_HELP = ("Where to compute: auto (a CUDA GPU when there is one, else the CPU), cpu, "
               "or cuda[:N].")


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """The device ``spec`` names, checked here: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    A CUDA device is made deterministic and TF32-free before first use."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = spec.strip().lower()
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", spec)
    if not match:
        raise NumbenchError(f"unknown device '{spec}': use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise NumbenchError(f"device '{spec}': this machine has no CUDA device that torch "
                            f"{torch.__version__} can use (try --device cpu)")
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise NumbenchError(f"device '{spec}': this machine has {torch.cuda.device_count()} "
                            "CUDA device(s)")
    exact_cuda()
    return torch.device("cuda", index)


def exact_cuda() -> None:
    """float32 products in float32 (no TF32) and deterministic algorithms on CUDA."""
    # cuBLAS needs this before its first handle to give deterministic products
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)


def device_name(device: torch.device) -> str:
    """What a result records of its device: the GPU's name, or the CPU's description."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_description()


def recorded_kind(versions: dict) -> str:
    """The kind of device (``cpu``, ``cuda``) a result's ``versions`` names."""
    return str(versions.get("device", "cpu")).split(":")[0]
