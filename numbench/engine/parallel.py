"""Worker processes (``EngineConfig.workers``; docs/engine.md): handed what to run, they
know nothing of what it is. The schedule (``schedule.py``) gives them a picklable task
function and its arguments; this module starts and keeps the processes, hands out tasks
as processes come free, shares a counter from which running tasks claim work, and passes
their progress back.

Processes, not threads: a training step is hundreds of small ops, and Python's lock held
two threads to ~1.45x of one on two cores, where two processes reach ~1.85x. The calling
process works too, beside ``workers`` − 1 worker processes: one process less holds a
copy of torch and of the data.

Children are started with ``spawn`` (forking after OpenMP has run is unsafe) and kept for
the life of the process, so their start-up (~2 s) is paid once. Each runs torch on one
thread, as the calling process does while it works beside them.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import queue
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Callable

import torch

from ..lifeline import exit_with_parent, terminate
from ..machine import one_thread

# (workers, executor, progress queue, claims: [run id, next waiting item])
_pool: tuple[int, ProcessPoolExecutor, object, object] | None = None
_child_queue = _child_claims = None  # in a child: where it reports progress, claims work
_runs = 0

#: on_step(step, items in flight, best valid IIA so far)
OnStep = Callable[[int, int, float], None]


def deal(n: int, parts: int) -> list[int]:
    """Part of each of n items, dealt in snake order: 0, 1, .., p-1, p-1, .., 0, 0, 1, ..."""
    out = []
    for i in range(n):
        lap, at = divmod(i, parts)
        out.append(at if lap % 2 == 0 else parts - 1 - at)
    return out


def split_parts(n: int, chosen: list[int], workers: int, per_part: int) -> list[list[int]]:
    """Indices 0..n-1 in parts: a multiple of ``workers`` parts of at most ``per_part``
    of the ``chosen`` items each, dealt in snake order; the other items dealt the same way."""
    n_parts = -(-len(chosen) // max(1, per_part))
    n_parts = min(len(chosen), -(-n_parts // workers) * workers)
    parts: list[list[int]] = [[] for _ in range(n_parts)]
    picked = set(chosen)
    rest = [i for i in range(n) if i not in picked]
    for group in (chosen, rest):
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


def prestart(workers: int, warm: Callable[[], None]) -> None:
    """Start the ``workers`` − 1 worker processes now, each running ``warm()`` (imports),
    so their start-up overlaps the caller's work. Only when processes start."""
    if workers >= 2:
        executor = _start(workers - 1)[1]
        for _ in range(workers - 1):
            executor.submit(warm)


def shutdown() -> None:
    """Stop the worker processes (at exit, or to start a pool of another size)."""
    global _pool
    if _pool is not None:
        _pool[1].shutdown(cancel_futures=True)
        _pool = None


def stop_now() -> None:
    """Stop the worker processes without waiting for their tasks (on an interrupt:
    nobody will read their results)."""
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
    """claim(k): up to k of the n waiting items of run ``run_id`` from the shared counter,
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


def child_claim(run_id: int, n: int, workers: int) -> Callable[[int], list[int]]:
    """In a worker: ``claim(k)`` on the run's shared counter (see ``farm``)."""
    return _claimer(_child_claims, run_id, n, workers)


def child_report(run_id: int, task: int) -> OnStep:
    """In a worker: an ``on_step`` that passes the task's progress to the parent."""
    return lambda step, active, best: _child_queue.put((run_id, task, step, active, best))


class Arrays:
    """Tensors to numpy arrays and back, one array per tensor object (identity kept):
    torch's own sharing (shared-memory storages) was measured to slow the parent's later
    matrix products by half, and pickled arrays keep which tensors are the same object."""

    def __init__(self):
        self._memo: dict[int, tuple] = {}

    def __call__(self, x):
        if x is None:  # an optional field left empty (PairTensors.values)
            return None
        if id(x) not in self._memo:
            out = x.numpy() if isinstance(x, torch.Tensor) else torch.from_numpy(x)
            self._memo[id(x)] = (x, out)  # x kept alive, so its id is not reused
        return self._memo[id(x)][1]


def shown_progress(status: dict[int, tuple[int, int, float]]) -> tuple[int, int, float]:
    """What a run's progress shows of its tasks' (step, items in flight, best valid IIA):
    the furthest step of the tasks still running (a finished task's last step would
    otherwise stand while the next starts from 0), all their items, the best IIA."""
    live = [st[0] for st in status.values() if st[1] > 0] or [st[0] for st in status.values()]
    return (max(live), sum(st[1] for st in status.values()),
            max(st[2] for st in status.values()))


def farm(workers: int, active: list[int], remote: Callable[[int, int], tuple],
         run_here: Callable[[int, Callable, OnStep], dict], on_step: OnStep | None, *,
         claimable: int = 0, received: Callable[[dict], dict] = lambda r: r,
         first: Callable[[], None] | None = None) -> list[dict]:
    """Run ``len(active)`` tasks on ``workers`` processes, each taking the next task when
    free. A worker runs task p as ``fn(*args)`` for ``(fn, args) = remote(run_id, p)`` and
    its result goes through ``received``; this process runs its tasks as ``run_here(p,
    claim, on_step)``, after ``first()`` if given, on one thread. ``active[p]``: the items
    task p has in flight at its start; ``claimable``: how many items the tasks claim from
    this run's shared counter (``claim``, ``child_claim``). Each task's result, in order."""
    global _runs
    _runs += 1
    run_id = _runs
    _, executor, progress, claims = _start(workers - 1)
    with claims.get_lock():
        claims[0], claims[1] = run_id, 0
    claim = _claimer(claims, run_id, claimable, workers)
    n_tasks = len(active)
    status = {p: (0, a, 0.0) for p, a in enumerate(active)}
    todo, lock = list(range(n_tasks)), threading.Lock()
    futures: dict[int, Future] = {}
    results: dict[int, dict] = {}
    failed: list[BaseException] = []

    def take() -> int | None:
        with lock:
            return todo.pop(0) if todo else None

    def feed(_=None) -> None:  # a worker process is free: give it the next task
        p = take()
        if p is None:
            return
        try:
            fn, args = remote(run_id, p)
            f = executor.submit(fn, *args)
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
        for p, f in current:  # a finished task has nothing left in flight
            if f.done():
                f.result()  # a child's error is raised here, in the parent
                status[p] = (status[p][0], 0, status[p][2])
        if on_step:
            step, live, best = shown_progress(status)
            on_step(step, live + max(0, claimable - claims[1]), best)

    for _ in range(workers - 1):
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
    while len(results) < n_tasks:
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
                results[p] = received(f.result())
    return [results[p] for p in range(n_tasks)]
