"""How long `numbench evaluate` took, from the committed results: a Markdown table.

    python benchmarks/runtime_table.py [--submissions submissions] [--models a,b,...]

Every current-protocol result records its wall time per stage, its alignment-steps (the
cells' steps), the CPU or GPU it ran on (``versions.cpu``, ``device_name``), its torch threads and its worker
processes. This prints them side by side, one row per result, so the README's table of run
times is what the committed runs measured. Times from different CPUs are not comparable;
the alignment-steps are.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from numbench.protocol import PROTOCOL_VERSION


def rows(root: Path, models: list[str] | None) -> list[tuple]:
    out = []
    for path in sorted(root.glob("*/result.json")):
        doc = json.loads(path.read_text())
        name = path.parent.name
        if doc["versions"]["protocol"] != PROTOCOL_VERSION or (models and name not in models):
            continue
        settings = doc["settings"]
        run = "`--quick`" if settings["quick"] else "default"
        run += " `--sweep`" if settings["sweep"] else ""
        extra = [a["name"] for a in settings.get("alignments", [])]
        run += f" `--alignments {','.join(extra)}`" if extra else ""
        steps = sum(c["steps"] for c in doc["cells"])
        versions = doc["versions"]
        where = (versions.get("device_name", "a GPU") if versions.get("device") == "cuda"
                 else versions.get("cpu", "?"))
        out.append((name, run, steps, doc["wall_seconds"]["total"], where,
                    settings["engine"]["workers"]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--submissions", default="submissions")
    ap.add_argument("--models", default="", help="comma-separated folder names (default: all)")
    args = ap.parse_args()
    models = [m for m in args.models.split(",") if m] or None
    print("| model | run | alignment-steps | wall | CPU or GPU | processes |")
    print("|---|---|---:|---:|---|---:|")
    for name, run, steps, wall, cpu, workers in rows(Path(args.submissions), models):
        print(f"| `{name}` | {run} | {steps:,} | {wall:,.0f} s | {cpu} | {workers} |")


if __name__ == "__main__":
    main()
