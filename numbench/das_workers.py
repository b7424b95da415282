"""Worker processes for the DAS engine (``EngineConfig.workers``; docs/engine.md).

The engine's fits are independent: each has its own parameters and loss, and every fit
of a run sees the same sequence of batches. So a run can be split into parts that train
in separate processes, each exactly as it would beside the others. Processes, not
threads: a training step is hundreds of small ops, and Python's lock held two threads to
~1.45x of one on two cores, where two processes reach ~1.85x.

The calling process trains fits too, beside ``workers`` − 1 worker processes: one process
less holds a copy of torch and of the pair sets.

* **Continuous schedule** (``run_streams``): every process runs ``das_stream.run_stream``
  and, whenever it has room, claims the next waiting fit from a counter the processes
  share, so none idles while fits wait and a long fit does not hold back others.
* **Lockstep** (``run_parts``): a run has a multiple of ``workers`` parts of at most
  ``fits_per_forward`` fits, and each process takes the next part when it is free, so a
  part whose fits stop early does not leave a core idle while another part runs on. Fits
  are dealt to parts in snake order (0, 1, .., p−1, p−1, .., 1, 0, 0, 1, ...), so a run
  whose fits come in a repeating pattern — evaluate's orthogonal, its permuted control,
  linear, its control — gives each part a share of every kind. Which process runs a part
  does not change its numbers: its fits share forwards the same way wherever it runs.

Children are started with ``spawn`` (forking after OpenMP has run is unsafe) and kept for
the life of the process, so their start-up (~2 s) is paid once. The model travels as its
architecture, config, vocabulary and weights; architecture modules loaded with
``--arch-module`` are loaded again in the child. Tensors cross as numpy arrays: torch's
own sharing (shared-memory storages) was measured to slow the parent's later matrix
products by half, and pickled arrays keep which pair sets are the same object.
"""

from __future__ import annotations

import atexit
import importlib
import multiprocessing
import os
import queue
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Callable

import torch

from .lifeline import exit_with_parent, terminate
from .machine import one_thread

if TYPE_CHECKING:
    from .das import EngineConfig, FitResult, FitSpec
    from .models.contract import NumbenchModel

# (workers, executor, progress queue, claims: [run id, next waiting fit])
_pool: tuple[int, ProcessPoolExecutor, object, object] | None = None
_child_queue = _child_claims = None  # in a child: where it reports progress, claims fits


def deal(n: int, parts: int) -> list[int]:
    """Part of each of n items, dealt in snake order: 0, 1, .., p-1, p-1, .., 0, 0, 1, ..."""
    out = []
    for i in range(n):
        lap, at = divmod(i, parts)
        out.append(at if lap % 2 == 0 else parts - 1 - at)
    return out


