"""What the pieces of an evaluation cost on this CPU, measured in one run, one thread.

    python benchmarks/step_costs.py [--model baselines/gru_multi_object_s0.pt] [--steps 20]

Prints:
* a 640×128 by 128×384 matrix product (a time step of five fits of the d=128 GRU) in
  float32 and in bf16, and their ratio: bf16 is faster only where the CPU has bf16 dot
  products (``machine.default_train_precision`` picks the training precision from that);
* whether float32 products are row-exact here (``machine.fp32_rows_exact``: the continuous
  schedule then trains float32 fits);
* the seconds to generate evaluate's 30 single-mode pair sets (made before any fit starts);
* ms per training step of five fits in this CPU's default precision, and the ops that take
  most of it (torch.profiler, self CPU time).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

from numbench.engine import Engine, FitSpec
from numbench.evaluate import _Pairs
from numbench.machine import cpu_description, fp32_rows_exact
from numbench.models.files import load_model
from numbench.protocol import PROGRAMS, engine_config
from numbench.programs import get_program
from numbench.tasks import load_task


def product_us(dtype: torch.dtype, n: int) -> float:
    gen = torch.Generator().manual_seed(0)
    a, b, c = (torch.randn(*s, generator=gen).to(dtype) for s in ((640, 128), (128, 384), (384,)))
    for _ in range(3):
        torch.addmm(c, a, b)
    start = time.perf_counter()
    for _ in range(n):
        torch.addmm(c, a, b)
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="baselines/gru_multi_object_s0.pt")
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"CPU: {cpu_description()}; 1 thread")

    fp32, bf16 = product_us(torch.float32, 200), product_us(torch.bfloat16, 10)
    print(f"640x128 by 128x384 product: float32 {fp32:,.0f} µs, bf16 {bf16:,.0f} µs "
          f"(bf16 {fp32 / bf16:.2f}x float32's speed)")
    print(f"float32 products row-exact from 32 rows: {fp32_rows_exact()}")

    model, meta = load_model(args.model)
    task = load_task(meta.task_name)
    start, pairs, specs = time.perf_counter(), _Pairs(task), []
    for program in PROGRAMS:
        for var in get_program(program).variables:
            for permuted in (False, True):
                _, (tr, va, te) = pairs.triplet(program, var, permuted=permuted)
                if not permuted:
                    specs += [FitSpec(f"{program}/{var}/{kind}", kind, 16, tr, va, te, seed=len(specs))
                              for kind in ("orthogonal", "linear")]
    print(f"evaluate's 30 pair sets: {time.perf_counter() - start:.1f} s")

    config = engine_config(max_steps=10, eval_every=10**9, stop_iia=2, patience=10**9,
                          fail_after=10**9, workers=1, schedule="lockstep")
    engine = Engine(model, "hidden", config=config)
    fits = engine.make_fits(specs[:5])
    gen = torch.Generator().manual_seed(0)
    idx = torch.stack([torch.randperm(len(f.splits["train"].pos), generator=gen)[:128] for f in fits])
    for _ in range(3):
        engine.train_step(fits, idx)
    start = time.perf_counter()
    for _ in range(args.steps):
        engine.train_step(fits, idx)
    print(f"training step of 5 fits ({config.train_precision} products): "
          f"{(time.perf_counter() - start) / args.steps * 1000:.1f} ms")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            engine.train_step(fits, idx)
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events)
    print("  most self CPU time: " + ", ".join(
        f"{e.key} {e.self_cpu_time_total / total:.0%}" for e in events[:8]))


if __name__ == "__main__":
    main()
