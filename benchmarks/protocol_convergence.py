"""Is the protocol's budget close to converged? Its ranked cells trained longer, and from
other initialisations, against a protocol result.

    python benchmarks/protocol_convergence.py submissions/gru_multi_object_s0/result.json
        [--longer 4] [--restarts 3] [--skip-longer | --skip-restarts]

For every ranked cell of the result (each program variable under orthogonal and linear at
the ranked k, at the site the result found best on valid) it trains the same alignment
again under the protocol's budget stretched ``--longer`` times (``max_steps`` and
``patience``), and under the protocol's budget from ``--restarts`` other seeds (each
restart its own initialisation and batch order; the restart with the best valid IIA is
kept, the result's own fit among them). Prints each cell's test IIA: the result's, the
longer training's and the restarts', and the largest rise of each. Protocol 2 asks the
longer training to raise no ranked cell by more than 0.01 (docs/protocol.md).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from numbench.engine import Engine, EngineConfig, FitSpec, train_together
from numbench.evaluate import _Pairs, _fit_seed
from numbench.machine import cpu_description
from numbench.models.files import load_model
from numbench.protocol import BUDGET, RANKED_ALIGNMENTS
from numbench.settings import Settings
from numbench.tasks import load_task
from protocol_budget import load_shipped_architectures

ROOT = Path(__file__).resolve().parent.parent


def train(model, task, cells: list[dict], config: EngineConfig, seed: int) -> dict[str, tuple]:
    """(valid IIA, test IIA, steps) of each cell's alignment retrained under ``config``."""
    pairs, runs = _Pairs(task), {}
    for c in cells:
        _, tensors = pairs.triplet(c["program"], c["variable"])
        spec = FitSpec(c["key"], c["alignment"], c["k"], *tensors, seed=_fit_seed(seed, c["key"]))
        runs.setdefault(c["site"], []).append(spec)
    sites = list(runs)
    results = train_together([(Engine(model, s, "single", config), runs[s]) for s in sites],
                             seed=seed)
    return {r.key: (r.valid_iia, r.test_iia, r.steps) for rs in results for r in rs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("result")
    ap.add_argument("--model", help="the model file (default: baselines/<result's model.file>)")
    ap.add_argument("--longer", type=int, default=4)
    ap.add_argument("--restarts", type=int, default=3)
    ap.add_argument("--skip-longer", action="store_true")
    ap.add_argument("--skip-restarts", action="store_true")
    args = ap.parse_args()
    doc = json.loads(Path(args.result).read_text())
    load_shipped_architectures()
    model, _ = load_model(args.model or ROOT / "baselines" / doc["model"]["file"])
    task = load_task(doc["task"]["name"])
    summary = doc["summary"]["programs"]
    by_key = {c["key"]: c for c in doc["cells"]}
    cells = [by_key[f"{p}/{v}/{a}/k{e['k']}/{e['site']}/single"]
             for p, prog in summary.items() for v, per in prog["variables"].items()
             for a, e in per.items() if a in RANKED_ALIGNMENTS]
    base = replace(Settings.from_json(doc["settings"]).engine, **BUDGET)
    seed = doc["settings"]["seed"]
    print(f"CPU: {cpu_description()}; {doc['model']['file']}: {len(cells)} ranked cells; "
          f"budget {BUDGET}")
    longer = restarts = {}
    if not args.skip_longer:
        t = time.perf_counter()
        config = replace(base, max_steps=base.max_steps * args.longer,
                         patience=base.patience * args.longer)
        longer = train(model, task, cells, config, seed)
        print(f"{args.longer}x longer: {time.perf_counter() - t:.0f} s")
    if not args.skip_restarts:
        t = time.perf_counter()
        runs = [train(model, task, cells, base, seed + 1000 * r) for r in range(1, args.restarts)]
        restarts = {c["key"]: max([(c["valid_iia"], c["test_iia"], c["steps"])]
                                  + [run[c["key"]] for run in runs]) for c in cells}
        print(f"{args.restarts} restarts (the result's own fit and {args.restarts - 1} more): "
              f"{time.perf_counter() - t:.0f} s")
    print(f"\n{'cell':<44} {'result':>7} {'longer':>7} {'steps':>6} {'restart':>7}")
    rise_l = rise_r = (-1.0, "")
    for c in cells:
        name = f"{c['program']}/{c['variable']}/{c['alignment']}@{c['site']}"
        lo, re_ = longer.get(c["key"]), restarts.get(c["key"])
        print(f"{name:<44} {c['test_iia']:>7.3f} "
              f"{(f'{lo[1]:.3f}' if lo else '-'):>7} {(lo[2] if lo else '-'):>6} "
              f"{(f'{re_[1]:.3f}' if re_ else '-'):>7}")
        if lo and lo[1] - c["test_iia"] > rise_l[0]:
            rise_l = (lo[1] - c["test_iia"], name)
        if re_ and re_[1] - c["test_iia"] > rise_r[0]:
            rise_r = (re_[1] - c["test_iia"], name)
    if longer:
        print(f"largest rise from {args.longer}x longer training: {rise_l[0]:+.3f} ({rise_l[1]})")
    if restarts:
        print(f"largest rise from the best of {args.restarts} restarts: {rise_r[0]:+.3f} ({rise_r[1]})")


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
