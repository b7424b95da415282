"""The protocol, end to end: gate → task accuracy → alignment fits → controls → a result.

This is the only module that knows the whole protocol (PROTOCOL §3–§7). It turns pair
sets into tensors, hands fits to the engine site by site, and assembles the result
document described in docs/result-schema.md.
"""

from __future__ import annotations

import hashlib
import platform
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .accuracy import sequence_correct, split_accuracies
from .alignments import ALIGNMENTS
from .device import device_name, resolve_device
from .engine import Engine, FitResult, FitSpec, PairTensors, prestart, train_together
from .errors import NumbenchError
from .gate import GATE_TOLERANCE, GateFailed, run_gate
from .machine import cpu_description
from .models.files import check_task, load_model, model_sha256
from .models.registry import build_model
from .pairs import PairSet, make_pairs
from .programs import get_program
from .protocol import (
    BASELINE_ALIGNMENTS,
    CONTROL_RULES,
    PROGRAMS,
    PROTOCOL_DIGEST,
    PROTOCOL_VERSION,
    RANDOM_INIT_SEED,
    RANKED_ALIGNMENTS,
    ranked_k,
    sweep_ks,
)
from .results import RESULT_SCHEMA_VERSION, load_result, read_partial, seal, write_json_atomic
from .scores import best_site, summarize
from .settings import Settings, reusable_cells
from .tasks import Task, load_task
from .version import __version__

Progress = Callable[[str, dict], None]  # (stage, details)


def _fit_seed(seed: int, key: str) -> int:
    return int(hashlib.sha256(f"{seed}/{key}".encode()).hexdigest()[:8], 16)


class _Pairs:
    """Pair sets as tensors; bases and sources shared between variables (one tensor each),
    so the engine computes their activations once."""

    def __init__(self, task: Task):
        self.task, self._shared, self.hashes, self._made = task, {}, {}, {}

    def get(self, program: str, variable: str, split: str, mode: str, permuted: bool):
        key = (program, variable, split, mode, permuted)
        if key not in self._made:  # a set used again (a control, another site) is one object
            self._made[key] = self._get(*key)
        return self._made[key]

    def _get(self, program: str, variable: str, split: str, mode: str, permuted: bool):
        p: PairSet = make_pairs(self.task, program, variable, split, mode=mode, permuted=permuted)
        self.hashes[p.key] = p.sha256
        key = (split, mode)
        if key not in self._shared:
            T = torch.from_numpy
            self._shared[key] = (T(p.base.ids), T(p.base_pos), T(p.source.ids), T(p.source_pos))
        base_ids, base_pos, src_ids, src_pos = self._shared[key]
        cf = p.counterfactual
        return p, PairTensors(base_ids, torch.from_numpy(cf.ids), torch.from_numpy(cf.scored),
                              base_pos, src_ids, src_pos, torch.from_numpy(p.source_values))

    def triplet(self, program, variable, mode="single", permuted=False):
        sets = [self.get(program, variable, s, mode, permuted) for s in ("train", "valid", "test")]
        return [p for p, _ in sets], [t for _, t in sets]


def _pair_hashes(pairs: list[PairSet]) -> dict[str, str]:
    return {s: p.sha256 for s, p in zip(("train", "valid", "test"), pairs)}


_LIMITS = ("max_steps", "patience")  # a fit's own (a control's, CONTROL_RULES); not in its cell


def _cell(r: FitResult, spec_meta: dict, pairs: list[PairSet], site_index: int) -> dict:
    about = {k: v for k, v in spec_meta.items() if k not in _LIMITS}
    cell = dict(about, key=r.key, k=r.k, site_index=site_index,
                valid_iia=r.valid_iia, test_iia=r.test_iia, valid_loss=round(r.valid_loss, 6),
                steps=r.steps, best_step=r.best_step, stop_reason=r.stop_reason,
                pairs=_pair_hashes(pairs))
    described = ALIGNMENTS[r.alignment].describe(r.state) if r.state else {}
    if described:  # what a method learned beyond its IIA (boundless: its size)
        cell["method"] = described
    if spec_meta["control"] is None:  # gradience: test IIA by source value and base count
        test = pairs[2]
        var_col = 0 if len(test.variables) == 1 else None
        ok = r.test_correct
        if var_col is not None:
            vals = test.source_values[:, var_col]
            cell["by_source_value"] = {str(v): float(ok[vals == v].mean()) for v in np.unique(vals)}
        n = test.base.counts
        cell["by_base_count"] = {str(c): float(ok[n == c].mean()) for c in np.unique(n)}
    return cell


