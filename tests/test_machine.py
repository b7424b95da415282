"""The CPU facts that choose the engine's defaults (numbench/machine.py)."""

import pytest
import torch

from numbench import machine
from numbench.protocol import engine_config


@pytest.mark.parametrize("flags,want", [({"avx2", "avx512_bf16"}, "bf16"), ({"amx_bf16"}, "bf16"),
                                        ({"avx2", "fma"}, "fp32"), (set(), "fp32")])
def test_training_precision_defaults_to_what_is_fast_on_the_cpu(monkeypatch, flags, want):
    """bf16 products only where the CPU has bf16 dot products: elsewhere torch emulates
    them ~30x slower than float32 (an AVX2 AMD EPYC)."""
    monkeypatch.setattr(machine, "_cpuinfo", lambda: ("Some CPU", flags))
    assert machine.default_train_precision() == want
    assert engine_config().train_precision == want  # a fresh config takes it
    assert engine_config(train_precision="fp32").train_precision == "fp32"  # unless told


def test_the_row_probe_catches_products_that_sum_a_row_by_its_company(monkeypatch):
    """``fp32_rows_exact`` compares rows of products of many row counts with one product's:
    a matmul whose row depends on how many rows share it is caught."""
    machine.fp32_rows_exact.cache_clear()
    try:
        assert isinstance(machine.fp32_rows_exact(), bool)
        machine.fp32_rows_exact.cache_clear()
        real = torch.Tensor.__matmul__
        # a product that rounds differently when it has fewer than 100 rows
        monkeypatch.setattr(torch.Tensor, "__matmul__", lambda a, b: real(a, b) * (
            1 + 1e-7 * (len(a) < 100)))
        assert machine.fp32_rows_exact() is False
    finally:
        monkeypatch.undo()
        machine.fp32_rows_exact.cache_clear()
