"""Sweep files: many models × tasks × seeds (× architectures × widths to train) as jobs.

A sweep file (TOML, or JSON with the same keys) names what to train and what to evaluate::

    name = "example"
    results = "submissions/sweeps/example"   # result files: the leaderboard reads them
    models_dir = "runs/example"              # trained model files

    [train]                                  # optional: a grid to train first
    archs = ["gru"]
    tasks = ["multi_object"]
    seeds = [0, 1]
    widths = [16, 32]                        # d_hidden (recurrent) or d_model (transformer)
    config = {}                              # other config keys, for every model
    max_steps = 300                          # any TrainConfig field

    [evaluate]
    models = ["baselines/gru_*_s0.pt"]       # globs; every trained model is added
    seeds = [0]
    quick = false                            # true: the --quick smoke budget (unranked)
    engine = {}                              # engine overrides (unranked)

Relative paths are relative to the current directory. :func:`plan` turns the file into
training jobs and evaluation jobs; evaluation of a trained model waits for its training.
"""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass, fields
from pathlib import Path

from .errors import NumbenchError
from .jobs import Job, evaluate_job, evaluate_spec, train_spec
from .training import TrainConfig

WIDTH_KEY = {"transformer": "d_model"}  # every other architecture: d_hidden
_TRAIN_FIELDS = {f.name for f in fields(TrainConfig)}


@dataclass
class Plan:
    name: str
    train: list[Job]
    evaluate: list[Job]


def read_sweep(path: str | Path) -> dict:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise NumbenchError(f"cannot read ({e.strerror})", path=path) from None
    try:
        if path.suffix == ".json":
            return json.loads(text)
        try:
            import tomllib
        except ImportError:  # Python 3.10
            import tomli as tomllib
        return tomllib.loads(text)
    except ValueError as e:
        raise NumbenchError(f"not a valid sweep file ({e})", path=path) from None


def _list(section: dict, key: str, default, path) -> list:
    value = section.get(key, default)
    value = value if isinstance(value, list) else [value]
    if not value:
        raise NumbenchError("must not be empty", path=path, field=key)
    return value


def plan(doc: dict, path: str | Path = "<sweep>") -> Plan:
    """Training and evaluation jobs of a sweep document."""
    unknown = set(doc) - {"name", "results", "models_dir", "train", "evaluate"}
    if unknown:
        raise NumbenchError(f"unknown key(s) {', '.join(sorted(unknown))}", path=path)
    name = str(doc.get("name", Path(str(path)).stem))
    results = doc.get("results", f"submissions/sweeps/{name}")
    models_dir = Path(doc.get("models_dir", f"runs/{name}"))
    train_jobs = []
    tr = doc.get("train")
    if tr is not None:
        settings = {k: v for k, v in tr.items() if k in _TRAIN_FIELDS}
        bad = set(tr) - _TRAIN_FIELDS - {"archs", "tasks", "seeds", "widths", "config", "arch_modules"}
        if bad:
            raise NumbenchError(f"unknown key(s) {', '.join(sorted(bad))}", path=path, field="train")
        for arch in _list(tr, "archs", None, path):
            for task in _list(tr, "tasks", None, path):
                for width in tr.get("widths", [None]) or [None]:
                    for seed in _list(tr, "seeds", [0], path):
                        config = dict(tr.get("config", {}))
                        if width is not None:
                            config[WIDTH_KEY.get(arch, "d_hidden")] = int(width)
                        stem = f"{arch}_{task}" + (f"_w{width}" if width else "") + f"_s{seed}"
                        spec = train_spec(arch, task, int(seed), config, settings,
                                          tr.get("arch_modules", []))
                        train_jobs.append(Job("train", spec, str(models_dir / f"{stem}.pt")))
    ev = doc.get("evaluate")
    eval_jobs = []
    if ev is not None:
        models = []
        for pattern in ev.get("models", []):
            found = sorted(glob.glob(pattern))
            if not found:
                raise NumbenchError(f"no model file matches '{pattern}'", path=path,
                                    field="evaluate.models")
            models += found
        models += [j.output for j in train_jobs]
        if not models:
            raise NumbenchError("nothing to evaluate", path=path, field="evaluate.models")
        modules = ev.get("arch_modules", []) + (tr or {}).get("arch_modules", [])
        for model in dict.fromkeys(models):
            for seed in _list(ev, "seeds", [0], path):
                spec = evaluate_spec(model, int(seed), task=ev.get("task"),
                                     quick=bool(ev.get("quick", False)),
                                     sweep=bool(ev.get("sweep", False)), engine=ev.get("engine"),
                                     arch_modules=modules)
                eval_jobs.append(evaluate_job(spec, results))
    if not train_jobs and not eval_jobs:
        raise NumbenchError("a sweep needs a [train] or an [evaluate] section", path=path)
    return Plan(name, train_jobs, eval_jobs)


def run_jobs(jobs: list[Job], backend, on_outcome=None, *, arch_modules=()) -> list[dict]:
    """Run the jobs not yet done through ``backend``; one outcome per job, in job order.
    Finished jobs come back as ``{"ok": True, "skipped": True}`` without running.

    ``arch_modules``: architecture files every job loads before it runs (the caller's
    ``--arch-module``). They travel beside the spec, not in it: the user's own code on
    their machine, so they change neither a job's key nor its output."""
    from .jobs import is_done, run_job

    outcomes: dict[str, dict] = {}
    todo = []
    for job in jobs:
        if is_done(job):
            outcomes[job.key] = {"key": job.key, "ok": True, "skipped": True, "seconds": 0.0,
                                 "output": job.output}
        else:
            todo.append(dict(job.to_json(), arch_modules=list(arch_modules)))
    for outcome in backend.run(run_job, todo):
        outcomes[outcome["key"]] = outcome
        if on_outcome:
            on_outcome(outcome)
    return [dict(outcomes[j.key], label=j.label, kind=j.kind) for j in jobs]


def run_plan(p: Plan, backend, on_outcome=None, *, arch_modules=()) -> list[dict]:
    """Training jobs first, then evaluations; an evaluation whose model failed to train is
    reported as failed without running. ``arch_modules`` as for :func:`run_jobs`."""
    done = run_jobs(p.train, backend, on_outcome, arch_modules=arch_modules)
    failed_models = {o["output"] for o in done if not o["ok"]}
    ready = [j for j in p.evaluate if j.spec["model"] not in failed_models]
    for j in p.evaluate:
        if j.spec["model"] in failed_models:
            done.append({"key": j.key, "ok": False, "seconds": 0.0, "output": j.output,
                         "label": j.label, "kind": j.kind, "error": "its model failed to train"})
    return done + run_jobs(ready, backend, on_outcome, arch_modules=arch_modules)
