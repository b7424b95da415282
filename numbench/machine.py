"""Which CPU a result was computed on, as far as it can change a result's last bits.

An evaluation is deterministic on one machine, but torch picks its matrix kernels per CPU:
bf16 products run on AMX tiles on recent Intel CPUs and on AVX512-BF16 dot products on AMD
Zen 4 (and are emulated, slowly, elsewhere), float32 ones through different blockings, and
each sums in its own order. So a result records the CPU it ran on (``versions.cpu``), and
``numbench verify`` says so when a mismatch may come from a different one. The CPU also
picks the engine's default training precision (``default_train_precision``).
"""

from __future__ import annotations

import functools
import platform
from contextlib import contextmanager
from pathlib import Path

import torch

#: CPU flags that decide how torch's bf16 matrix products run, best first
_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@functools.lru_cache(maxsize=None)
def _cpuinfo() -> tuple[str, set[str]]:
    """The CPU's model name and flags (Linux's /proc/cpuinfo; elsewhere the platform's name)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), set()
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields.get("model name", platform.machine()), set(fields.get("flags", "").split())


def bf16_products() -> bool:
    """Whether this CPU has bf16 dot products (AMX or AVX512-BF16), where torch's bf16
    matrix products run faster than float32 ones. Without them torch emulates bf16
    products, ~30× slower than float32 (measured on an AVX2 AMD EPYC)."""
    return any(f in _cpuinfo()[1] for f in _BF16_FLAGS)


def default_train_precision() -> str:
    """The engine's default ``train_precision`` here: ``"bf16"`` where the CPU has bf16
    dot products, else ``"fp32"``. Speed only; a result records the one it used."""
    return "bf16" if bf16_products() else "fp32"


@contextmanager
def one_thread():
    """torch on one thread here, as in every engine worker process (``engine/parallel.py``).
    Whatever a process computes for fits that may train in a worker (their prepared
    activations above all) must be computed so: some models' float32 runs round differently
    on two threads (the LSTM's activations by up to 1e-5), and a fit's numbers must not
    depend on where it trains."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@functools.lru_cache(maxsize=None)
def fp32_rows_exact() -> bool:
    """Whether this machine's float32 matrix products compute each row the same however
    many rows share the product and wherever the row sits in it, from 32 rows on — as a
    fused training step runs them (``RecurrentRunner._resume_packed`` rounds its row
    counts up to multiples of 32). Probed once a process, on one thread, on products of the
    shapes and layouts the reference models' training steps use (weights contiguous with
    ≥ 96 columns, or transposed as ``nn.Linear`` holds them). MKL on an AVX2 AMD EPYC
    sums rows differently below 4 rows, and for a contiguous weight of ≤ 10 columns by the
    row's place in the product; neither arises there. The engine's continuous schedule
    needs it for float32 training (docs/engine.md); where it fails, fits step in lockstep."""
    generator = torch.Generator().manual_seed(0)
    rand = lambda *shape: torch.randn(*shape, generator=generator)
    with one_thread():
        for k, n in ((32, 96), (128, 384), (128, 512), (512, 128), (512, 9), (64, 9)):
            x = rand(1100, k)
            for w in [rand(n, k).t()] + ([rand(k, n)] if n >= 96 else []):
                whole = x @ w
                if not all(torch.equal(x[start : start + rows] @ w, whole[start : start + rows])
                           for rows in (32, 64, 96, 128, 160, 224, 256, 384, 512, 640, 768, 1024)
                           for start in (0, 3, 37)):
                    return False
    return True


def cpu_description() -> str:
    """This CPU and the instructions behind torch's kernels, e.g. ``'AMD EPYC (AVX512,
    avx512_bf16)'``: the model name, torch's CPU capability, and the best bf16 dot-product
    instruction set (or ``no bf16 dot products``)."""
    name, flags = _cpuinfo()
    bf16 = next((f for f in _BF16_FLAGS if f in flags), "no bf16 dot products")
    return f"{name} ({torch.backends.cpu.get_cpu_capability()}, {bf16})"


def other_cpu_note(recorded: str | None, here: str) -> str | None:
    """Why a re-run on CPU ``here`` may not reproduce a result recorded on ``recorded``;
    None when the two are the same CPU."""
    if recorded == here:
        return None
    was = recorded or "a CPU it does not name (written before results recorded theirs)"
    return (f"the result was computed on {was} and re-run on {here}: matrix kernels differ "
            "between CPU kinds, so a fit's last bits, and over thousands of steps its numbers, "
            "may differ; verify it on a CPU of the recorded kind")
