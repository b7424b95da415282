"""DAS engine speed against a straightforward loop, measured side by side in one run.

    python benchmarks/das_speed.py [--model baselines/gru_multi_object_s0.pt] [--steps 200]

Prints: the plain loop's cost (python loop over time with a cell step, float32, no
caching, one alignment at a time); then for the engine with its default speed settings
(bf16 training products where the CPU has bf16 dot products, else float32), with autograd
in place of the fused training kernels, with the other training precision (bf16 only
where the CPU has bf16 dot products, or with --emulated-bf16), and with one worker: the
amortised cost of one training
step of one alignment (batch 128, fits batched as `numbench evaluate` batches them:
5 variables x {orthogonal, linear}), the throughput ratio to the plain loop in pairs per
second, and the test IIA reached after the same number of steps from the same
initialisation as the plain loop (they should agree within 0.02).
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
import torch.nn.functional as F

from numbench.alignments import make_alignment
from numbench.engine import Engine, FitSpec, PairTensors, run
from numbench.evaluate import _Pairs
from numbench.machine import cpu_description, default_train_precision
from numbench.models.files import load_model
from numbench.protocol import PROGRAMS, engine_config
from numbench.programs import get_program
from numbench.tasks import load_task


def plain_step_loop(model, align, p: PairTensors, idx, site="hidden"):
    """Forward of one batch the obvious way: every time step in python, whole sequence."""
    ids, pos = p.cf_ids[idx], p.base_pos[idx]
    with torch.no_grad():
        h_s = model.activations(p.src_ids[idx], site)[torch.arange(len(idx)), p.src_pos[idx]]
    step = model.stepper()
    h = torch.zeros(len(idx), model.sites[site])
    outs = []
    for t in range(ids.shape[1]):
        h = step(h, ids[:, t])
        at = (pos == t)[:, None]
        h = torch.where(at, align(h, h_s), h)
        outs.append(model.output_from_site(h))
    return model.readout(torch.stack(outs, 1))


def plain_train(model, kind, k, seed, train, steps, batch=128):
    align = make_alignment(kind, model.sites["hidden"], k, seed=seed)
    opt = torch.optim.Adam(align.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    order = torch.randperm(len(train), generator=gen)
    targets = torch.cat([train.cf_ids[:, 1:], train.cf_ids[:, -1:]], 1)
    for s in range(steps):
        idx = order[(s * batch) % len(train):][:batch]
        logits = plain_step_loop(model, align, train, idx)
        m = train.cf_scored[idx]
        loss = F.cross_entropy(logits[m], targets[idx][m])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return align


def plain_iia(model, align, p: PairTensors):
    with torch.no_grad():
        idx = torch.arange(len(p))
        logits = plain_step_loop(model, align, p, idx)
        tg = torch.cat([p.cf_ids[:, 1:], p.cf_ids[:, -1:]], 1)
        return float(((logits.argmax(-1) == tg) | ~p.cf_scored).all(1).float().mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="baselines/gru_multi_object_s0.pt")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--plain-steps", type=int, default=60)
    ap.add_argument("--emulated-bf16", action="store_true",
                    help="time bf16 training products on a CPU without bf16 dot products too")
    args = ap.parse_args()
    model, meta = load_model(args.model)
    task = load_task(meta.task_name)
    for q in model.parameters():
        q.requires_grad_(False)
    pairs = _Pairs(task)
    specs = []
    for program in PROGRAMS:
        for var in get_program(program).variables:
            _, (tr, va, te) = pairs.triplet(program, var)
            for kind in ("orthogonal", "linear"):
                specs.append(FitSpec(f"{program}/{var}/{kind}", kind, 16, tr, va, te, seed=len(specs)))
    def engine(n: int, reference: bool = False, **speed) -> Engine:
        config = engine_config(max_steps=n, eval_every=10**9, stop_iia=2, patience=10**9,
                              fail_after=10**9, **speed)
        return Engine(model, "hidden", config=config, reference=reference)
    here = default_train_precision()
    other = "fp32" if here == "bf16" else "bf16"
    variants = {f"engine (defaults here: fused kernels, {here} training products, 2 workers)": {},
                "reference engine, autograd through the stepper": {"reference": True}}
    if other == "fp32" or args.emulated_bf16:
        variants[f"engine, {other} training products"] = {"train_precision": other}
    else:
        print("(bf16 training products left out: this CPU has no bf16 dot products and torch "
              "emulates them, ~30x slower than float32; --emulated-bf16 times them anyway)")
    variants["engine, 1 worker"] = {"workers": 1}
    print(f"CPU: {cpu_description()}")
    print(f"model {args.model} ({model.parameter_count():,} params), {len(specs)} fits batched, "
          f"batch 128, torch threads {torch.get_num_threads()}")
    # plain: one alignment (the first spec), a few steps, timed directly
    spec = specs[0]
    t = time.perf_counter()
    ref = plain_train(model, spec.alignment, 16, spec.seed, spec.train, args.plain_steps)
    plain_ms = (time.perf_counter() - t) / args.plain_steps * 1000
    ref_iia = plain_iia(model, ref, spec.test)
    print(f"plain loop: {plain_ms:.1f} ms per alignment-step ({128 / plain_ms * 1000:,.0f} pairs/s); "
          f"test IIA after {args.plain_steps} steps {ref_iia:.3f}")
    for name, speed in variants.items():
        # time the difference of two runs so preparation and scoring cancel out
        times = []
        for n in (10, 10 + args.steps):
            t = time.perf_counter()
            res = run(engine(n, **speed), specs)
            times.append(time.perf_counter() - t)
        ms = (times[1] - times[0]) / args.steps / len(specs) * 1000
        # equal IIA: the same fit trained the same number of steps as the plain loop
        same = run(engine(args.plain_steps, **speed), [spec])[0]
        print(f"{name}: {ms:.2f} ms per alignment-step ({128 / ms * 1000:,.0f} pairs/s), "
              f"{plain_ms / ms:.1f}x the plain loop's throughput; test IIA after "
              f"{args.plain_steps} steps {same.test_iia:.3f} (plain {ref_iia:.3f})")
    print(f"final test IIA of the last {args.steps + 10}-step engine run: "
          + ", ".join(f"{r.key} {r.test_iia:.3f}" for r in res))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of this process {peak:.0f} MB (its worker process not counted; "
          "benchmarks/evaluate_wall.py sums them)")


if __name__ == "__main__":
    main()
