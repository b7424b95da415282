"""The time the matrix products alone put under a default evaluation on this CPU.

    python benchmarks/arithmetic_floor.py [--model baselines/gru_multi_object_s0.pt]
        [--result submissions/gru_multi_object_s0/result.json]
        [--quick-result submissions/gru_multi_object_s1_quick/result.json] [--steps 10]

A default evaluation's work is fixed by the protocol: its fits' alignment-steps (each a
batch of 128 pairs through the restarted recurrence and the readout, forward and backward).
This script measures, in one run, one thread:

* the floating-point operations of the matrix products in one alignment-step, counted by
  torch.profiler over training steps of every main fit of the model (five fits a forward,
  as the engine trains them), and the time those products take here, each recorded shape
  timed again on its own (the best of ten, so no profiler overhead);
* the time of a whole training step, unprofiled;
* this core's best float32 matrix-product speed (the best of a few shapes);
* the alignment-steps of a default and a ``--quick`` run, read from committed results.

It prints the products' time for one alignment-step and for each run, spread over the
engine's worker processes (one core each), at the speed they reach inside a step and at the core's best speed, beside the
measured whole step. Nothing here depends on scheduling: the figures are a lower bound on
the training alone, before validation, scoring, pair generation and start-up.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from numbench.engine import Engine, EngineConfig, FitSpec
from numbench.evaluate import _Pairs
from numbench.machine import cpu_description
from numbench.models.files import load_model
from numbench.programs import get_program
from numbench.protocol import PROGRAMS, engine_config
from numbench.tasks import load_task

PRODUCTS = ("aten::mm", "aten::addmm", "aten::bmm")
WIDTHS = (36, 15, 21, 20, 11, 6)


def _line(cells: tuple[str, ...]) -> str:
    """A table row: the first column left-aligned, the others right-aligned."""
    return "  " + "  ".join(f"{c:<{w}}" if i == 0 else f"{c:>{w}}"
                            for i, (c, w) in enumerate(zip(cells, WIDTHS)))


def best_seconds(key: str, shapes: list[list[int]], reps: int = 10) -> float:
    """The best of ``reps`` timings of one product of these shapes on its own."""
    op = getattr(torch, key.removeprefix("aten::"))
    gen, best = torch.Generator().manual_seed(0), float("inf")
    args = [torch.randn(*s, generator=gen) for s in shapes if s]  # addmm's scalars dropped
    op(*args)
    for _ in range(reps):
        start = time.perf_counter()
        op(*args)
        best = min(best, time.perf_counter() - start)
    return best


def best_gflops() -> float:
    """This core's best float32 product speed over a few shapes."""
    return max(2 * m * k * n / best_seconds("aten::mm", [[m, k], [k, n]]) / 1e9
               for m, k, n in ((256, 256, 256), (640, 384, 128), (1024, 1024, 1024)))


def main_fits(model_file: str) -> tuple[Engine, list[FitSpec], EngineConfig]:
    """An engine at the model's hidden site and the specs of evaluate's main fits there."""
    model, meta = load_model(model_file)
    pairs, specs = _Pairs(load_task(meta.task_name)), []
    for program in PROGRAMS:
        for var in get_program(program).variables:
            _, (tr, va, te) = pairs.triplet(program, var)
            specs += [FitSpec(f"{program}/{var}/{kind}", kind, 16, tr, va, te, seed=len(specs))
                      for kind in ("orthogonal", "linear")]
    config = engine_config(max_steps=10, eval_every=10**9, stop_iia=2, patience=10**9,
                          fail_after=10**9, workers=1, schedule="lockstep")
    return Engine(model, "hidden", config=config), specs, config


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="baselines/gru_multi_object_s0.pt")
    ap.add_argument("--result", default="submissions/gru_multi_object_s0/result.json")
    ap.add_argument("--quick-result", default="submissions/gru_multi_object_s1_quick/result.json")
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"CPU: {cpu_description()}; 1 thread")
    peak = best_gflops()
    print(f"best float32 product speed: {peak:.1f} GFLOP/s")

    engine, specs, config = main_fits(args.model)
    gen = torch.Generator().manual_seed(0)
    flops = product_s = whole_s = 0.0
    fit_steps = 0
    for first in range(0, len(specs), config.fits_per_forward):
        fits = engine.make_fits(specs[first:first + config.fits_per_forward])
        idx = torch.stack([torch.randperm(len(f.splits["train"].pos), generator=gen)[:128]
                           for f in fits])
        for _ in range(2):
            engine.train_step(fits, idx)
        start = time.perf_counter()
        for _ in range(args.steps):
            engine.train_step(fits, idx)
        whole_s += time.perf_counter() - start
        with profile(activities=[ProfilerActivity.CPU], with_flops=True, record_shapes=True) as prof:
            engine.train_step(fits, idx)
        for e in prof.key_averages(group_by_input_shape=True):
            if e.key in PRODUCTS:  # each recorded shape timed again on its own
                flops += e.flops * args.steps
                product_s += e.count * best_seconds(e.key, e.input_shapes) * args.steps
        fit_steps += len(fits) * args.steps
    gflop = flops / fit_steps / 1e9
    product_ms, whole_ms = product_s / fit_steps * 1e3, whole_s / fit_steps * 1e3
    inside = gflop / product_ms * 1e3
    print(f"{len(specs)} main fits, {config.fits_per_forward} a forward, {args.steps} steps each:")
    print(f"  per alignment-step: {gflop * 1e3:.0f} MFLOP in products, which take "
          f"{product_ms:.2f} ms on their own in the step's shapes ({inside:.1f} GFLOP/s); "
          f"the whole step {whole_ms:.2f} ms")

    workers = engine_config().workers
    print(f"an alignment-step amortised over {workers} processes (target 5 ms): products "
          f"{product_ms / workers:.2f} ms at the step's shapes, "
          f"{gflop / peak / workers * 1e3:.2f} ms at the best speed; whole step "
          f"{whole_ms / workers:.2f} ms")
    print(f"a run's training spread over {workers} processes, one core each:")
    head = ("run", "alignment-steps", "products, step shapes", "products, best speed",
            "whole steps", "target")
    print(_line(head))
    for label, path, target in (("default", args.result, 300), ("--quick", args.quick_result, 60)):
        doc = json.loads(Path(path).read_text())
        n = sum(c["steps"] for c in doc["cells"])
        row = (f"{label} ({Path(path).parent.name})", f"{n:,}",
               f"{n * product_ms / 1e3 / workers:.0f} s", f"{n * gflop / peak / workers:.0f} s",
               f"{n * whole_ms / 1e3 / workers:.0f} s", f"{target} s")
        print(_line(row))

if __name__ == "__main__":
    main()
