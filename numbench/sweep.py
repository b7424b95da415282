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
    alignments = []                          # extra methods beside the ranked pair
    alignment_modules = []                   # your files that register methods

Relative paths are relative to the current directory. :func:`plan` checks every key
(:data:`SCHEMA`; an unknown one is refused, naming its table) and turns the file into
training jobs and evaluation jobs; evaluation of a trained model waits for its training.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, fields
from pathlib import Path

from .errors import NumbenchError
from .jobs import Job, evaluate_job, evaluate_spec, train_spec
from .models.registry import architectures, make_config
from .results import read_bytes, read_json
from .tasks import load_task
from .training import TrainConfig, check_model_size

WIDTH_KEY = {"transformer": "d_model"}  # every other architecture: d_hidden
_TRAIN_FIELDS = {f.name for f in fields(TrainConfig)}


@dataclass
class Plan:
    name: str
    train: list[Job]
    evaluate: list[Job]


def read_sweep(path: str | Path) -> dict:
    """A sweep file's document (TOML, or JSON for a ``.json`` file); one-line NumbenchError
    when it is not a regular file of at most 64 MB, not UTF-8, not valid TOML or JSON, or
    nests too deep. :func:`plan` checks what it holds."""
    path = Path(path)
    if path.suffix == ".json":
        return read_json(path)
    data = read_bytes(path)
    try:
        try:
            import tomllib
        except ImportError:  # Python 3.10
            import tomli as tomllib
        return tomllib.loads(data.decode("utf-8"))
    except RecursionError:
        raise NumbenchError("not a valid sweep file (nested too deep)", path=path) from None
    except ValueError as e:  # TOMLDecodeError, UnicodeDecodeError, an int of > 4300 digits
        raise NumbenchError(f"not a valid sweep file ({e})", path=path) from None


def _as_list(value) -> list:
    """A value or a list of values (checked by SCHEMA) as a list."""
    return value if isinstance(value, list) else [value]


def _is_str(v) -> bool:
    return isinstance(v, str)


def _is_int(least: int):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= least


def _one_or_list(check, *, empty_ok: bool = False):
    """A value that passes ``check``, or a list of them (non-empty unless ``empty_ok``)."""
    return lambda v: check(v) or (isinstance(v, list) and (empty_ok or bool(v))
                                  and all(map(check, v)))


_TABLE = (lambda v: isinstance(v, dict), "a table")
_STRING = (_is_str, "a string")
_BOOL = (lambda v: isinstance(v, bool), "true or false")
_NAMES = (_one_or_list(_is_str), "a string or a non-empty list of strings")
_SEEDS = (_one_or_list(_is_int(0)), "an integer >= 0 or a non-empty list of them")
_FILES = (lambda v: isinstance(v, list) and all(map(_is_str, v)), "a list of file paths")

#: every key of each table of a sweep file (docs/sweeps.md) and what its value must be; a
#: [train] table also takes any TrainConfig field, which TrainConfig itself checks
SCHEMA = {
    "": {"name": _STRING, "results": _STRING, "models_dir": _STRING, "train": _TABLE,
         "evaluate": _TABLE},
    "train": {"archs": _NAMES, "tasks": _NAMES, "seeds": _SEEDS,
              "widths": (_one_or_list(_is_int(1), empty_ok=True),
                         "an integer >= 1 or a list of them"),
              "config": _TABLE, "arch_modules": _FILES},
    "evaluate": {"models": (_one_or_list(_is_str, empty_ok=True), "a glob or a list of globs"),
                 "seeds": _SEEDS, "task": (lambda v: v is None or _is_str(v), "a task name"),
                 "quick": _BOOL, "sweep": _BOOL, "engine": _TABLE, "arch_modules": _FILES,
                 "alignments": (_one_or_list(_is_str, empty_ok=True),
                                "a method name or a list of them"),
                 "alignment_modules": _FILES},
}
REQUIRED = {"": (), "train": ("archs", "tasks"), "evaluate": ()}


def _check_table(doc: dict, table: str, path, extra: set[str] = frozenset()) -> dict:
    """The table (``""``: the top level) of a sweep document, its keys and values checked."""
    section = doc.get(table, {}) if table else doc
    schema, where = SCHEMA[table], f"in [{table}]" if table else "at the top level"
    unknown = sorted(set(section) - set(schema) - extra)
    if unknown:
        raise NumbenchError(f"unknown key(s) {', '.join(map(repr, unknown))} {where} "
                            f"(known: {', '.join(sorted(set(schema) | extra))})", path=path)
    for key in REQUIRED[table]:
        if key not in section:
            raise NumbenchError(f"[{table}] needs '{key}'", path=path)
    for key, value in section.items():
        if key in schema and not schema[key][0](value):
            raise NumbenchError(f"must be {schema[key][1]}, got {value!r:.60}", path=path,
                                field=f"{table}.{key}" if table else key)
    return section


def _check_train_job(arch: str, task: str, config: dict, path) -> None:
    """What a training job can be checked for before it runs: its task exists and, for an
    architecture registered here, its config keys and model size (see training.py)."""
    try:
        vocabulary = load_task(task).vocabulary
    except NumbenchError as e:
        raise NumbenchError(str(e), path=path, field="train.tasks") from None
    if arch not in architectures():
        return  # a plugin in the table's arch_modules: its job says so if it is not
    try:
        make_config(architectures()[arch], config)
        check_model_size(arch, config, vocabulary)
    except NumbenchError as e:
        raise NumbenchError(str(e), path=path, field="train.config") from None


