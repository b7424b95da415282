"""The protocol-2 budget study: candidate budgets against protocol 1's committed answers.

    python benchmarks/protocol_budget.py [--models gru_multi_object_s0,...|all]
        [--candidates p2,lr1e-2,...] [--seed N] [--against p1|p2] [--out DIR]
        [--committed] [--list]

For every (candidate, model) it runs the full evaluate with the candidate's engine
budget (``Settings.make(engine=...)``) and compares it, cell by cell, with protocol 1's
result for that model (``benchmarks/protocol1_reference.json``: every cell's test IIA and
steps from the committed protocol-1 result files). Per candidate and model it prints the
total alignment-steps and their ratio to protocol 1's, wall time, the largest drop of a
ranked cell's test IIA (single mode, ranked k, every site) and the largest rise of a
control (permuted, random-init), and the largest fall of a control (a weaker control flatters
its cell's selectivity). Runs are resumable: a finished run's result file is
reused, an interrupted one resumes from its ``.partial``. With ``--committed``, "p2" is
read from the committed protocol-2 results (``submissions/<model>/result.json``) instead
of run: ``--models all --candidates p2 --committed`` compares the whole zoo.

``--seed N`` trains the candidates' fits from another alignment seed (the protocol's is
0), and ``--against p2`` compares with the committed protocol-2 results instead of
protocol 1's: ``--candidates p2 --seed 1 --against p2`` measures how far protocol 2's
own figures move with the seed alone, the floor under any tolerance set against them.

The chosen budget and the evidence table are in docs/protocol.md (protocol 2).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from numbench.protocol import BUDGET, PROTOCOL1_BUDGET  # noqa: E402
REFERENCE = Path(__file__).with_name("protocol1_reference.json")
PANEL = ("gru_multi_object_s0", "lstm_multi_object_s0", "rnn_multi_object_s0",
         "gru_same_object_s0", "transformer_multi_object_s0")

FIT_CONTROLS = {"permuted_sites": "best", "steps": "fit"}

# engine settings of each candidate (and its control rules, ``controls``), over protocol
# 1's (lr 1e-3, eval_every 100, patience 10, fail_after 1500, max_steps 20,000, no
# learning-rate decay). "p2" is the chosen one (numbench/protocol.py BUDGET), "p1"
# protocol 1's own budget.
CANDIDATES: dict[str, dict] = {
    "p1": PROTOCOL1_BUDGET,
    "lr1e-2": PROTOCOL1_BUDGET | {"lr": 1e-2},
    "lr1e-2_fast_rules": {"lr": 1e-2, "lr_decays": 0, "eval_every": 50, "patience": 6, "fail_after": 300,
                          "max_steps": 5000},
    "lr1e-2_patience10": {"lr": 1e-2, "lr_decays": 0, "eval_every": 50, "patience": 10, "fail_after": 300,
                          "max_steps": 5000},
    "lr3e-3_patience10": {"lr": 3e-3, "lr_decays": 0, "eval_every": 50, "patience": 10, "fail_after": 300,
                          "max_steps": 5000},
    # a plateau first lowers the fit's learning rate tenfold, the next one stops it
    "lr1e-2_decay_p5": {"lr": 1e-2, "eval_every": 50, "patience": 5, "fail_after": 300,
                        "max_steps": 4000, "lr_decays": 1, "lr_decay": 0.1},
    "lr1e-2_decay_p4": {"lr": 1e-2, "eval_every": 50, "patience": 4, "fail_after": 300,
                        "max_steps": 3000, "lr_decays": 1, "lr_decay": 0.1},
    # protocol 2's budget, its controls trained by other rules (numbench/protocol.py
    # CONTROL_RULES): the permuted control at the best site only; no control trained longer
    # than its fit
    "p2_best_site_permuted": BUDGET | {"controls": {"permuted_sites": "best"}},
    "p2_fit_controls": BUDGET | {"controls": FIT_CONTROLS},
    # ... or the controls on a longer patience than the fits (protocol 1: 10 validations)
    "p2_patient_controls": BUDGET | {"controls": {"permuted_sites": "best", "patience": 10,
                                                  "max_steps": 5000}},
}


def ranked(cell: dict) -> bool:
    return (cell["control"] is None and cell["mode"] == "single" and cell["ranked_k"]
            and cell["alignment"] in ("orthogonal", "linear"))


def load_shipped_architectures() -> None:
    """Register the shipped plugin architectures (rnn_multi_object_s0's)."""
    from numbench.models.registry import load_arch_module

    for plugin in sorted((ROOT / "baselines" / "architectures").glob("*.py")):
        load_arch_module(plugin)


def own_steps(result: dict) -> int:
    """The protocol's own fits' alignment-steps: a result with extra methods
    (--alignments) trained more."""
    extra = {a["name"] for a in result["settings"].get("alignments", [])}
    return sum(c["steps"] for c in result["cells"] if c["alignment"] not in extra)


def as_reference(result: dict) -> dict:
    """A result file in the shape of protocol1_reference.json's entries."""
    return {"steps": own_steps(result),
            "symbol_score": result["summary"]["symbol_score"],
            "cells": {c["key"]: {"steps": c["steps"], "test_iia": c["test_iia"]}
                      for c in result["cells"]}}


def compare(result: dict, reference: dict) -> dict:
    """Largest ranked drop and gain, control rise and control fall (with the cells' keys)
    against the reference: a control that falls makes its cell's selectivity look better."""
    ref = reference["cells"]
    drop, gain, rise, fall = (-1.0, ""), (-1.0, ""), (-1.0, ""), (-1.0, "")
    for c in result["cells"]:
        if c["key"] not in ref:
            continue
        delta = c["test_iia"] - ref[c["key"]]["test_iia"]
        if ranked(c) and -delta > drop[0]:
            drop = (-delta, c["key"])
        if ranked(c) and delta > gain[0]:
            gain = (delta, c["key"])
        if c["control"] in ("permuted", "random_init"):
            if delta > rise[0]:
                rise = (delta, c["key"])
            if -delta > fall[0]:
                fall = (-delta, c["key"])
    steps = own_steps(result)
    return {"steps": steps, "ratio": steps / reference["steps"], "drop": drop, "gain": gain,
            "rise": rise, "fall": fall,
            "wall": result["wall_seconds"]["total"], "methods": bool(result["settings"].get("alignments")),
            "symbol": result["summary"]["symbol_score"], "symbol_p1": reference["symbol_score"]}


def line(candidate: str, model: str, cmp: dict) -> str:
    wall = f"{cmp['wall']:>6.0f}{'*' if cmp['methods'] else ' '}"
    return (f"{candidate:<20} {model:<30} {cmp['steps']:>7} {cmp['ratio']:>5.2f} {wall} "
            f"{cmp['drop'][0]:>8.3f} {cmp['gain'][0]:>8.3f} {cmp['rise'][0]:>8.3f} {cmp['fall'][0]:>8.3f} {cmp['symbol']:>6.3f} "
            f"{cmp['symbol_p1']:>6.3f}")


def committed(model: str) -> dict:
    """The committed protocol-2 result of ``model``."""
    from numbench.protocol import PROTOCOL_VERSION

    path = ROOT / "submissions" / model / "result.json"
    doc = json.loads(path.read_text())
    if doc["versions"]["protocol"] != PROTOCOL_VERSION or doc["settings"]["quick"]:
        sys.exit(f"{path}: not a full protocol-{PROTOCOL_VERSION} result")
    return doc


def run(candidate: str, model: str, out: Path, seed: int = 0) -> dict:
    from numbench.evaluate import Settings, evaluate
    from numbench.results import write_json_atomic

    path = out / (candidate if seed == 0 else f"{candidate}_seed{seed}") / f"{model}.json"
    if path.exists():
        return json.loads(path.read_text())
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = dict(CANDIDATES.get(candidate, {}))
    settings = Settings.make(seed=seed, engine=engine, controls=engine.pop("controls", None))
    t = time.perf_counter()
    partial = path.with_name(path.name + ".partial")
    doc = evaluate(ROOT / "baselines" / f"{model}.pt", settings=settings, partial_path=partial)
    write_json_atomic(path, doc)
    partial.unlink(missing_ok=True)
    print(f"  {candidate} {model}: {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return doc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(PANEL))
    ap.add_argument("--candidates", default="p2," + ",".join(CANDIDATES),
                    help="'p2' is the protocol's own budget (whatever numbench/protocol.py says)")
    ap.add_argument("--seed", type=int, default=0, help="alignment seed of the runs (the protocol's: 0)")
    ap.add_argument("--against", choices=("p1", "p2"), default="p1",
                    help="compare with protocol 1's results or the committed protocol-2 ones")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "protocol_budget"))
    ap.add_argument("--committed", action="store_true",
                    help="read 'p2' from the committed submissions/<model>/result.json")
    ap.add_argument("--list", action="store_true", help="print the candidates and exit")
    args = ap.parse_args()
    if args.list:
        for name, eng in CANDIDATES.items():
            print(f"{name}: {eng}")
        return
    from numbench.machine import cpu_description

    load_shipped_architectures()
    reference = json.loads(REFERENCE.read_text())
    out = Path(args.out)
    print(f"CPU: {cpu_description()}")
    head = (f"{'candidate':<20} {'model':<30} {'steps':>7} {'/p1':>5} {'wall s':>7} "
            f"{'max drop':>8} {'max gain':>8} {'max rise':>8} {'ctl fall':>8} {'symbol':>6} {'p1':>6}")
    rows = []
    models = [m for m in reference if not m.startswith("_")] if args.models == "all" else args.models.split(",")
    print(f"against: {'protocol 1' if args.against == 'p1' else 'the committed protocol-2 results'}")
    refs = {m: reference[m] if args.against == "p1" else as_reference(committed(m)) for m in models}
    for candidate in args.candidates.split(","):
        label = candidate if args.seed == 0 else f"{candidate}@seed{args.seed}"
        for model in models:
            if args.committed and candidate == "p2" and args.seed == 0:
                doc = committed(model)
            else:
                doc = run(candidate, model, out, args.seed)
            cmp = compare(doc, refs[model])
            rows.append((label, model, cmp))
            print(line(label, model, cmp), flush=True)
    print()
    print(head)
    for candidate, model, cmp in rows:
        print(line(candidate, model, cmp))
        print(f"{'':<20}   drop at {cmp['drop'][1]}; gain at {cmp['gain'][1]}; rise at {cmp['rise'][1]}; "
              f"control fall at {cmp['fall'][1]}")
    if any(cmp["methods"] for *_, cmp in rows):
        print("* the wall time of a run that also trained extra methods (--alignments); its "
              "steps are the protocol's fits only")


if __name__ == "__main__":
    main()
