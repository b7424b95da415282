"""Two result files of one model side by side: where their cells' test IIA differ.

    python benchmarks/compare_results.py A/result.json B/result.json

For results of the same model, protocol and seed computed on other devices or machines
(``benchmarks/gpu_check.sh`` compares a GPU run with the committed CPU result): each one's
device, wall time, alignment-steps and symbol score, and the largest difference of test
IIA over the cells both hold, ranked cells and controls apart.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def describe(doc: dict) -> str:
    v = doc["versions"]
    where = v.get("device_name") or v.get("cpu") or v.get("device", "?")
    steps = sum(c["steps"] for c in doc["cells"])
    return (f"{v.get('device', 'cpu')} ({where}): {doc['wall_seconds']['total']:.0f} s, "
            f"{steps:,} alignment-steps, symbol score {doc['summary']['symbol_score']:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a")
    ap.add_argument("b")
    args = ap.parse_args()
    a, b = (json.loads(Path(p).read_text()) for p in (args.a, args.b))
    print(f"A {args.a}: {describe(a)}")
    print(f"B {args.b}: {describe(b)}")
    cells_a = {c["key"]: c for c in a["cells"]}
    both = [(cells_a[c["key"]], c) for c in b["cells"] if c["key"] in cells_a]
    for label, keep in (("ranked cells", lambda c: c["control"] is None),
                        ("controls", lambda c: c["control"] is not None)):
        diffs = sorted(((abs(x["test_iia"] - y["test_iia"]), x["key"]) for x, y in both if keep(x)),
                       reverse=True)
        if diffs:
            worst, key = diffs[0]
            print(f"{label}: {len(diffs)} in both; largest |Δ test IIA| {worst:.4f} ({key}); "
                  f"{sum(d == 0 for d, _ in diffs)} identical")


if __name__ == "__main__":
    main()
