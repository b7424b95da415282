"""Which CPU a result was computed on, as far as it can change a result's last bits.

An evaluation is deterministic on one machine, but torch picks its matrix kernels per CPU:
bf16 products run on AMX tiles on recent Intel CPUs and on AVX512-BF16 dot products on AMD
Zen 4, float32 ones through different blockings, and each sums in its own order. So a
result records the CPU it ran on (``versions.cpu``), and ``numbench verify`` says so when a
mismatch may come from a different one.
"""

from __future__ import annotations

import platform
from pathlib import Path

import torch

#: CPU flags that decide how torch's bf16 matrix products run, best first
_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


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
