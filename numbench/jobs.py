"""Jobs as data: a training or evaluation job is a pure function of a small JSON spec.

A job's *key* is the sha256 of its spec (with the protocol version and digest), and its
output path is derived from the key, so a re-run finds finished jobs and skips them, and
an interrupted sweep redoes only what is missing. :func:`run_job` is a top-level function
of plain data in, plain data out, so any executor — a local process pool, Dask, Slurm —
can run it; it never raises, a failure comes back as ``{"ok": False, "error": ...}``.
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from .hashing import sha256_json
from .protocol import PROTOCOL_DIGEST, PROTOCOL_VERSION

KINDS = ("train", "evaluate")


@dataclass(frozen=True)
class Job:
    kind: str  # "train" | "evaluate"
    spec: dict  # JSON-able; see train_spec / evaluate_spec
    output: str = field(default="")  # the model file (train) or result file (evaluate)

    @property
    def key(self) -> str:
        return sha256_json({"kind": self.kind, "spec": self.spec,
                            "protocol": [PROTOCOL_VERSION, PROTOCOL_DIGEST]})[:16]

    @property
    def label(self) -> str:
        s = self.spec
        if self.kind == "train":
            return f"train {Path(self.output).stem}"
        return f"evaluate {Path(s['model']).stem} (seed {s['seed']})"

    def to_json(self) -> dict:
        return {"kind": self.kind, "spec": self.spec, "output": self.output, "key": self.key}


def train_spec(arch: str, task: str, seed: int, config: dict, train: dict,
               arch_modules: list[str] = ()) -> dict:
    return {"arch": arch, "task": task, "seed": seed, "config": dict(sorted(config.items())),
            "train": dict(sorted(train.items())), "arch_modules": list(arch_modules)}


def evaluate_spec(model: str, seed: int = 0, *, task: str | None = None, quick: bool = False,
                  sweep: bool = False, engine: dict | None = None,
                  arch_modules: list[str] = (), alignments: tuple[str, ...] = (),
                  alignment_modules: list[dict] = ()) -> dict:
    """``alignments``: extra methods beside the ranked pair; ``alignment_modules``: the
    files that register them, ``{"path", "sha256"}`` each. Both are in the spec only when
    given, so a job without them keeps its key."""
    spec = {"model": str(model), "task": task, "seed": seed, "quick": quick, "sweep": sweep,
            "engine": dict(sorted((engine or {}).items())), "arch_modules": list(arch_modules)}
    if alignments:
        spec["alignments"] = list(alignments)
    if alignment_modules:
        spec["alignment_modules"] = [dict(m) for m in alignment_modules]
    return spec


def evaluate_job(spec: dict, results_root: str | Path) -> Job:
    """An evaluation job whose result lands in ``results_root/<model stem>-<key>/``."""
    probe = Job("evaluate", spec)
    out = Path(results_root) / f"{Path(spec['model']).stem}-{probe.key[:8]}" / "result.json"
    return Job("evaluate", spec, str(out))


def is_done(job: Job) -> bool:
    """The output exists (and, for an evaluation, was made from the model file as it is now)."""
    out = Path(job.output)
    if not out.exists():
        return False
    if job.kind == "train":
        return True
    from .models.files import model_sha256

    try:
        doc = json.loads(out.read_text())
        return doc["model"]["sha256"] == model_sha256(job.spec["model"])
    except (OSError, ValueError, KeyError):
        return False


def run_job(job: dict) -> dict:
    """Run one job (``Job.to_json()`` form) with one torch thread; never raises."""
    import torch

    torch.set_num_threads(1)
    t = time.perf_counter()
    try:
        from .models.registry import load_arch_module, plugin_paths

        # the runner's --arch-module files (beside the spec), then the sweep file's; a file
        # this process has loaded already (a Dask worker's earlier job) is not run again
        for module in job.get("arch_modules", []) + job["spec"].get("arch_modules", []):
            if str(Path(module).resolve()) not in plugin_paths():
                load_arch_module(module)
        from .alignments import load_alignment_module

        for module in job["spec"].get("alignment_modules", []):  # the very code planned
            load_alignment_module(module["path"], sha256=module["sha256"])
        from .device import resolve_device

        device = resolve_device(job.get("device", "auto"))  # where this job runs
        (_train if job["kind"] == "train" else _evaluate)(job["spec"], Path(job["output"]), device)
        return {"key": job["key"], "ok": True, "seconds": time.perf_counter() - t,
                "output": job["output"]}
    except Exception as e:  # reported with the job; the other jobs go on
        return {"key": job["key"], "ok": False, "seconds": time.perf_counter() - t,
                "output": job["output"], "error": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc(limit=5)}


def _train(spec: dict, out: Path, device) -> None:
    from .accuracy import split_accuracies
    from .models.files import save_model
    from .tasks import load_task
    from .training import TrainConfig, train

    task = load_task(spec["task"])
    res = train(spec["arch"], task, spec["seed"], config=spec["config"],
                train_config=TrainConfig(**spec["train"]), device=device)
    summary = dict(res.summary, accuracy=split_accuracies(res.model, task),
                   parameters=res.model.parameter_count())
    out.parent.mkdir(parents=True, exist_ok=True)
    save_model(res.model, out, task=task, seed=spec["seed"], training=summary)


def _evaluate(spec: dict, out: Path, device) -> None:
    from .evaluate import evaluate
    from .settings import Settings
    from .results import write_json_atomic

    # a job already has its own core: one engine worker, unless the spec says otherwise
    settings = Settings.make(seed=spec["seed"], quick=spec["quick"], sweep=spec["sweep"],
                             engine={"workers": 1} | (spec["engine"] or {}), device=device,
                             alignments=spec.get("alignments", ()))
    write_json_atomic(out, evaluate(spec["model"], task_name=spec["task"], settings=settings,
                                    device=device))
