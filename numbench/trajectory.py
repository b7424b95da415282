"""Alignment over training (PROTOCOL §8): evaluate every checkpoint of a training run and
relate task accuracy to IIA.

A run directory holds the checkpoints ``numbench train --save-every N`` writes
(``<model>.checkpoints/step_NNNNNN.pt``). Each checkpoint becomes an evaluation job of the
sweep machinery, so finished checkpoints are skipped on a re-run and any backend works.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from .errors import NumbenchError
from .jobs import evaluate_job, evaluate_spec
from .sweep import Plan

_STEP = re.compile(r"step_(\d+)")


def checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, file) of every checkpoint under run_dir, by step."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise NumbenchError("not a directory", path=run_dir)
    found = []
    for path in sorted(run_dir.rglob("step_*")):
        m = _STEP.search(path.name)
        if m and path.suffix in (".pt", ".safetensors") and "results" not in path.parts:
            found.append((int(m.group(1)), path))
    if not found:
        raise NumbenchError("no checkpoints (step_NNNNNN.pt) found; train with --save-every",
                            path=run_dir)
    return sorted(found)


def trajectory_plan(run_dir: str | Path, *, results: str | Path | None = None, seed: int = 0,
                    quick: bool = True, engine: dict | None = None) -> Plan:
    results = Path(results) if results else Path(run_dir) / "results"
    jobs = [evaluate_job(evaluate_spec(str(path), seed, quick=quick, engine=engine), results)
            for _, path in checkpoints(run_dir)]
    return Plan(Path(run_dir).name, [], jobs)


def _correlation(xs: list[float], ys: list[float]) -> dict:
    from scipy import stats

    ok = len(xs) >= 3 and len(set(xs)) > 1 and len(set(ys)) > 1
    pearson = stats.pearsonr(xs, ys) if ok else None
    spearman = stats.spearmanr(xs, ys) if ok else None
    nan = float("nan")
    return {"n": len(xs), "pearson_r": float(pearson.statistic) if ok else nan,
            "pearson_p": float(pearson.pvalue) if ok else nan,
            "spearman_rho": float(spearman.statistic) if ok else nan}


def trajectory_rows(p: Plan) -> list[dict]:
    """Per checkpoint (by step): task accuracy and alignment scores from its result."""
    steps = dict((str(path), step) for step, path in
                 ((int(_STEP.search(Path(j.spec["model"]).name).group(1)), j.spec["model"])
                  for j in p.evaluate))
    rows = []
    for job in p.evaluate:
        out = Path(job.output)
        if not out.exists():
            continue
        doc = json.loads(out.read_text())
        s = doc["summary"]
        row = {"step": steps[job.spec["model"]], "checkpoint": job.spec["model"],
               "iid": doc["task_accuracy"]["iid"], "holdout": doc["task_accuracy"]["holdout"],
               "symbol_score": s["symbol_score"], "best_program": s["best_program"],
               "result": str(out)}
        row |= {f"{prog}_score": v["alignment_score"] for prog, v in s["programs"].items()}
        rows.append(row)
    return sorted(rows, key=lambda r: r["step"])


def summarize(rows: list[dict]) -> dict:
    xs = [r["iid"] for r in rows]
    ys = [r["symbol_score"] for r in rows]
    return {"rows": rows, "accuracy_vs_symbol_score": _correlation(xs, ys)}


def plot_trajectory(rows: list[dict], path: Path) -> Path:
    from .plots import _plt

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = [r["step"] for r in rows]
    ax.plot(steps, [r["iid"] for r in rows], marker="o", label="iid task accuracy")
    ax.plot(steps, [r["symbol_score"] for r in rows], marker="s", label="symbol score (IIA)")
    for key in sorted(k for k in rows[0] if k.endswith("_score") and k != "symbol_score"):
        ax.plot(steps, [r[key] for r in rows], ls=":", label=key.replace("_score", " alignment"))
    ax.set(xlabel="training step", ylim=(-0.02, 1.02), title="alignment over training")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)
    return path


def fmt(x: float | None) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"
