"""When fits start, step and stop, and in which process (docs/engine.md).

* **Lockstep** (``lockstep``): a run's fits start together and step together until the
  last one stops. With ``workers`` > 1 the run is split into parts that train in worker
  processes (``parallel.split_parts``), each exactly as it would beside the others.
* **Continuous** (``run_stream``): a process keeps up to ``fits_per_forward`` fits in
  flight and starts a waiting fit as soon as one stops. Fits stop at very different times
  (200 to 2,500 steps on the reference GRU), so in lockstep most forwards carry a few fits
  and share their fixed cost — hundreds of small ops along the restarted recurrence — among
  few; here they stay full until the waiting fits run out.

A fit trains exactly as it would alone, whenever it starts:

* its batch at its own step t is batch t of the run's sequence (:class:`Batches`, the
  sequence lockstep training draws), so it sees the batches it would see alone;
* fits that start together share an Adam (one alignment module per kind and k, each fit
  its own slice, Adam elementwise), whose step count is then each fit's own;
* on the continuous schedule its arithmetic does not depend on which fits share its
  forward (``Engine.continuous`` says where that holds);
* validation and final scoring run each fit alone there, so float32 scoring never sees
  other fits' rows and its rounding cannot depend on which fits happened to be in flight.

Fits come from ``claim(k)``, which hands out up to k indices of the waiting fits: a list
here, or a counter shared with the worker processes (``parallel``). ``train_together``
queues them by ``FitSpec.priority``, so the fits likely to run longest start first. Fits
may belong to different engines (another model or site, as evaluate's random-init
controls): each step runs one forward per engine with fits in flight.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from ..alignments import ALIGNMENTS
from ..machine import one_thread
from ..memory import release_free_memory
from . import parallel
from .config import EngineConfig, FitResult, FitSpec
from .engine import Engine, Fit, trainable
from .parallel import OnStep
from .shipping import Shipment, rebuild_engines, states, states_to_tensors, unpack_specs


class Batches:
    """The run's batches: batch t (t = 1, 2, ...) of ``n`` pairs as lockstep training draws
    it — a fresh permutation from the seeded generator whenever the current one has too
    few pairs left. Drawn on demand (on the CPU, whatever the device) and kept, since fits
    read it at different steps."""

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


def adam_step(opt: torch.optim.Optimizer, fits: list[Fit]) -> None:
    """``opt.step()``, then each fit whose learning rate was lowered (``Fit.lr_scale`` < 1)
    has its slice's move scaled by it: Adam's moment estimates do not depend on the
    learning rate, so this is exactly Adam at lr · lr_scale for that slice alone. Then
    each module hears which of its slices stepped (``Alignment.after_step``: ``boundless``
    counts its fits' steps there)."""
    scaled = [f for f in fits if f.lr_scale != 1.0]
    before = [(f, [p[f.slot].detach().clone() for p in f.module.parameters()]) for f in scaled]
    opt.step()
    stepped: dict[int, tuple] = {}
    for f in fits:
        stepped.setdefault(id(f.module), (f.module, []))[1].append(f.slot)
    with torch.no_grad():
        for f, old in before:
            for p, p0 in zip(f.module.parameters(), old):
                p[f.slot] = p0 + (p[f.slot] - p0) * f.lr_scale
        for module, slots in stepped.values():
            module.after_step(slots)


def _in_spec_order(specs: list[FitSpec], fits: list[Fit], results: list[FitResult]) -> list[FitResult]:
    position = {id(spec): i for i, spec in enumerate(specs)}  # fits are grouped by module
    return [r for _, r in sorted(zip((position[id(f.spec)] for f in fits), results),
                                 key=lambda pair: pair[0])]


def lockstep(engine: Engine, specs: list[FitSpec], seed: int = 0,
             on_step: OnStep | None = None) -> list[FitResult]:
    """Every fit starts at step 1 and steps until the last one stops, in this process.
    Results in the order of ``specs``."""
    cfg = engine.config
    fits = engine.make_fits(specs)
    training = [f for f in fits if f.module.trainable]
    params = [p for m in {id(f.module): f.module for f in training}.values() for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=cfg.lr) if params else None
    batches = Batches(len(fits[0].splits["train"].pos), cfg.batch_size, seed)
    step = 0
    engine.validate(training, 0)
    last = max((f.max_steps for f in training), default=0)
    while any(f.active for f in training) and step < last:
        step += 1
        active = [f for f in training if f.active]
        opt.zero_grad(set_to_none=True)
        engine.train_step(active, batches[step])
        adam_step(opt, active)
        due = [f for f in active if step % cfg.eval_every == 0 or step >= f.max_steps]
        if due:
            engine.validate(due, step)
            if on_step:
                on_step(step, sum(f.active for f in training), max(f.best_iia for f in training))
    for f in training:  # each has stopped, at the latest validated at its max_steps
        f.module.load_slice(f.slot, f.best_state)
    valid_loss, valid_ok = engine.score(fits, "valid")
    _, test_ok = engine.score(fits, "test")
    results = [engine.result(f, valid_loss[a], valid_ok[a], test_ok[a]) for a, f in enumerate(fits)]
    return _in_spec_order(specs, fits, results)


def run(engine: Engine, specs: list[FitSpec], *, seed: int = 0,
        on_step: OnStep | None = None) -> list[FitResult]:
    """Train every trainable fit of ``specs`` to its stopping rule; score all on valid and
    test. Results come in the order of ``specs``.

    ``on_step(step, active_fits, best_valid_iia_so_far)`` is called every validation.
    With ``workers`` > 1 and more than one fit to train, this process and ``workers``
    − 1 worker processes train the fits side by side; on the continuous schedule each
    takes the next waiting fit when it has room for one. Each fit trains exactly as it
    would alone."""
    if engine.continuous:
        return train_together([(engine, specs)], seed=seed, on_step=on_step)[0]
    release_free_memory()  # what earlier stages freed, before training adds its own
    chosen = trainable(specs)
    workers = min(engine.config.workers, len(chosen))
    if workers < 2:
        return lockstep(engine, specs, seed, on_step)
    parts = parallel.split_parts(len(specs), chosen, workers, engine.config.fits_per_forward)
    part_specs = [[specs[i] for i in p] for p in parts]
    config = dataclasses.replace(engine.config, workers=workers)
    shipped = Shipment(_in_worker, [engine], config, seed, on_step is not None)
    active = [sum(ALIGNMENTS[s.alignment].trainable for s in p) for p in part_specs]
    results = parallel.farm(
        workers, active, lambda run_id, p: shipped.task(run_id, p, part_specs[p], [0] * len(part_specs[p])),
        lambda p, claim, report: dict(enumerate(lockstep(engine, part_specs[p], seed, report))),
        on_step, received=states_to_tensors)
    by_index = {i: r[j] for p, r in zip(parts, results) for j, i in enumerate(p)}
    return [by_index[i] for i in range(len(specs))]


def run_stream(jobs: list[tuple[Engine, FitSpec]], claim: Callable[[int], list[int]],
               seed: int, on_step: OnStep | None) -> dict[int, FitResult]:
    """Train the fits ``claim`` hands out (indices into ``jobs``: an engine and a spec), at
    most ``fits_per_forward`` at once; their results by index. ``on_step(step, in_flight,
    best_valid_iia)`` is called at every step where a fit validates."""
    cfg = jobs[0][0].config
    batches: dict[int, Batches] = {}
    live: list[Fit] = []
    optimizers: list[tuple[torch.optim.Optimizer, list[Fit]]] = []
    index: dict[int, int] = {}
    results: dict[int, FitResult] = {}
    best = 0.0

    def finish(f: Fit) -> None:
        """Score the best alignment of a stopped fit alone, and let go of its data."""
        f.module.load_slice(f.slot, f.best_state)
        valid_loss, valid_ok = f.engine.score([f], "valid")
        _, test_ok = f.engine.score([f], "test")
        results[index[id(f)]] = f.engine.result(f, valid_loss[0], valid_ok[0], test_ok[0])
        f.splits = {}

    def validate(due: list[Fit]) -> None:
        nonlocal best
        for f in due:
            loss, ok = f.engine.score([f], "valid")
            f.engine.judge(f, float(ok[0].mean()), float(loss[0]), f.t)
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
        due = [f for f in live if f.t % cfg.eval_every == 0 or f.t >= f.max_steps]
        if due:
            validate(due)
            if on_step:
                on_step(step, sum(f.active for f in live), best)
    return results


def train_together(runs: list[tuple[Engine, list[FitSpec]]], *, seed: int = 0,
                   on_step: OnStep | None = None) -> list[list[FitResult]]:
    """Several engines' fits (other models, sites or modes) at once: each run's results, as
    ``run`` gives them. On the continuous schedule every trainable fit joins one stream
    (``run_stream``), so a process with room takes the next waiting fit of any run and no
    run waits for the last fit of another; otherwise the runs go one by one. Waiting fits
    are claimed by ``FitSpec.priority``, highest first, then in order. The engines must
    share their settings."""
    if not all(e.continuous and e.config == runs[0][0].config for e, _ in runs):
        return [run(e, specs, seed=seed, on_step=on_step) for e, specs in runs]
    release_free_memory()  # what earlier stages freed, before training adds its own
    chosen = [trainable(specs) for _, specs in runs]
    jobs = [(r, i) for r, mine in enumerate(chosen) for i in mine]
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
            fixed = sorted(set(range(len(specs))) - set(chosen[r]))
            done.append(dict(zip(fixed, lockstep(engine, [specs[i] for i in fixed], seed)
                                 if fixed else [])))

    if workers < 2:  # one thread, as every process of a run with workers: float32
        # products on more threads may sum a row differently by how many rows share them
        with one_thread():
            untrained()
            waiting = list(range(len(jobs)))
            trained = run_stream(streamed, lambda k: [waiting.pop(0) for _ in waiting[:k]],
                                 seed, on_step) if jobs else {}
    else:
        engines = list({id(e): e for e, _ in streamed}.values())
        owner = {id(e): i for i, e in enumerate(engines)}
        specs, owners = [s for _, s in streamed], [owner[id(e)] for e, _ in streamed]
        shipped = Shipment(_in_worker, engines, dataclasses.replace(config, workers=workers),
                           seed, on_step is not None, stream=True)
        parts = parallel.farm(
            workers, [0] * workers, lambda run_id, p: shipped.task(run_id, p, specs, owners),
            lambda p, claim, report: run_stream(streamed, claim, seed, report),
            on_step, claimable=len(specs), received=states_to_tensors, first=untrained)
        trained = {i: r for part in parts for i, r in part.items()}
    for j, result in trained.items():
        r, i = jobs[j]
        done[r][i] = result
    return [[d[i] for i in range(len(specs))] for d, (_, specs) in zip(done, runs)]


# --- what a worker process does --------------------------------------------------------

def _in_worker(run_id: int, task: int, models: list[tuple], engines: list[tuple[int, str, str]],
               plugins: tuple[list[str], list[tuple[str, str]]], modules: list[str],
               config: EngineConfig, specs: list[tuple], owners: list[int], seed: int,
               report: bool, stream: bool) -> dict:
    """In a worker: the results, by index, of a lockstep part (one engine) or (``stream``)
    of the fits it claims; fit i belongs to engine ``owners[i]``."""
    built = rebuild_engines(engines, models, plugins, modules, config)
    on_step = parallel.child_report(run_id, task) if report else None
    fit_specs = unpack_specs(specs)
    if stream:
        claim = parallel.child_claim(run_id, len(fit_specs), config.workers)
        results = run_stream([(built[e], spec) for e, spec in zip(owners, fit_specs)], claim,
                             seed, on_step)
    else:
        results = dict(enumerate(run(built[0], fit_specs, seed=seed, on_step=on_step)))
    return states(results, lambda t: t.numpy())


def warm() -> None:
    """In a worker: import what its tasks run (this module imports the engine)."""


def prestart(workers: int) -> None:
    """Start the ``workers`` − 1 worker processes now, importing the engine, so their
    start-up overlaps the caller's work before its first run of fits (evaluate calls it
    before the task accuracy and the gate). Only when processes start; no number changes."""
    parallel.prestart(workers, warm)