def _claim_priority(meta: dict) -> int:
    """Which fits start first on the continuous schedule (order only, never a number), so
    the longest do not start last: a linear alignment's permuted control rarely reaches the
    stopping IIA and runs to a late plateau or the step cap (the binary phase's above all);
    a random-init control mostly stops on the failing rule; the other fits lie between."""
    if meta["control"] == "random_init":
        return 0
    return 2 if meta["control"] == "permuted" and meta["alignment"] == "linear" else 1


def _run_fits(runs: list[tuple], settings: Settings, progress: Progress | None,
              stage: str) -> list[list[dict]]:
    """runs: (model, site, mode, jobs), jobs (meta, pair sets, pair tensors) per fit; the
    runs' fits train together (``train_together``). Each run's cells."""
    engines, specs = [], []
    for model, site, mode, jobs in runs:
        engines.append(Engine(model, site, mode, settings.engine))
        specs.append([FitSpec(meta["key"], meta["alignment"], meta["k"], *tensors,
                              seed=_fit_seed(settings.seed, meta["key"]),
                              priority=_claim_priority(meta), max_steps=meta["max_steps"],
                              patience=meta["patience"])
                      for meta, _, tensors in jobs])
    on_step, n = None, sum(len(s) for s in specs)
    if progress:
        on_step = lambda step, active, best: progress(stage, {"step": step, "active": active,
                                                              "fits": n, "best_iia": best})
        progress(stage, {"step": 0, "active": n, "fits": n, "best_iia": 0.0})
    results = train_together(list(zip(engines, specs)), seed=settings.seed, on_step=on_step)
    cells = []
    for (model, site, _, jobs), rs in zip(runs, results):
        index = list(model.sites).index(site)
        cells.append([_cell(r, meta, sets, index) for r, (meta, sets, _) in zip(rs, jobs)])
    return cells


def no_interchange_iia(model, pairs: _Pairs, programs: dict) -> dict:
    """What doing nothing scores (PROTOCOL §6, protocol 2): the plain model run on each
    variable's counterfactual inputs, scored like an interchange against the
    counterfactual's targets. {program: {variable: {"valid": IIA, "test": IIA}}}."""
    out: dict = {}
    for program, variables in programs.items():
        for var in variables:
            out.setdefault(program, {})[var] = {
                split: float(sequence_correct(model, pairs.get(program, var, split, "single",
                                                               False)[0].counterfactual).mean())
                for split in ("valid", "test")}
    return out


def _job(pairs: _Pairs, program, variable, alignment, k, site, mode="single", control=None,
         max_steps: int | None = None, patience: int | None = None):
    key = f"{program}/{variable}/{alignment}/k{k}/{site}/{mode}" + (f"/{control}" if control else "")
    sets, tensors = pairs.triplet(program, variable, mode, permuted=control == "permuted")
    meta = {"key": key, "program": program, "variable": variable, "alignment": alignment,
            "k": k, "site": site, "mode": mode, "control": control, "max_steps": max_steps,
            "patience": patience}
    return meta, sets, tensors


