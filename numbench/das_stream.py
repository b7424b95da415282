"""The continuous schedule of the DAS engine (``EngineConfig.schedule``; docs/engine.md).

In lockstep, a run's fits start together and step together until the last one stops. Fits
stop at very different times (200 to 9,000 steps on the reference GRU), so for most of a
run each forward carries a few fits, and its fixed cost — a few hundred small ops along
the restarted recurrence — is shared by few. Here a process keeps up to
``fits_per_forward`` fits in flight and starts waiting fits as soon as others stop, so its
forwards stay full until the waiting fits run out.

A fit trains exactly as it would alone, whenever it starts:

* its batch at its own step t is batch t of the run's sequence (:class:`Batches`, the
  sequence lockstep training draws), so it sees the batches it would see alone;
* fits that start together share an Adam (one alignment module per kind and k, each fit
  its own slice, Adam elementwise), whose step count is then each fit's own;
* with bf16 training products its arithmetic does not depend on which fits share its
  forward (``Engine.continuous`` requires them);
* validation and final scoring run each fit alone, so float32 scoring never sees other
  fits' rows and its rounding cannot depend on which fits happened to be in flight.

Fits come from ``claim(k)``, which hands out up to k indices of the waiting fits: a list
here, or a counter shared with the worker processes (``das_workers.run_streams``), so a
process with room takes the next fit whichever process started first. ``train_together``
(below) queues them by ``FitSpec.priority``, so the fits likely to run longest start first. Fits
may belong to different engines (another model or site, as evaluate's random-init
controls): each step runs one forward per engine with fits in flight, so one run's fits
fill the places another run's leave.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Callable

import torch

from .memory import release_free_memory

if TYPE_CHECKING:
    from .das import Engine, FitResult, FitSpec, _Fit


class Batches:
    """The run's batches: batch t (t = 1, 2, ...) of ``n`` pairs as lockstep training draws
    it — a fresh permutation from the seeded generator whenever the current one has too
    few pairs left. Drawn on demand and kept, since fits read it at different steps."""

    def __init__(self, n: int, size: int, seed: int):
        self.n, self.size = n, size
        self._rng = torch.Generator().manual_seed(seed)
        self._order, self._cursor = torch.randperm(n, generator=self._rng), 0
        self._drawn: list[torch.Tensor] = []

    def __getitem__(self, t: int) -> torch.Tensor:
        while len(self._drawn) < t:
            if self._cursor + self.size > self.n:
                self._order, self._cursor = torch.randperm(self.n, generator=self._rng), 0
            self._drawn.append(self._order[self._cursor : self._cursor + self.size])
            self._cursor += self.size
        return self._drawn[t - 1]


def adam_step(opt: torch.optim.Optimizer, fits: list) -> None:
    """``opt.step()``, then each fit whose learning rate was lowered (``_Fit.lr_scale`` < 1)
    has its slice's move scaled by it: Adam's moment estimates do not depend on the
    learning rate, so this is exactly Adam at lr · lr_scale for that slice alone."""
    scaled = [f for f in fits if f.lr_scale != 1.0]
    before = [(f, [p[f.slot].detach().clone() for p in f.module.parameters()]) for f in scaled]
    opt.step()
    with torch.no_grad():
        for f, old in before:
            for p, p0 in zip(f.module.parameters(), old):
                p[f.slot] = p0 + (p[f.slot] - p0) * f.lr_scale


def run_stream(jobs: list[tuple[Engine, FitSpec]], claim: Callable[[int], list[int]],
               seed: int, on_step: Callable[[int, int, float], None] | None
               ) -> dict[int, FitResult]:
    """Train the fits ``claim`` hands out (indices into ``jobs``: an engine and a spec), at
    most ``fits_per_forward`` at once; their results by index. ``on_step(step, in_flight,
    best_valid_iia)`` is called at every step where a fit validates."""
    cfg = jobs[0][0].config
    batches: dict[int, Batches] = {}
    live: list[_Fit] = []
    optimizers: list[tuple[torch.optim.Optimizer, list[_Fit]]] = []
    index: dict[int, int] = {}
    results: dict[int, FitResult] = {}
    best = 0.0

    def finish(f: _Fit) -> None:
        """Score the best alignment of a stopped fit alone, and let go of its data."""
        f.module.load_slice(f.slot, f.best_state)
        valid_loss, valid_ok = f.engine._score([f], "valid")
        _, test_ok = f.engine._score([f], "test")
        results[index[id(f)]] = f.engine.result(f, valid_loss[0], valid_ok[0], test_ok[0])
        f.splits = {}

    def validate(due: list[_Fit]) -> None:
        nonlocal best
        for f in due:
            loss, ok = f.engine._score([f], "valid")
            f.engine.judge(f, float(ok[0].mean()), float(loss[0]), f.t)
            if f.active and f.t >= cfg.max_steps:
                f.active, f.stop_reason = False, "max_steps"
            best = max(best, f.best_iia)
        release_free_memory()  # freed autograd buffers back to the OS (memory.py)

    def start() -> None:
        """Claim waiting fits for the free places; validate them at their step 0."""
        picked = claim(cfg.fits_per_forward - len(live))
        if not picked:
            return
        fits = []
        for engine in dict.fromkeys(jobs[i][0] for i in picked):  # regrouped by module
            mine = [i for i in picked if jobs[i][0] is engine]
            made = engine.make_fits([jobs[i][1] for i in mine])
            where = {id(jobs[i][1]): i for i in mine}
            index.update((id(f), where[id(f.spec)]) for f in made)
            fits += made
        params = [p for m in {id(f.module): f.module for f in fits}.values() for p in m.parameters()]
        optimizers.append((torch.optim.Adam(params, lr=cfg.lr), fits))
        for n in {len(f.splits["train"].pos) for f in fits} - set(batches):
            batches[n] = Batches(n, cfg.batch_size, seed)
        validate(fits)
        live.extend(fits)

    step = 0
    start()
    while True:
        for f in [f for f in live if not f.active]:
            finish(f)
        live[:] = [f for f in live if f.active]
        optimizers[:] = [(opt, fits) for opt, fits in optimizers if any(f.active for f in fits)]
        if len(live) < cfg.fits_per_forward:
            before = len(live)
            start()
            if len(live) > before:
                continue  # a fit may stop at its step 0
        if not live:
            break
        step += 1
        for f in live:
            f.t += 1
        for opt, _ in optimizers:
            opt.zero_grad(set_to_none=True)
        for engine in dict.fromkeys(f.engine for f in live):  # a forward per engine
            mine = [f for f in live if f.engine is engine]
            engine.train_step(mine, torch.stack([batches[len(f.splits["train"].pos)][f.t]
                                                 for f in mine]))
        for opt, fits in optimizers:
            adam_step(opt, [f for f in fits if f.active])
        due = [f for f in live if f.t % cfg.eval_every == 0 or f.t >= cfg.max_steps]
        if due:
            validate(due)
            if on_step:
                on_step(step, sum(f.active for f in live), best)
    return results


def train_together(runs: list[tuple[Engine, list[FitSpec]]], *, seed: int = 0,
                   on_step: Callable[[int, int, float], None] | None = None
                   ) -> list[list[FitResult]]:
    """Several engines' fits (other models, sites or modes) at once: each run's results, as
    ``Engine.run`` gives them. On the continuous schedule every trainable fit joins one
    stream (``run_stream``), so a process with room takes the next waiting fit of any run
    and no run waits for the last fit of another; otherwise the runs go one by one.
    Waiting fits are claimed by ``FitSpec.priority``, highest first, then in order.
    The engines must share their settings."""
    if not all(e.continuous and e.config == runs[0][0].config for e, _ in runs):
        return [e.run(specs, seed=seed, on_step=on_step) for e, specs in runs]
    from .das import _trainable
    from .das_workers import run_streams
    from .machine import one_thread

    release_free_memory()  # what earlier stages freed, before training adds its own
    trainable = [_trainable(specs) for _, specs in runs]
    jobs = [(r, i) for r, mine in enumerate(trainable) for i in mine]
    jobs.sort(key=lambda j: -runs[j[0]][1][j[1]].priority)  # stable: ties keep their order
    streamed = [(runs[r][0], runs[r][1][i]) for r, i in jobs]
    config = runs[0][0].config
    workers = min(config.workers, len(jobs))
    done: list[dict[int, FitResult]] = []

    def untrained() -> None:
        """The untrained fits (``full``, ``random``), here. They prepare the pair sets this
        process's streamed fits reuse, so they run on one thread, as every process of the
        stream does, and, beside worker processes, after those have started on the
        trained fits."""
        for r, (engine, specs) in enumerate(runs):
            fixed = sorted(set(range(len(specs))) - set(trainable[r]))
            done.append(dict(zip(fixed, engine._run([specs[i] for i in fixed], seed, None)
                                 if fixed else [])))

    if workers < 2:  # one thread, as every process of a run with workers: float32
        # products on more threads may sum a row differently by how many rows share them
        with one_thread():
            untrained()
            waiting = list(range(len(jobs)))
            trained = run_stream(streamed, lambda k: [waiting.pop(0) for _ in waiting[:k]],
                                 seed, on_step) if jobs else {}
    else:
        trained = run_streams(streamed, dataclasses.replace(config, workers=workers), seed, on_step,
                              lambda claim, report: run_stream(streamed, claim, seed, report),
                              first=untrained)
    for j, result in trained.items():
        r, i = jobs[j]
        done[r][i] = result
    return [[d[i] for i in range(len(specs))] for d, (_, specs) in zip(done, runs)]
