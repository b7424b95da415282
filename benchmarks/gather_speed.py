"""Row gathers the DAS engine makes every step: advanced indexing against index_select.

    python benchmarks/gather_speed.py

Prints µs per gather for the shapes of a training step on the reference GRU (a time step's
input gates, 5 fits × 128 pairs of cached activations and suffixes) and the ratio, measured
side by side in one run on one thread. Both give the same values (checked here too); the
engine and the fused kernels use index_select.
"""

from __future__ import annotations

import time

import torch

from numbench.machine import cpu_description


def per_call_us(fn, n: int = 2000) -> float:
    for _ in range(20):
        fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    cases = {  # name: (table, index)
        "input gates of one time step, (9, 384) by 640 tokens":
            (torch.randn(9, 384, generator=gen), torch.randint(0, 9, (640,), generator=gen)),
        "cached activations, (10000, 128) by 128 pairs":
            (torch.randn(10000, 128, generator=gen), torch.randint(0, 10000, (128,), generator=gen)),
        "cached suffix tokens, (10000, 41) by 128 pairs":
            (torch.randint(0, 9, (10000, 41), generator=gen), torch.randint(0, 10000, (128,), generator=gen)),
        "a step's rows sorted by length, (640, 41) by a permutation":
            (torch.randint(0, 9, (640, 41), generator=gen), torch.randperm(640, generator=gen)),
    }
    print(f"CPU: {cpu_description()}; 1 thread; µs per gather")
    for name, (table, index) in cases.items():
        assert torch.equal(table[index], table.index_select(0, index))
        fancy = per_call_us(lambda: table[index])
        select = per_call_us(lambda: table.index_select(0, index))
        print(f"  {name}: x[i] {fancy:.1f}, x.index_select(0, i) {select:.1f} ({fancy / select:.1f}x)")


if __name__ == "__main__":
    main()
