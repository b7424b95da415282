"""How the continuous schedule's claim order spreads work over two processes, replayed.

    python benchmarks/claim_order.py [RESULT ...]   (default: every full recurrent result)

Takes each committed full result's per-fit step counts and replays them through a model
of the continuous schedule: each process keeps up to 5 fits in flight, claims waiting fits
(at most its share of those still waiting) when it has room, and a step costs 10 ms plus
4.6 ms a fit in flight, a validation 46 ms a fit — the reference GRU's figures on one core of this
machine (docs/engine.md). Prints the modelled streaming wall time (the later process's
end) in evaluate's job order, in claim-priority order (``FitSpec.priority`` as
``evaluate._claim_priority`` sets it), with an oracle that knows every fit's length
(longest first, the first ten dealt in snake order), and with ideal migration of in-flight
fits between processes on top of the priority order. Real runs take ~25 % longer than the
model (preparation and scoring left out; two processes share caches and memory
bandwidth); compare the columns, not the absolute figures.
"""

from __future__ import annotations

import glob
import json
import math
import sys

from numbench.evaluate import _claim_priority
from numbench.protocol import PROGRAMS, RANKED_ALIGNMENTS
from numbench.programs import get_program

SLOTS, WORKERS, FIXED_MS, PER_FIT_MS, VALIDATION_MS, EVERY = 5, 2, 10.0, 4.6, 46.0, 100


def trained_in_job_order(result: dict) -> list[dict]:
    """The single-mode ranked cells that trained, in the order evaluate queues them: the
    main fits with their permuted controls, then the random-init controls."""
    cells = {c["key"]: c for c in result["cells"] if c["steps"] > 0}
    site, d = next(iter(result["model"]["sites"].items()))
    keys = []
    for control in (None, "random_init"):
        for program in PROGRAMS:
            for var in get_program(program).variables:
                for align in RANKED_ALIGNMENTS:
                    base = f"{program}/{var}/{align}/k{min(16, d // 2)}/{site}/single"
                    keys += [base + "/random_init"] if control else [base, base + "/permuted"]
    return [cells[k] for k in keys if k in cells]


def stream(lengths: list[int], deal_first: bool = False) -> float:
    """Modelled seconds until the later process ends, fits claimed in the given order."""
    waiting = list(lengths)
    procs = [{"t": 0.0, "fits": []} for _ in range(WORKERS)]
    if deal_first:  # snake order: 0, 1, 1, 0, 0, 1, ...
        for i in range(min(len(waiting), SLOTS * WORKERS)):
            lap, at = divmod(i, WORKERS)
            procs[at if lap % 2 == 0 else WORKERS - 1 - at]["fits"].append([0, waiting.pop(0)])
    while True:
        busy = [p for p in procs if p["fits"] or waiting]
        if not busy:
            return max(p["t"] for p in procs) / 1000
        p = min(busy, key=lambda p: p["t"])
        room = SLOTS - len(p["fits"])
        if room and waiting:
            share = 1 if deal_first else math.ceil(len(waiting) / WORKERS)
            p["fits"] += [[0, waiting.pop(0)] for _ in range(min(room, share))]
        if not p["fits"]:  # nothing to claim yet: wait for the other process
            p["t"] = min(q["t"] for q in procs if q["fits"])
            continue
        p["t"] += FIXED_MS + PER_FIT_MS * len(p["fits"])
        for f in p["fits"]:
            f[0] += 1
            p["t"] += VALIDATION_MS if f[0] % EVERY == 0 else 0
        p["fits"] = [f for f in p["fits"] if f[0] < f[1]]


def stream_migrating(lengths: list[int]) -> float:
    """As ``stream``, with the fits in flight rebalanced between processes every step."""
    waiting, fits, t = list(lengths), [], 0.0
    while waiting or fits:
        while len(fits) < SLOTS * WORKERS and waiting:
            fits.append([0, waiting.pop(0)])
        most = -(-len(fits) // WORKERS)
        validating = sum((f[0] + 1) % EVERY == 0 for f in fits)
        t += FIXED_MS + PER_FIT_MS * most + VALIDATION_MS * validating / WORKERS
        for f in fits:
            f[0] += 1
        fits = [f for f in fits if f[0] < f[1]]
    return t / 1000


def main() -> None:
    paths = sys.argv[1:] or sorted(glob.glob("submissions/*/result.json"))
    columns = ("job order", "priority", "oracle", "priority+migration")
    totals = dict.fromkeys(columns, 0.0)
    print(f"{'result':28s}" + "".join(f"{c:>20s}" for c in columns))
    for path in paths:
        result = json.load(open(path))
        if (result["settings"]["quick"] or len(result["model"]["sites"]) != 1
                or result["model"]["arch"] not in ("gru", "lstm")):
            continue
        cells = trained_in_job_order(result)
        steps = [c["steps"] for c in cells]
        by_priority = [c["steps"] for c in sorted(cells, key=lambda c: -_claim_priority(c))]
        row = {"job order": stream(steps), "priority": stream(by_priority),
               "oracle": stream(sorted(steps, reverse=True), deal_first=True),
               "priority+migration": stream_migrating(by_priority)}
        for c in columns:
            totals[c] += row[c]
        print(f"{path.split('/')[-2]:28s}" + "".join(f"{row[c]:19.1f}s" for c in columns))
    print(f"{'total':28s}" + "".join(f"{totals[c]:19.1f}s" for c in columns))


if __name__ == "__main__":
    main()
