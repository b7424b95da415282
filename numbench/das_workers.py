"""Worker processes for the DAS engine (``EngineConfig.workers``; docs/engine.md).

The engine's fits are independent: each has its own parameters and loss, and every fit
of a run sees the same sequence of batches. So a run can be split into parts that train
in separate processes, each exactly as it would beside the others. Processes, not
threads: a training step is hundreds of small ops, and Python's lock held two threads to
~1.45x of one on two cores, where two processes reach ~1.85x.

The calling process trains parts too, beside ``workers`` − 1 worker processes: one process
less holds a copy of torch and of the pair sets. A run has a multiple of ``workers`` parts
of at most ``fits_per_forward`` fits, and each process takes the next part when it is free,
so a part whose fits stop early does not leave a core idle while another part runs on.

Fits are dealt to parts in snake order (0, 1, .., p−1, p−1, .., 1, 0, 0, 1, ...), so a run
whose fits come in a repeating pattern — evaluate's orthogonal, its permuted control,
linear, its control — gives each part a share of every kind. The parts run side by side
to their own end, never waiting for each other.

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
import queue
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Callable

import torch

if TYPE_CHECKING:
    from .das import EngineConfig, FitResult, FitSpec
    from .models.contract import NumbenchModel

_pool: tuple[int, ProcessPoolExecutor, object] | None = None  # (workers, executor, queue)
_child_queue = None  # in a child: where it reports progress


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
    progress = ctx.Queue()
    executor = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init, initargs=(progress,))
    _pool = (workers, executor, progress)
    return _pool


def shutdown() -> None:
    """Stop the worker processes (at exit, or to start a pool of another size)."""
    global _pool
    if _pool is not None:
        _pool[1].shutdown(cancel_futures=True)
        _pool = None


atexit.register(shutdown)


def _init(progress) -> None:
    global _child_queue
    _child_queue = progress
    torch.set_num_threads(1)  # one core a process


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


def _state_arrays(results: list[FitResult], to) -> list[FitResult]:
    for r in results:
        r.state = {k: to(v) for k, v in r.state.items()}
    return results


def _modules(model: NumbenchModel, specs: list[FitSpec]) -> list[str]:
    """Modules that define the model's architecture and the alignments (registering them
    on import), for a child to import; a script's ``__main__`` the child has already run."""
    from .alignments import ALIGNMENTS

    names = {type(model).__module__} | {ALIGNMENTS[s.alignment].__module__ for s in specs}
    return sorted(n for n in names if n != "__main__" and not n.startswith("numbench_plugin_"))


def _run_part(run_id: int, part: int, payload: tuple, plugins: list[str], modules: list[str],
              site: str, mode: str, config: EngineConfig, specs: list[tuple], seed: int,
              report: bool) -> list[FitResult]:
    from .das import Engine
    from .models.registry import build_model, load_arch_module, plugin_paths

    for path in plugins:
        if path not in plugin_paths():
            load_arch_module(path)
    for name in modules:
        if name not in sys.modules:
            importlib.import_module(name)
    arch, cfg, vocabulary, state = payload
    model = build_model(arch, cfg, vocabulary)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    on_step = None
    if report:
        on_step = lambda step, active, best: _child_queue.put((run_id, part, step, active, best))
    results = Engine(model.eval(), site, mode, replace(config, workers=1)).run(
        _unpack_specs(specs), seed=seed, on_step=on_step)
    return _state_arrays(results, lambda t: t.numpy())


_runs = 0


def run_parts(model: NumbenchModel, site: str, mode: str, config: EngineConfig,
              parts: list[list[FitSpec]], seed: int,
              on_step: Callable[[int, int, float], None] | None,
              run_here: Callable[[list[FitSpec], Callable | None], list[FitResult]]
              ) -> list[list[FitResult]]:
    """Each part's results. ``workers`` run the parts as they come free, in order: this
    process by ``run_here(specs, on_step)`` on one core, the others in worker processes
    meanwhile. ``on_step`` sees the furthest step of any part, the active fits of all,
    and the best valid IIA so far."""
    global _runs
    from .models.registry import plugin_paths

    _runs += 1
    run_id = _runs
    _, executor, progress = _start(config.workers - 1)
    payload, plugins = _payload(model), plugin_paths()
    modules = _modules(model, [s for part in parts for s in part])
    from .alignments import ALIGNMENTS

    trainable = lambda specs: sum(ALIGNMENTS[s.alignment].trainable for s in specs)
    status = {p: (0, trainable(specs), 0.0) for p, specs in enumerate(parts)}
    todo, lock = list(range(len(parts))), threading.Lock()
    futures: dict[int, Future] = {}
    results: dict[int, list[FitResult]] = {}
    failed: list[BaseException] = []

    def take() -> int | None:
        with lock:
            return todo.pop(0) if todo else None

    def feed(_=None) -> None:  # a worker process is free: give it the next part
        p = take()
        if p is None:
            return
        try:
            f = executor.submit(_run_part, run_id, p, payload, plugins, modules, site, mode,
                                config, _pack_specs(parts[p]), seed, on_step is not None)
        except BaseException as e:  # a broken pool: the parent raises it below
            failed.append(e)
            return
        with lock:
            futures[p] = f
        f.add_done_callback(feed)

    def report() -> None:
        while True:
            try:
                rid, part, step, active, best = progress.get_nowait()
            except queue.Empty:
                break
            if rid == run_id:
                status[part] = (step, active, best)
        with lock:
            current = list(futures.items())
        for p, f in current:  # a finished part has no fit left to train
            if f.done():
                f.result()  # a child's error is raised here, in the parent
                status[p] = (status[p][0], 0, status[p][2])
        if on_step:
            on_step(max(s[0] for s in status.values()), sum(s[1] for s in status.values()),
                    max(s[2] for s in status.values()))

    for _ in range(config.workers - 1):
        feed()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core here, the others for the workers
    try:
        while (p := take()) is not None:
            def here(step: int, active: int, best: float, p=p) -> None:
                status[p] = (step, active, best)
                report()

            results[p] = run_here(parts[p], here)
            status[p] = (status[p][0], 0, status[p][2])
    finally:
        torch.set_num_threads(threads)
    while len(results) < len(parts):
        if failed:
            raise failed[0]
        with lock:
            running = {p: f for p, f in futures.items() if p not in results}
        if not running:  # a part between a worker's callback and its submission
            time.sleep(0.05)
            continue
        wait(list(running.values()), timeout=0.5, return_when=FIRST_COMPLETED)
        report()
        for p, f in running.items():
            if f.done():
                results[p] = _state_arrays(f.result(), torch.from_numpy)
    return [results[p] for p in range(len(parts))]
