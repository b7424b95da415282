"""A transformer's DAS training step: whole forward against the tail path, side by side.

    python benchmarks/transformer_speed.py [--model baselines/transformer_multi_object_s0.pt]
                                           [--steps 30] [--iia-steps 300]

For each site, the amortised cost of one training step of one alignment (batch 128; the
five variables' orthogonal fits share each step, as a lockstep part of `numbench evaluate`
does; one process, one torch thread) with `causal_training` "full" (the model's whole
forward in float32, the path before session 9), "tail" with float32 products, and "tail"
with bf16 products (the default); and in prefix mode at `embed`, where there is no tail,
the whole forward in float32 against the default (bf16 products). Then one fit (Up-Down phase, orthogonal, k 16, at
`embed`) trained `--iia-steps` steps from the same initialisation on the same batches with
"full" and with the default: their test IIA should agree within 0.02 (PROTOCOL §5).
"""

from __future__ import annotations

import argparse
import time

import torch

from numbench.das import Engine, EngineConfig, FitSpec
from numbench.evaluate import _Pairs
from numbench.machine import cpu_description
from numbench.models.files import load_model
from numbench.protocol import PROGRAMS
from numbench.programs import get_program
from numbench.tasks import load_task

VARIANTS = {"full, float32 (before)": {"causal_training": "full", "train_precision": "fp32"},
            "tail, float32": {"causal_training": "tail", "train_precision": "fp32"},
            "tail, bf16 (default)": {"causal_training": "tail", "train_precision": "bf16"}}


def ms_per_step(model, site, mode, specs, steps, speed) -> float:
    """Amortised ms per alignment-step: the difference of two runs, so that preparation
    and scoring cancel out."""
    times = []
    for n in (2, 2 + steps):
        t = time.perf_counter()
        Engine(model, site, mode, config=config(n, **speed)).run(specs)
        times.append(time.perf_counter() - t)
    return (times[1] - times[0]) / steps / len(specs) * 1000


def config(steps: int, **speed) -> EngineConfig:
    return EngineConfig(max_steps=steps, eval_every=10**9, stop_iia=2, patience=10**9,
                        fail_after=10**9, workers=1, **speed)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="baselines/transformer_multi_object_s0.pt")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--iia-steps", type=int, default=300)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model, meta = load_model(args.model)
    pairs = _Pairs(load_task(meta.task_name))
    specs, prefix = [], []
    for program in PROGRAMS:
        for var in get_program(program).variables:
            for mode, out in (("single", specs), ("prefix", prefix)):
                _, (tr, va, te) = pairs.triplet(program, var, mode=mode)
                out.append(FitSpec(f"{program}/{var}", "orthogonal", 16, tr, va, te, seed=len(out)))
    print(f"CPU: {cpu_description()}")
    print(f"model {args.model}: {len(specs)} fits a step, batch 128, 1 thread; "
          "ms per alignment-step, and speed-up over the whole forward")
    rows = [(site, "single", specs, VARIANTS) for site in model.sites]
    rows.append(("embed", "prefix", prefix,
                 {"whole forward, float32 (before)": VARIANTS["full, float32 (before)"],
                  "whole forward, bf16 (default)": VARIANTS["tail, bf16 (default)"]}))
    for site, mode, fits, variants in rows:
        line, base = [], None
        for name, speed in variants.items():
            ms = ms_per_step(model, site, mode, fits, args.steps, speed)
            base = base or ms
            line.append(f"{name} {ms:.1f} ms ({base / ms:.1f}x)")
        print(f"  {site}, {mode}: " + "; ".join(line), flush=True)
    phase = next(s for s in specs if s.key == "up_down/phase")
    iia = {name: Engine(model, "embed", config=config(args.iia_steps, **VARIANTS[name])).run([phase])[0].test_iia
           for name in ("full, float32 (before)", "tail, bf16 (default)")}
    print(f"test IIA of {phase.key} at embed after {args.iia_steps} steps: "
          + ", ".join(f"{k} {v:.3f}" for k, v in iia.items()))


if __name__ == "__main__":
    main()
