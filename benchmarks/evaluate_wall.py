"""Wall time and peak memory of `numbench evaluate` on one model, quick and default.

    python benchmarks/evaluate_wall.py [--model baselines/gru_multi_object_s0.pt] [--skip-default]

Each run is a fresh child process (so its peak RSS is its own); prints wall seconds per
stage from the result file, the process's peak resident memory, and the fits' step counts.
Targets (issue #4): default ≤ 5 min and ≤ 2 GB, --quick ≤ 60 s, for the d=128 GRU on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time


def run(model: str, quick: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        cmd = [sys.executable, "-m", "numbench.cli", "evaluate", model, "--out", out]
        t = time.perf_counter()
        subprocess.run(cmd + (["--quick"] if quick else []), check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        doc = json.load(open(out))
    trained = [c for c in doc["cells"] if c["stop_reason"] != "untrained"]
    steps = sorted(c["steps"] for c in trained)
    print(f"{'quick' if quick else 'default'}: {wall:.0f} s wall, peak RSS {peak:.0f} MB "
          f"(max over child runs so far); stages {doc['wall_seconds']}")
    print(f"  {len(trained)} trained fits, steps min/median/max "
          f"{steps[0]}/{steps[len(steps) // 2]}/{steps[-1]}, total {sum(steps):,}; "
          f"symbol score {doc['summary']['symbol_score']:.3f} ({doc['summary']['best_program']})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="baselines/gru_multi_object_s0.pt")
    ap.add_argument("--skip-default", action="store_true", help="only the --quick run")
    args = ap.parse_args()
    run(args.model, quick=True)
    if not args.skip_default:
        run(args.model, quick=False)


if __name__ == "__main__":
    main()