def evaluate(model_path: str | Path, *, task_name: str | None = None,
             settings: Settings | None = None, progress: Progress | None = None,
             partial_path: Path | None = None, device: str | torch.device = "cpu",
             reuse: Path | None = None) -> dict:
    """Evaluate a model file under the protocol on ``device`` and return the result
    document. ``reuse``: a finished result of the same model, seed and budget whose fits
    are copied, not trained again (:func:`~numbench.settings.reusable_cells`), to add
    methods to it."""
    settings = settings or Settings()
    device = resolve_device(device)
    torch.manual_seed(settings.seed)
    walls: dict[str, float] = {}
    t_all = t = time.perf_counter()
    model, meta = load_model(model_path)
    model = model.to(device)
    task = load_task(task_name or meta.task_name)
    check_task(meta, task, model_path)
    sha = model_sha256(model_path)
    if reuse and not all(Engine(model, s, "single", settings.engine).continuous for s in model.sites):
        raise NumbenchError("--reuse: here fits step in lockstep, so a fit's rounding depends "
                            "on the fits beside it and a copied one would differ: evaluate "
                            "without --reuse", path=reuse)
    copied = reusable_cells(load_result(reuse), reuse, model_sha256=sha, task=task.name,
                            protocol_sha256=PROTOCOL_DIGEST, device=device.type,
                            cpu=cpu_description(), settings=settings) if reuse else {}
    say = progress or (lambda stage, details: None)
    prestart(settings.engine.workers)  # worker processes start up while this one works

    say("task accuracy", {})
    accuracy = split_accuracies(model, task)
    walls["task_accuracy"], t = time.perf_counter() - t, time.perf_counter()

    pairs = _Pairs(task)
    say("fidelity gate", {})
    gate = run_gate(model, pairs)
    walls["gate"], t = time.perf_counter() - t, time.perf_counter()
    if not gate["passed"]:
        raise GateFailed(
            f"fails the fidelity gate (identity interchange changes logits by "
            f"{gate['max_abs_logit_diff']:.2e}, tolerance {GATE_TOLERANCE:g}; base-only IIA "
            f"{gate['base_only_iia']} vs task accuracy {gate['task_accuracy_on_bases']:.4f}): "
            f"not scored", path=model_path)

    programs = {p: get_program(p).variables for p in PROGRAMS}
    say("no-interchange baseline", {})
    no_interchange = no_interchange_iia(model, pairs, programs)
    walls["no_interchange"], t = time.perf_counter() - t, time.perf_counter()
    fingerprint = {"model_sha256": sha, "settings": settings.fingerprint(),
                   "protocol": PROTOCOL_DIGEST, "task": task.name, "device": device.type}
    done = read_partial(partial_path, fingerprint) if partial_path else {}
    if partial_path and partial_path.exists():  # say what a resumed run reuses, if anything
        say("resume", {"reused": len(done)})
    n_copied = 0

    def copy_or_train(todo: list[tuple], label: str) -> list[list[dict]]:
        """Each run's cells: copied from ``reuse`` where it holds the fit (same pairs),
        the rest trained together."""
        nonlocal n_copied
        lent = [[copied[meta["key"]] if meta["key"] in copied and
                 copied[meta["key"]]["pairs"] == _pair_hashes(sets) else None
                 for meta, sets, _ in jobs] for *_, jobs in todo]
        fresh = [(m, site, mode, [j for j, c in zip(jobs, cs) if c is None])
                 for (_, m, site, mode, jobs), cs in zip(todo, lent)]
        to_train = [r for r in fresh if r[3]]
        trained = iter(_run_fits(to_train, settings, progress, label) if to_train else [])
        out = []
        for cs, (*_, jobs) in zip(lent, fresh):
            new = iter(next(trained) if jobs else [])
            out.append([dict(c) if c is not None else next(new) for c in cs])
            n_copied += len(cs) - len(jobs)
        return out

    def stages(runs: list[tuple], label: str) -> list[list[dict]]:
        """runs: (run key, model, site, mode, jobs); those not done yet train together."""
        todo = [run for run in runs if run[0] not in done]
        if todo:
            for (key, *_), cells in zip(todo, copy_or_train(todo, label)):
                done[key] = cells
            if partial_path:
                write_json_atomic(partial_path, {"fingerprint": fingerprint, "runs": done})
        return [done[run[0]] for run in runs]

    stage = lambda key, model_, site, mode, jobs, label: stages([(key, model_, site, mode, jobs)], label)[0]

    methods = (*RANKED_ALIGNMENTS, *settings.alignments)  # the extras get the same treatment
    # protocol 2's rules train the permuted controls beside the fits; other rules
    # (CONTROL_RULES: a budget-study candidate) train them after, with the random-init ones
    permuted_beside = settings.controls == CONTROL_RULES
    capped = settings.controls["steps"] == "fit"

    def main_jobs(site: str, d: int) -> list:
        """Ranked alignments (and extra methods) at ranked k, their permuted controls (under
        protocol 2's control rules), full & random."""
        k, jobs = ranked_k(d), []
        for program, variables in programs.items():
            for var in variables:
                for align in methods:
                    jobs.append(_job(pairs, program, var, align, k, site))
                    if permuted_beside:
                        jobs.append(_job(pairs, program, var, align, k, site, control="permuted"))
                for align in BASELINE_ALIGNMENTS:
                    jobs.append(_job(pairs, program, var, align, d if align == "full" else k, site))
        return jobs

    def control_jobs(fits: list[dict] | None) -> dict[str, dict[str, list]]:
        """{site: {control: jobs}}: the random-init control of every ranked (and extra
        method's) cell at its best site; unless trained beside the fits, the permuted control
        there too, or at every site. ``fits``: the fits' cells (None: one site, and the
        controls train beside the fits). Under the rule "steps": "fit" a control stops at
        its fit's steps, or ``fail_after`` if that is more."""
        by_site: dict[str, dict[str, list]] = {}

        def add(cell: dict, control: str) -> None:
            own = settings.controls["max_steps"]
            cap = max(cell["steps"], settings.engine.fail_after) if capped else own
            by_site.setdefault(cell["site"], {}).setdefault(control, []).append(_job(
                pairs, cell["program"], cell["variable"], cell["alignment"], cell["k"],
                cell["site"], control=control, max_steps=cap,
                patience=settings.controls["patience"]))

        for program, variables in programs.items():
            for var in variables:
                for align in methods:
                    if fits is None:
                        add({"program": program, "variable": var, "alignment": align,
                             "site": site, "k": ranked_k(d)}, "random_init")
                        continue
                    best = best_site(fits, program, var, align)
                    add(best, "random_init")
                    if permuted_beside:
                        continue
                    for c in (fits if settings.controls["permuted_sites"] == "every" else [best]):
                        if (c["program"], c["variable"], c["alignment"], c["control"],
                                c["mode"], c["ranked_k"]) == (program, var, align, None, "single", True):
                            add(c, "permuted")
        return by_site

    torch.manual_seed(RANDOM_INIT_SEED + settings.seed)  # the random-init control model
    control_model = build_model(meta.arch, meta.config, task.vocabulary).eval().to(device)
    cells: list[dict] = []
    (site, d), *others = model.sites.items()
    if not others and permuted_beside and Engine(model, site, "single", settings.engine).continuous:
        # 1+2. one site, so every control's best site is known before any fit: on the
        # continuous schedule the main fits and the random-init controls train together
        # (no stage waits for another's last fit)
        controls = control_jobs(None)[site]["random_init"]
        main, new = stages([(f"main/{site}", model, site, "single", main_jobs(site, d)),
                            (f"random_init/{site}", control_model, site, "single", controls)],
                           f"fits and random-init controls at {site}")
        cells += [dict(c, ranked_k=c["k"] == ranked_k(d)) for c in main]
        walls["fits"], t = time.perf_counter() - t, time.perf_counter()
    else:
        # 1. every site: ranked alignments at ranked k, their permuted controls, full & random
        for site, d in model.sites.items():
            cells += stage(f"main/{site}", model, site, "single", main_jobs(site, d), f"fits at {site}")
        for c in cells:
            c["ranked_k"] = c["k"] == ranked_k(model.sites[c["site"]])
        walls["fits"], t = time.perf_counter() - t, time.perf_counter()
        # 2. the random-init control, at each cell's best site (and, under other control
        # rules, the permuted control: at the best site or every site)
        new = []
        for site, jobs in control_jobs(cells).items():
            runs = [(f"{control}/{site}", control_model if control == "random_init" else model,
                     site, "single", jobs[control]) for control in ("permuted", "random_init")
                    if control in jobs]
            label = f"{'random-init control' if permuted_beside else 'controls'} at {site}"
            new += [c for got in stages(runs, label) for c in got]
    cells += [dict(c, ranked_k=True) for c in new]
    walls["controls"], t = time.perf_counter() - t, time.perf_counter()

    # 3. --sweep: k-sweep and sd_linear at the best site, prefix mode at every site
    if settings.sweep:
        for site, d in model.sites.items():
            jobs = []
            for program, variables in programs.items():
                for var in variables:
                    for align in RANKED_ALIGNMENTS:
                        if best_site(cells, program, var, align)["site"] == site:
                            jobs += [_job(pairs, program, var, align, k, site)
                                     for k in sweep_ks(d) if k != ranked_k(d)]
                            if align == "orthogonal" and "sd_linear" not in methods:
                                jobs.append(_job(pairs, program, var, "sd_linear", ranked_k(d), site))
            if jobs:
                cells += [dict(c, ranked_k=False) for c in
                          stage(f"sweep/{site}", model, site, "single", jobs, f"k-sweep at {site}")]
            prefix = [_job(pairs, program, var, align, ranked_k(d), site, mode="prefix")
                      for program, variables in programs.items() for var in variables
                      for align in RANKED_ALIGNMENTS]
            cells += [dict(c, ranked_k=False) for c in
                      stage(f"prefix/{site}", model, site, "prefix", prefix, f"prefix mode at {site}")]
        walls["sweep"], t = time.perf_counter() - t, time.perf_counter()
    walls["total"] = time.perf_counter() - t_all
    if reuse:
        say("reuse", {"copied": n_copied, "cells": len(cells)})

    return seal({
        "schema_version": RESULT_SCHEMA_VERSION,
        "kind": "numbench-result",
        "ranked": settings.ranked,
        "versions": {"numbench": __version__, "protocol": PROTOCOL_VERSION,
                     "protocol_sha256": PROTOCOL_DIGEST, "torch": torch.__version__,
                     "python": platform.python_version(), "device": device.type,
                     "device_name": device_name(device), "cpu": cpu_description(),
                     "threads": torch.get_num_threads()},
        "settings": settings.to_json(),
        "task": {"name": task.name, "version": task.version, "split_sha256": task.split_hashes},
        "model": {"file": Path(model_path).name, "sha256": sha, "arch": meta.arch,
                  "config": meta.config, "parameters": model.parameter_count(),
                  "sites": model.sites, "seed": meta.seed, "training": meta.training},
        "task_accuracy": accuracy,
        "gate": gate,
        "pairs": dict(sorted(pairs.hashes.items())),
        "cells": sorted(cells, key=lambda c: c["key"]),
        "no_interchange": no_interchange,
        "summary": summarize(cells, programs, no_interchange, settings.alignments),
        "wall_seconds": {k: round(v, 2) for k, v in walls.items()},
    })
