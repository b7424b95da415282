"""Where a result's alignment-steps go: counted from result files, nothing trained.

    python benchmarks/step_shares.py [--models all|gru_multi_object_s0,...] [RESULT ...]

For every result (default: every model of ``benchmarks/protocol1_reference.json``, read
from ``submissions/<model>/result.json``) it prints the protocol's own alignment-steps
(orthogonal and linear; extra methods left out) and their ratio to protocol 1's, split by
role: the ranked fits, their permuted controls and their random-init controls. Then two
counts that size rules a later protocol could adopt, read off the same cells:

* ``off-best``: steps of permuted controls at sites other than their cell's best site
  (only models with several sites have any). Selectivity uses the control at the best
  site only; training it there alone, after the sites are ranked, would save these.
* ``over-fit``: steps a control ran beyond the fit it controls (the ranked fit of the same
  program, variable, alignment and site), counting at least ``fail_after`` for each.
  A control given its fit's own step budget would save these.

Both are counts of steps, not re-runs: a control stopped earlier may score lower, which
only a run under such a rule can tell.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from numbench.protocol import BUDGET, RANKED_ALIGNMENTS  # noqa: E402

REFERENCE = Path(__file__).with_name("protocol1_reference.json")


def shares(doc: dict) -> dict:
    """Steps by role, and the ``off-best`` and ``over-fit`` counts, of one result."""
    cells = [c for c in doc["cells"] if c["alignment"] in RANKED_ALIGNMENTS and c["mode"] == "single"]
    fits, best = {}, {}
    for c in cells:
        if c["control"] is None and c["ranked_k"]:
            var = (c["program"], c["variable"], c["alignment"])
            fits[(*var, c["site"])] = c["steps"]
            if var not in best or c["valid_iia"] > best[var][0]:
                best[var] = (c["valid_iia"], c["site"])
    roles, off_best, over_fit = Counter(), 0, 0
    for c in cells:
        roles[c["control"] or "ranked"] += c["steps"]
        if c["control"] is None:
            continue
        var = (c["program"], c["variable"], c["alignment"])
        if c["control"] == "permuted" and best[var][1] != c["site"]:
            off_best += c["steps"]
            continue
        over_fit += max(0, c["steps"] - max(fits[(*var, c["site"])], BUDGET["fail_after"]))
    return {"steps": sum(roles.values()), "roles": roles, "off_best": off_best,
            "over_fit": over_fit}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="*", help="result files (default: the committed ones)")
    ap.add_argument("--models", default="all", help="models of the protocol-1 reference")
    args = ap.parse_args()
    reference = {k: v for k, v in json.loads(REFERENCE.read_text()).items() if not k.startswith("_")}
    if args.results:
        paths = [Path(p) for p in args.results]
    else:
        models = list(reference) if args.models == "all" else args.models.split(",")
        paths = [ROOT / "submissions" / m / "result.json" for m in models]
    print(f"{'model':<30} {'steps':>7} {'/p1':>6} {'ranked':>7} {'permuted':>8} "
          f"{'rand-init':>9} {'off-best':>8} {'over-fit':>8} {'rest /p1':>8}")
    for path in paths:
        doc = json.loads(path.read_text())
        model = Path(doc["model"]["file"]).stem
        s = shares(doc)
        p1 = None if doc["settings"]["quick"] else reference.get(model, {}).get("steps")
        model += " (--quick)" if doc["settings"]["quick"] else ""
        ratio = lambda n: f"{n / p1:.3f}" if p1 else "–"
        rest = s["steps"] - s["off_best"] - s["over_fit"]
        print(f"{model:<30} {s['steps']:>7} {ratio(s['steps']):>6} {s['roles']['ranked']:>7} "
              f"{s['roles']['permuted']:>8} {s['roles']['random_init']:>9} {s['off_best']:>8} "
              f"{s['over_fit']:>8} {ratio(rest):>8}")
    print("rest /p1: the steps less off-best and over-fit, against protocol 1's "
          "(full results only)")


if __name__ == "__main__":
    main()
