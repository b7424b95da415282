"""A transformer's DAS training step: the whole forward against the engine's packed tails.

    python benchmarks/transformer_speed.py [--model baselines/transformer_multi_object_s0.pt]
                                           [--steps 10] [--repeats 2] [--iia-steps 300]

For each site, the cost of one training step of one alignment (batch 128; the five
variables' orthogonal fits share each step, as a lockstep part of `numbench evaluate` does;
one process, one torch thread), timed over the same ``--steps`` batches, ``--repeats``
times in turn: the reference engine (the model's whole forward in float32, the tests'
oracle) against the engine's own step (rows from the interchange on, packed without
padding, the positions before it from a head cache built once per pair set), in float32
and, where this CPU has bf16 dot products, in bf16 too; and in prefix mode at `embed`,
where there is no tail, the whole forward in float32 against the default. Then one fit
(Up-Down phase, orthogonal, k 16, at `embed`) trained `--iia-steps` steps from the same
initialisation on the same batches by both: their test IIA should agree within 0.02
(PROTOCOL §5).
"""

from __future__ import annotations

import argparse
import time

import torch

from numbench.engine import Engine, FitSpec, run
from numbench.evaluate import _Pairs
from numbench.machine import cpu_description, default_train_precision
from numbench.models.files import load_model
from numbench.protocol import PROGRAMS, engine_config
from numbench.programs import get_program
from numbench.tasks import load_task


WHOLE = "whole forward, fp32"


def variants() -> dict[str, dict]:
    """Engine keyword arguments by name: the reference and the engine's step per precision."""
    precisions = ["fp32"] + (["bf16"] if default_train_precision() == "bf16" else [])
    return {WHOLE: {"reference": True}} | {f"packed tails, {p}": {"train_precision": p}
                                           for p in precisions}


def ms_per_step(engines: dict, batches: list[torch.Tensor], repeats: int) -> dict[str, float]:
    """Best of ``repeats`` rounds (the variants in turn each round) of ms per
    alignment-step over ``batches``."""
    best = {}
    for _ in range(repeats):
        for name, (engine, fits) in engines.items():
            t = time.perf_counter()
            for idx in batches:
                engine.train_step(fits, idx)
            ms = (time.perf_counter() - t) / len(batches) / len(fits) * 1000
            best[name] = min(best.get(name, ms), ms)
    return best


def engine(model, site: str, mode: str, steps: int, reference: bool = False, **speed) -> Engine:
    config = engine_config(max_steps=steps, eval_every=10**9, stop_iia=2, patience=10**9,
                          fail_after=10**9, workers=1, **speed)
    return Engine(model, site, mode, config=config, reference=reference)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="baselines/transformer_multi_object_s0.pt")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=2)
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
    n_train = len(specs[0].train.base_pos)
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randperm(n_train, generator=gen)[:128] for _ in range(args.steps)]
    print(f"CPU: {cpu_description()}")
    print(f"model {args.model}: {len(specs)} fits a step, batch 128, 1 thread, best of "
          f"{args.repeats}; ms per alignment-step, and speed-up over the whole forward")
    rows = [(site, "single", specs, variants()) for site in model.sites]
    rows.append(("embed", "prefix", prefix, {WHOLE: variants()[WHOLE], "default": {}}))
    for site, mode, fits, speeds in rows:
        engines = {}
        for name, speed in speeds.items():
            e = engine(model, site, mode, 1, **speed)
            engines[name] = (e, e.make_fits(fits))
            e.train_step(engines[name][1], batches[0])  # warm up
        ms = ms_per_step(engines, batches, args.repeats)
        base = ms[WHOLE]
        print(f"  {site}, {mode}: " + "; ".join(f"{k} {v:.1f} ms ({base / v:.1f}x)" for k, v in ms.items()),
              flush=True)
    phase = next(s for s in specs if s.key == "up_down/phase")
    iia = {name: run(engine(model, "embed", "single", args.iia_steps, **speed), [phase])[0].test_iia
           for name, speed in ((WHOLE, variants()[WHOLE]), ("default", {}))}
    print(f"test IIA of {phase.key} at embed after {args.iia_steps} steps: "
          + ", ".join(f"{k} {v:.3f}" for k, v in iia.items()))


if __name__ == "__main__":
    main()