def split_parts(n: int, trainable: list[int], workers: int, per_part: int) -> list[list[int]]:
    """Indices 0..n-1 in parts: a multiple of ``workers`` parts of at most ``per_part``
    trainable fits each, dealt in snake order; the untrained fits dealt the same way."""
    n_parts = -(-len(trainable) // max(1, per_part))
    n_parts = min(len(trainable), -(-n_parts // workers) * workers)
    parts: list[list[int]] = [[] for _ in range(n_parts)]
    chosen = set(trainable)
    fixed = [i for i in range(n) if i not in chosen]
    for group in (trainable, fixed):
        for i, part in zip(group, deal(len(group), n_parts)):
            parts[part].append(i)
    return [sorted(p) for p in parts]


def _start(workers: int):
    global _pool
    if _pool is not None and _pool[0] == workers and not getattr(_pool[1], "_broken", False):
        return _pool
    shutdown()
    ctx = multiprocessing.get_context("spawn")
    progress, claims = ctx.Queue(), ctx.Array("q", 2)
    executor = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init,
                                   initargs=(progress, claims, os.getpid()))
    _pool = (workers, executor, progress, claims)
    return _pool


def prestart(workers: int) -> None:
    """Start the ``workers`` − 1 worker processes now, importing the engine, so their
    start-up overlaps the caller's work before its first run of fits (evaluate calls it
    before the task accuracy and the gate). Only when processes start; no number changes."""
    if workers >= 2:
        executor = _start(workers - 1)[1]
        for _ in range(workers - 1):
            executor.submit(_warm)


def _warm() -> None:
    """In a worker: import what its tasks run."""
    from . import das, das_stream  # noqa: F401


def shutdown() -> None:
    """Stop the worker processes (at exit, or to start a pool of another size)."""
    global _pool
    if _pool is not None:
        _pool[1].shutdown(cancel_futures=True)
        _pool = None


def stop_now() -> None:
    """Stop the worker processes without waiting for the parts they are training (on an
    interrupt: nobody will read their results)."""
    global _pool
    if _pool is not None:
        terminate(_pool[1])
        _pool = None


atexit.register(shutdown)


def _init(progress, claims, parent: int) -> None:
    global _child_queue, _child_claims
    _child_queue, _child_claims = progress, claims
    torch.set_num_threads(1)  # one core a process
    exit_with_parent(parent)


def _claimer(claims, run_id: int, n: int, workers: int) -> Callable[[int], list[int]]:
    """claim(k): up to k of the n waiting fits of run ``run_id`` from the shared counter,
    and at most a ``workers``-th of those still waiting, so the first process to ask does
    not take them all (nothing once another run has started)."""

    def claim(k: int) -> list[int]:
        with claims.get_lock():
            if claims[0] != run_id:
                return []
            share = -(-(n - claims[1]) // workers)
            taken = list(range(claims[1], min(n, claims[1] + max(0, min(k, share)))))
            claims[1] += len(taken)
        return taken

    return claim


def _payload(model: NumbenchModel) -> tuple:
    return (model.arch, model.config_dict(), model.vocabulary,
            {k: v.detach().numpy() for k, v in model.state_dict().items()})


class _Arrays:
    """Tensors to numpy arrays and back, one array per tensor object (identity kept)."""

    def __init__(self):
        self._memo: dict[int, tuple] = {}

    def __call__(self, x):
        if id(x) not in self._memo:
            out = x.numpy() if isinstance(x, torch.Tensor) else torch.from_numpy(x)
            self._memo[id(x)] = (x, out)  # x kept alive, so its id is not reused
        return self._memo[id(x)][1]


def _pack_specs(specs: list[FitSpec]) -> list[tuple]:
    arrays = _Arrays()
    pack = lambda p: (type(p), [arrays(getattr(p, f.name)) for f in fields(p)])
    return [(s.key, s.alignment, s.k, pack(s.train), pack(s.valid), pack(s.test), s.seed)
            for s in specs]


def _unpack_specs(packed: list[tuple]) -> list[FitSpec]:
    from .das import FitSpec

    tensors = _Arrays()
    unpack = lambda p: p[0](*[tensors(a) for a in p[1]])
    return [FitSpec(key, kind, k, unpack(tr), unpack(va), unpack(te), seed=seed)
            for key, kind, k, tr, va, te, seed in packed]


def _state_arrays(results: dict[int, FitResult], to) -> dict[int, FitResult]:
    """``results`` with each alignment state converted by ``to`` (tensor ↔ numpy)."""
    for r in results.values():
        r.state = {k: to(v) for k, v in r.state.items()}
    return results


def _modules(models: list[NumbenchModel], specs: list[FitSpec]) -> list[str]:
    """Modules that define the models' architectures and the alignments (registering them
    on import), for a child to import; a script's ``__main__`` the child has already run."""
    from .alignments import ALIGNMENTS

    names = {type(m).__module__ for m in models} | {ALIGNMENTS[s.alignment].__module__ for s in specs}
    return sorted(n for n in names if n != "__main__" and not n.startswith("numbench_plugin_"))


def _engines(engines: list[tuple[int, str, str]], models: list[tuple], plugins: list[str],
             modules: list[str], config: EngineConfig) -> list:
    """In a worker: the engines, each (model index, site, mode), their models rebuilt."""
    from .das import Engine
    from .models.registry import build_model, load_arch_module, plugin_paths

    for path in plugins:
        if path not in plugin_paths():
            load_arch_module(path)
    for name in modules:
        if name not in sys.modules:
            importlib.import_module(name)
    built = []
    for arch, cfg, vocabulary, state in models:
        model = build_model(arch, cfg, vocabulary)
        model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
        built.append(model.eval())
    one = replace(config, workers=1)
    return [Engine(built[m], site, mode, one) for m, site, mode in engines]


def _run_task(run_id: int, task: int, models: list[tuple], engines: list[tuple[int, str, str]],
              plugins: list[str], modules: list[str], config: EngineConfig, specs: list[tuple],
              owners: list[int], seed: int, report: bool, stream: bool):
    """In a worker: the results, by index, of a lockstep part (one engine) or (``stream``)
    of the fits it claims; fit i belongs to engine ``owners[i]``."""
    from .das_stream import run_stream

    built = _engines(engines, models, plugins, modules, config)
    on_step = None
    if report:
        on_step = lambda step, active, best: _child_queue.put((run_id, task, step, active, best))
    fit_specs = _unpack_specs(specs)
    if stream:
        claim = _claimer(_child_claims, run_id, len(fit_specs), config.workers)
        results = run_stream([(built[e], spec) for e, spec in zip(owners, fit_specs)], claim,
                             seed, on_step)
    else:
        results = dict(enumerate(built[0].run(fit_specs, seed=seed, on_step=on_step)))
    return _state_arrays(results, lambda t: t.numpy())


_runs = 0


def run_parts(engine, config: EngineConfig, parts: list[list[FitSpec]], seed: int,
              on_step: Callable[[int, int, float], None] | None,
              run_here: Callable[[list[FitSpec], Callable | None], list[FitResult]]
              ) -> list[list[FitResult]]:
    """Lockstep: each part's results. ``workers`` run the parts as they come free, in
    order: this process by ``run_here(specs, on_step)`` on one core, the others in worker
    processes meanwhile. ``on_step`` sees the furthest step of the parts still training,
    the active fits of all, and the best valid IIA so far (``shown_progress``)."""
    from .alignments import ALIGNMENTS

    active = [sum(ALIGNMENTS[s.alignment].trainable for s in specs) for specs in parts]
    tasks = [(specs, [0] * len(specs)) for specs in parts]
    results = _farm([engine], config, tasks, active, seed, on_step, False,
                    lambda p, claim, report: dict(enumerate(run_here(parts[p], report))))
    return [[r[i] for i in range(len(part))] for r, part in zip(results, parts)]


def run_streams(jobs: list[tuple], config: EngineConfig, seed: int,
                on_step: Callable[[int, int, float], None] | None,
                run_here: Callable[[Callable[[int], list[int]], Callable | None], dict],
                first: Callable[[], None] | None = None) -> dict[int, FitResult]:
    """Continuous schedule for ``jobs`` (engine, spec): this process (``run_here(claim,
    on_step)``) and ``workers`` − 1 worker processes each run ``das_stream.run_stream``,
    claiming the next waiting fit from a shared counter whenever they have room. Results
    by index into ``jobs``. ``first()`` runs here, on one thread, once the workers have
    their tasks and before this process claims any fit."""
    engines = list({id(e): e for e, _ in jobs}.values())
    owner = {id(e): i for i, e in enumerate(engines)}
    task = ([s for _, s in jobs], [owner[id(e)] for e, _ in jobs])
    results = _farm(engines, config, [task] * config.workers, [0] * config.workers,
                    seed, on_step, True, lambda p, claim, report: run_here(claim, report), first)
    return {i: r for part in results for i, r in part.items()}


def shown_progress(status: dict[int, tuple[int, int, float]]) -> tuple[int, int, float]:
    """What a run's progress shows of its tasks' (step, fits training, best valid IIA): the
    furthest step of the tasks still training (a finished lockstep part's last step would
    otherwise stand while the next part starts from 0), all their fits, the best IIA."""
    live = [st[0] for st in status.values() if st[1] > 0] or [st[0] for st in status.values()]
    return (max(live), sum(st[1] for st in status.values()),
            max(st[2] for st in status.values()))


def _farm(engines, config, tasks, active, seed, on_step, stream, run_here, first=None) -> list[dict]:
    """Run ``tasks`` ((specs, the engine of each)) on ``workers`` processes, each taking
    the next task when free; this process runs its tasks by ``run_here(task, claim,
    on_step)``, after ``first()`` if given. Each task's results by index, in task order,
    alignment states as tensors. ``stream``: the tasks claim fits from this run's shared
    counter."""
    global _runs
    from .models.registry import plugin_paths

    _runs += 1
    run_id = _runs
    _, executor, progress, claims = _start(config.workers - 1)
    n_fits = len(tasks[0][0]) if stream else 0
    with claims.get_lock():
        claims[0], claims[1] = run_id, 0
    claim = _claimer(claims, run_id, n_fits, config.workers)
    models = list({id(e.model): e.model for e in engines}.values())
    which = {id(m): i for i, m in enumerate(models)}
    keys = [(which[id(e.model)], e.site, e.mode) for e in engines]
    payloads, plugins = [_payload(m) for m in models], plugin_paths()
    modules = _modules(models, [s for specs, _ in tasks for s in specs])
    status = {p: (0, a, 0.0) for p, a in enumerate(active)}
    todo, lock = list(range(len(tasks))), threading.Lock()
    futures: dict[int, Future] = {}
    results: dict[int, dict] = {}
    failed: list[BaseException] = []
    packed: dict[int, list] = {}  # a stream's tasks share one spec list: pack it once

    def take() -> int | None:
        with lock:
            return todo.pop(0) if todo else None

    def feed(_=None) -> None:  # a worker process is free: give it the next task
        p = take()
        if p is None:
            return
        try:
            specs, owners = tasks[p]
            packed_specs = packed.setdefault(id(specs), _pack_specs(specs))
            f = executor.submit(_run_task, run_id, p, payloads, keys, plugins, modules, config,
                                packed_specs, owners, seed, on_step is not None, stream)
        except BaseException as e:  # a broken pool: the parent raises it below
            failed.append(e)
            return
        with lock:
            futures[p] = f
        f.add_done_callback(feed)

    def report() -> None:
        while True:
            try:
                rid, task, step, live, best = progress.get_nowait()
            except queue.Empty:
                break
            if rid == run_id:
                status[task] = (step, live, best)
        with lock:
            current = list(futures.items())
        for p, f in current:  # a finished task has no fit left to train
            if f.done():
                f.result()  # a child's error is raised here, in the parent
                status[p] = (status[p][0], 0, status[p][2])
        if on_step:
            step, live, best = shown_progress(status)
            on_step(step, live + (max(0, n_fits - claims[1]) if stream else 0), best)

    for _ in range(config.workers - 1):
        feed()
    with one_thread():  # one core here, the others for the workers
        if first:
            first()
        while (p := take()) is not None:
            def here(step: int, live: int, best: float, p=p) -> None:
                status[p] = (step, live, best)
                report()

            results[p] = run_here(p, claim, here)
            status[p] = (status[p][0], 0, status[p][2])
    while len(results) < len(tasks):
        if failed:
            raise failed[0]
        with lock:
            running = {p: f for p, f in futures.items() if p not in results}
        if not running:  # a task between a worker's callback and its submission
            time.sleep(0.05)
            continue
        wait(list(running.values()), timeout=0.5, return_when=FIRST_COMPLETED)
        report()
        for p, f in running.items():
            if f.done():
                results[p] = _state_arrays(f.result(), torch.from_numpy)
    return [results[p] for p in range(len(tasks))]
