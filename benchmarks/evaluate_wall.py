"""Wall time and peak memory of `numbench evaluate` on one model, quick and default.

    python benchmarks/evaluate_wall.py [--model baselines/gru_multi_object_s0.pt]
        [--skip-default | --skip-quick | --protocol1] [--keep DIR]

Each run is a fresh child process; prints wall seconds per stage from the result file,
peak memory, and the fits' step counts. Memory is sampled every 0.2 s over the evaluate
process and its engine worker processes together: the peak of their summed proportional
set size (PSS: a shared page counts once, split among its sharers), and of their summed
RSS (shared pages, torch's libraries above all, counted in every process: an upper bound).
With --protocol1 it runs the default evaluate under protocol 1's budget and under the
protocol's own (protocol 2) one after the other and prints the ratios of their wall time
and alignment-steps.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from numbench.machine import cpu_description
from numbench.protocol import PROTOCOL1_BUDGET


def tree(root: int) -> list[int]:
    """root and every process descended from it."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, ppid = stat.read_text().rsplit(")", 1)[1].split()[1:2] + [stat.parent.name]
        except OSError:
            continue
        children.setdefault(int(pid), []).append(int(ppid))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def memory_mb(pids: list[int]) -> tuple[float, float]:
    """Summed (PSS, RSS) of pids in MB."""
    pss = rss = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss += int(line.split()[1])
        except OSError:
            pass
    return pss / 1024, rss / 1024


def run(model: str, quick: bool, keep: str | None = None, engine: dict | None = None,
        label: str | None = None) -> tuple[float, int]:
    """One evaluate in a child process; prints its figures; (wall seconds, alignment-steps)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        cmd = [sys.executable, "-m", "numbench.cli", "evaluate", model, "--out", out]
        cmd += [f"--engine={k}={v}" for k, v in (engine or {}).items()]
        t = time.perf_counter()
        proc = subprocess.Popen(cmd + (["--quick"] if quick else []), stdout=subprocess.DEVNULL)
        peak_pss = peak_rss = 0.0
        while proc.poll() is None:
            pss, rss = memory_mb(tree(proc.pid))
            peak_pss, peak_rss = max(peak_pss, pss), max(peak_rss, rss)
            time.sleep(0.2)
        if proc.returncode:
            sys.exit(f"evaluate failed with exit code {proc.returncode}")
        wall = time.perf_counter() - t
        doc = json.load(open(out))
        if keep:  # the result file, to compare numbers between code versions
            os.makedirs(keep, exist_ok=True)
            os.replace(out, os.path.join(keep, f"{label or ('quick' if quick else 'default')}.json"))
    trained = [c for c in doc["cells"] if c["stop_reason"] != "untrained"]
    steps = sorted(c["steps"] for c in trained)
    print(f"{label or ('quick' if quick else 'default')}: {wall:.0f} s wall, peak memory {peak_pss:.0f} MB "
          f"PSS ({peak_rss:.0f} MB summed RSS) over the evaluate and worker processes; "
          f"stages {doc['wall_seconds']}")
    print(f"  {len(trained)} trained fits, steps min/median/max "
          f"{steps[0]}/{steps[len(steps) // 2]}/{steps[-1]}, total {sum(steps):,}; "
          f"symbol score {doc['summary']['symbol_score']:.3f} ({doc['summary']['best_program']})")
    return wall, sum(steps)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="baselines/gru_multi_object_s0.pt")
    ap.add_argument("--skip-default", action="store_true", help="only the --quick run")
    ap.add_argument("--skip-quick", action="store_true", help="only the default run")
    ap.add_argument("--keep", metavar="DIR", help="keep the result files in DIR")
    ap.add_argument("--protocol1", action="store_true",
                    help="also the default run under protocol 1's budget, side by side, and "
                         "the ratios of protocol 2's wall time and alignment-steps to it")
    args = ap.parse_args()
    print(f"CPU: {cpu_description()}, {os.cpu_count()} cores")
    if args.protocol1:
        old = run(args.model, quick=False, keep=args.keep, engine=PROTOCOL1_BUDGET,
                  label="protocol 1 budget")
        new = run(args.model, quick=False, keep=args.keep, label="protocol 2 (default)")
        print(f"protocol 2 / protocol 1: wall {new[0] / old[0]:.3f}, "
              f"alignment-steps {new[1] / old[1]:.3f} (target ≤ 0.3 and ≤ 0.25)")
        return
    if not args.skip_quick:
        run(args.model, quick=True, keep=args.keep)
    if not args.skip_default:
        run(args.model, quick=False, keep=args.keep)


if __name__ == "__main__":
    main()