def _extra_methods(ev: dict, path) -> tuple[tuple[str, ...], list[dict]]:
    """The [evaluate] table's extra methods (checked: every file loads here, every name is
    registered) and its method files as ``{"path", "sha256"}``: a job's key names the code
    it scores with, so editing a method's file makes new jobs instead of reusing results."""
    from .alignments import alignment_paths, load_alignment_module
    from .settings import extra_alignments

    files = []
    for module in ev.get("alignment_modules", []):
        try:
            load_alignment_module(module)
        except NumbenchError as e:
            raise NumbenchError(str(e), path=path, field="evaluate.alignment_modules") from None
        sha = dict(alignment_paths())[str(Path(module).resolve())]  # of the bytes that ran
        files.append({"path": module, "sha256": sha})
    try:
        return extra_alignments(_as_list(ev.get("alignments", []))), files
    except NumbenchError as e:
        raise NumbenchError(str(e), path=path, field="evaluate.alignments") from None


def plan(doc: dict, path: str | Path = "<sweep>") -> Plan:
    """Training and evaluation jobs of a sweep document. Every key is checked first (unknown
    keys are refused, naming the table), so a typo never silently runs the default."""
    if not isinstance(doc, dict):
        raise NumbenchError(f"a sweep file holds a table of keys (a JSON object), not a "
                            f"{type(doc).__name__}", path=path)
    _check_table(doc, "", path)
    tr = _check_table(doc, "train", path, extra=_TRAIN_FIELDS) if "train" in doc else None
    ev = _check_table(doc, "evaluate", path) if "evaluate" in doc else None
    name = doc.get("name", Path(str(path)).stem)
    results = doc.get("results", f"submissions/sweeps/{name}")
    models_dir = Path(doc.get("models_dir", f"runs/{name}"))
    train_jobs = []
    if tr is not None:
        settings = {k: v for k, v in tr.items() if k in _TRAIN_FIELDS}
        try:
            TrainConfig(**settings)
        except NumbenchError as e:  # "field 'max_steps': must be ..."
            raise NumbenchError(str(e).removeprefix(f"field '{e.field}': "), path=path,
                                field=f"train.{e.field}") from None
        for arch in _as_list(tr["archs"]):
            for task in _as_list(tr["tasks"]):
                for width in _as_list(tr.get("widths", [])) or [None]:
                    config = dict(tr.get("config", {}))
                    if width is not None:
                        config[WIDTH_KEY.get(arch, "d_hidden")] = width
                    _check_train_job(arch, task, config, path)
                    for seed in _as_list(tr.get("seeds", 0)):
                        stem = f"{arch}_{task}" + (f"_w{width}" if width else "") + f"_s{seed}"
                        spec = train_spec(arch, task, seed, config, settings,
                                          tr.get("arch_modules", []))
                        train_jobs.append(Job("train", spec, str(models_dir / f"{stem}.pt")))
    eval_jobs = []
    if ev is not None:
        from .settings import Settings

        try:
            Settings.make(engine=ev.get("engine"))
        except NumbenchError as e:
            raise NumbenchError(str(e), path=path, field="evaluate.engine") from None
        if ev.get("task") is not None:
            try:
                load_task(ev["task"])
            except NumbenchError as e:
                raise NumbenchError(str(e), path=path, field="evaluate.task") from None
        methods, method_files = _extra_methods(ev, path)
        models = []
        for pattern in _as_list(ev.get("models", [])):
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
            for seed in _as_list(ev.get("seeds", 0)):
                spec = evaluate_spec(model, seed, task=ev.get("task"),
                                     quick=ev.get("quick", False), sweep=ev.get("sweep", False),
                                     engine=ev.get("engine"), arch_modules=modules,
                                     alignments=methods, alignment_modules=method_files)
                eval_jobs.append(evaluate_job(spec, results))
    if not train_jobs and not eval_jobs:
        raise NumbenchError("a sweep needs a [train] or an [evaluate] section", path=path)
    return Plan(name, train_jobs, eval_jobs)


def run_jobs(jobs: list[Job], backend, on_outcome=None, *, arch_modules=(),
             device: str = "auto") -> list[dict]:
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
            todo.append(dict(job.to_json(), arch_modules=list(arch_modules), device=device))
    for outcome in backend.run(run_job, todo):
        outcomes[outcome["key"]] = outcome
        if on_outcome:
            on_outcome(outcome)
    return [dict(outcomes[j.key], label=j.label, kind=j.kind) for j in jobs]


def run_plan(p: Plan, backend, on_outcome=None, *, arch_modules=(), device: str = "auto") -> list[dict]:
    """Training jobs first, then evaluations; an evaluation whose model failed to train is
    reported as failed without running. ``arch_modules`` as for :func:`run_jobs`;
    ``device``: where each job computes (``auto`` is decided where the job runs)."""
    done = run_jobs(p.train, backend, on_outcome, arch_modules=arch_modules, device=device)
    failed_models = {o["output"] for o in done if not o["ok"]}
    ready = [j for j in p.evaluate if j.spec["model"] not in failed_models]
    for j in p.evaluate:
        if j.spec["model"] in failed_models:
            done.append({"key": j.key, "ok": False, "seconds": 0.0, "output": j.output,
                         "label": j.label, "kind": j.kind, "error": "its model failed to train"})
    return done + run_jobs(ready, backend, on_outcome, arch_modules=arch_modules, device=device)
