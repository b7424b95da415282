"""The alignment-training engine (PROTOCOL §5): many DAS fits through one model forward.

The engine knows tensors, sites and alignments — nothing of tasks or files. A *fit* is one
alignment (kind, k) trained on one pair set at one site. Fits that share a model, site and
mode train together: every step each fit takes its batch of pair indices and interchanges
its own rows, and all rows go through the frozen model in a single forward. Each fit's
parameters see only its own loss (their slices are independent and Adam is elementwise),
so a fit trains exactly as it would alone. In lockstep (``Engine._run``) the fits start
together and share each step's batch; on the continuous schedule (``das_stream``) a fit
starts when another stops and takes the batch of its own step.

What does not depend on the alignment is computed once (``das_prepare``): base and source
activations at the interchange positions and, for a recurrent model (``Resumable``), the
counterfactual suffix after position i with its targets, so a step runs only the suffix.
How a forward runs a step's rows through the model (restarted, cut, or from the
interchange on) is ``das_rows``.

Stopping (per fit, checked at every validation, every ``eval_every`` steps): valid IIA ≥
``stop_iia``; valid loss not improved by ``min_delta`` in ``patience`` validations (the
first ``lr_decays`` such plateaus multiply the fit's learning rate by ``lr_decay`` instead);
valid IIA < ``fail_iia`` after ``fail_after`` steps; ``max_steps``. The alignment with the best
valid IIA is kept; its test IIA is reported.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .alignments import ALIGNMENTS, Alignment, make_alignment
from .machine import fp32_rows_exact
from .memory import release_free_memory
from .models.contract import NumbenchModel, Resumable, TailRunnable
from .das_prepare import Preparer, Split
from .das_rows import _length_groups, fields, run_cut, run_packed, run_resumed, take
from .das_stream import adam_step, train_together
from .das_types import (SCHEDULES, SPEED_ONLY, TRAIN_PRECISIONS, EngineConfig, FitResult, FitSpec,
                        PairTensors)

__all__ = ["Engine", "train_together", "EngineConfig", "FitResult", "FitSpec", "PairTensors",
           "SCHEDULES", "SPEED_ONLY", "TRAIN_PRECISIONS"]


class _Fit:
    def __init__(self, spec: FitSpec, module: Alignment, slot: int):
        self.spec, self.module, self.slot = spec, module, slot
        self.splits: dict[str, Split] = {}
        self.active = True
        self.best_iia, self.best_step = -1.0, 0
        self.best_state = module.slice_state(slot)
        self.loss_best, self.since_loss_best = float("inf"), 0
        self.valid_loss, self.steps, self.stop_reason = float("nan"), 0, ""
        self.t = 0  # steps trained (continuous schedule: each fit counts its own)
        self.lr_scale, self.decays = 1.0, 0  # this fit's learning rate is lr · lr_scale
        self.engine: Engine | None = None  # set by Engine.make_fits


def _trainable(specs: list[FitSpec]) -> list[int]:
    """Indices of the specs whose alignment trains (not ``full`` or ``random``)."""
    return [i for i, s in enumerate(specs) if getattr(ALIGNMENTS.get(s.alignment), "trainable", False)]


class Engine:
    """Trains and scores groups of fits that share (model, site, mode)."""

    def __init__(self, model: NumbenchModel, site: str, mode: str = "single",
                 config: EngineConfig | None = None, *, reference: bool = False):
        """``reference``: the tests' oracle, which trains every step through autograd and
        runs a causal model's whole forward in float32 (no fused kernels, no tails); the
        same alignments up to float rounding, slower."""
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self.model, self.site, self.mode = model, site, mode
        self.config = config or EngineConfig()
        self.d = model.sites[site]
        self.fast = (mode == "single" and isinstance(model, Resumable)
                     and site in model.state_sites)
        # a causal model's training step (TailRunnable): in single mode from the
        # interchange on, rows packed, the places before it from the model's head_cache
        # where it gives one; in prefix mode the whole forward; products in bf16 if allowed
        causal = not self.fast and isinstance(model, TailRunnable) and not reference
        self.tail = causal and mode == "single"
        # a training step's products may run in bf16 (the model keeps its state float32)
        self.bf16 = self.config.train_precision == "bf16" and model.bf16_training
        self.low_causal = causal and self.bf16
        # a restarted recurrence's training step through the model's hand-written forward
        # and backward where it has them (models/fused.py), else autograd through its stepper
        self.fused = self.fast and not reference and model.fused_training
        # float32 training through the fused kernels: every packed run (training and
        # scoring) rounds its row counts up, so a fit computes as it would alone
        self.padded = self.fast and self.config.train_precision == "fp32" and self.fused
        self._prepared = Preparer(model, site, mode, self.fast, heads=self.tail)

    def prepare(self, pairs: PairTensors) -> Split:
        return self._prepared.prepare(pairs)

    # --- one forward over many fits -----------------------------------------------------
    def edit(self, fits: list[_Fit], h_src: list[torch.Tensor], n: int):
        """The edit of ``n`` pairs of every fit in one forward, rows sorted fit by fit
        (row ``a·n + r`` is pair r of fit a); ``h_src[a]`` is fit a's (n, d) or (n, Ts, d)."""
        A = len(fits)
        segments: dict[int, tuple[Alignment, list[int]]] = {}
        for a, f in enumerate(fits):  # fits of one module, with its factors computed once
            segments.setdefault(id(f.module), (f.module, []))[1].append(a)
        # only the slices of the fits here: a stopped fit's slice costs nothing
        factors = {key: module.factors_of([fits[a].slot for a in members])
                   for key, (module, members) in segments.items()}

        def edit(h: torch.Tensor, rows: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            """Each fit edits the same m (pair, t) places."""
            m = h.shape[0] // A
            hb = h.view(A, m, self.d)
            r = rows.view(A, m) - torch.arange(A)[:, None] * n  # pair index in the batch
            if self.mode == "single":
                hs = torch.stack([take(h_src[a], r[a]) for a in range(A)])
            else:  # prefix: i = j, so the source position is t itself
                tt = t.view(A, m)
                hs = torch.stack([h_src[a][r[a], tt[a]] for a in range(A)])
            outs = []  # members of a segment are consecutive fits, segments in fit order
            for key, (module, members) in segments.items():
                a0, a1 = members[0], members[-1] + 1
                assert members == list(range(a0, a1)), "fits of a module must be consecutive"
                outs.append(module.interchange(hb[a0:a1], hs[a0:a1], factors[key]))
            return torch.cat(outs).reshape(A * m, self.d)

        return edit

    def _forward(self, fits: list[_Fit], split: str, idx: torch.Tensor):
        """Per-fit mean loss (A,) and per-pair correctness (A, n) for pairs ``idx``: (n,)
        the same pairs for every fit, or (A, n) fit a's own ``idx[a]``."""
        A = len(fits)
        idx = idx.expand(A, -1) if idx.dim() == 1 else idx
        n = idx.shape[1]
        data = [f.splits[split] for f in fits]
        tail = self.tail and torch.is_grad_enabled()  # training only: scoring runs whole rows
        if self.fast:
            logits, targets, row = run_resumed(self, fits, data, idx)
        elif tail:  # every row from the interchange on, packed
            logits, targets, row = run_packed(self, fits, data, idx)
        else:  # rows of similar length together, each group cut after its last scored place
            parts = [run_cut(self, fits, data, idx, group, width)
                     for group, width in _length_groups(data, idx)]
            logits, targets, row = (torch.cat(x) for x in zip(*parts))
        ce = F.cross_entropy(logits, targets, reduction="none")
        fit_of = row // n
        total = torch.zeros(A).index_add(0, fit_of, ce)
        if tail:  # the places before i carry no gradient, so their loss is left out; the
            # mean still divides by all of a pair's scored places, as the whole run's does.
            # Correctness would need them too: a training step does not read it
            count = torch.stack([x.sum() for x in fields(data, idx)("scored")]).float()
            return total / count.clamp(min=1), None
        count = torch.bincount(fit_of, minlength=A).float()
        wrong = torch.bincount(row[logits.argmax(-1) != targets], minlength=A * n)
        correct = (wrong == 0).view(A, n)
        if self.fast:  # add the positions before i, as the plain run scores them
            rows = fields(data, idx)
            total = total + torch.stack([x.sum() for x in rows("prefix_ce")])
            count = count + torch.stack([x.sum() for x in rows("prefix_n")]).float()
            correct = correct & torch.stack(rows("prefix_ok"))
        return total / count.clamp(min=1), correct

    def _chunks(self, fits: list[_Fit]) -> list[list[_Fit]]:
        """At most ``fits_per_forward`` fits a forward, in chunks of equal size (10 fits go
        5 + 5, not 8 + 2: a small chunk pays the recurrence's per-step overhead alone)."""
        if not fits:
            return []
        n_chunks = -(-len(fits) // max(1, self.config.fits_per_forward))
        size = -(-len(fits) // n_chunks)
        return [fits[s : s + size] for s in range(0, len(fits), size)]

    def _score(self, fits: list[_Fit], split: str) -> tuple[np.ndarray, np.ndarray]:
        """Mean loss (A,) and correctness (A, N) of every fit on ``split``."""
        parts = [self._score_chunk(chunk, split) for chunk in self._chunks(fits)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    @torch.no_grad()
    def _score_chunk(self, fits: list[_Fit], split: str) -> tuple[np.ndarray, np.ndarray]:
        N = len(fits[0].splits[split].pos)
        losses, correct = [], []
        chunk = max(1, self.config.eval_chunk)
        for s in range(0, N, chunk):
            idx = torch.arange(s, min(N, s + chunk))
            loss, ok = self._forward(fits, split, idx)
            losses.append(loss * len(idx))
            correct.append(ok)
        return (torch.stack(losses).sum(0) / N).numpy(), torch.cat(correct, 1).numpy()

    # --- training ------------------------------------------------------------------------
    @property
    def continuous(self) -> bool:
        """Whether fits train on the continuous schedule (see ``EngineConfig.schedule``)."""
        if self.config.schedule != "continuous" or not self.fast:
            return False
        # float32 products: only through the fused kernels, whose runs round their row
        # counts up, and where such products are row-exact (machine.fp32_rows_exact)
        return self.bf16 or (self.padded and fp32_rows_exact())

    def run(self, specs: list[FitSpec], *, seed: int = 0,
            on_step: Callable[[int, int, float], None] | None = None) -> list[FitResult]:
        """Train every trainable fit to its stopping rule; score all on valid and test.
        Results come in the order of ``specs``.

        ``on_step(step, active_fits, best_valid_iia_so_far)`` is called every validation.
        With ``workers`` > 1 and more than one fit to train, this process and ``workers``
        − 1 worker processes train the fits side by side (``das_workers``); on the
        continuous schedule each takes the next waiting fit when it has room for one
        (``das_stream``). Each fit trains exactly as it would alone.
        """
        if self.continuous:
            return train_together([(self, specs)], seed=seed, on_step=on_step)[0]
        release_free_memory()  # what earlier stages freed, before training adds its own
        trainable = _trainable(specs)
        workers = min(self.config.workers, len(trainable))
        if workers < 2:
            return self._run(specs, seed, on_step)
        from .das_workers import run_parts, split_parts

        parts = split_parts(len(specs), trainable, workers, self.config.fits_per_forward)
        results = run_parts(self, dataclasses.replace(self.config, workers=workers),
                            [[specs[i] for i in p] for p in parts], seed, on_step,
                            lambda part, report: self._run(part, seed, report))
        by_index = {i: r for p, rs in zip(parts, results) for i, r in zip(p, rs)}
        return [by_index[i] for i in range(len(specs))]

    def make_fits(self, specs: list[FitSpec]) -> list[_Fit]:
        """Fits of ``specs``, their splits prepared; one alignment module per (kind, k),
        its slices seeded by the fits' own seeds. Fits of a module are consecutive."""
        groups: dict[tuple[str, int], list[FitSpec]] = {}
        for s in specs:
            groups.setdefault((s.alignment, s.k), []).append(s)
        fits: list[_Fit] = []
        for (kind, k), members in groups.items():
            module = make_alignment(kind, self.d, k, count=len(members),
                                    seed=[m.seed for m in members])
            fits += [_Fit(m, module, a) for a, m in enumerate(members)]
        for f in fits:
            f.engine = self
            f.splits = {name: self.prepare(getattr(f.spec, name)) for name in ("train", "valid", "test")}
            f.active = f.module.trainable
        return fits

    def train_step(self, fits: list[_Fit], idx: torch.Tensor) -> None:
        """Forward and backward of ``fits`` on pairs ``idx`` ((n,) or (A, n)), at most
        ``fits_per_forward`` fits a forward (each fit's loss is its own: exact)."""
        at = 0
        for chunk in self._chunks(fits):
            self._train_chunk(chunk, idx if idx.dim() == 1 else idx[at : at + len(chunk)])
            at += len(chunk)

    def _train_chunk(self, fits: list[_Fit], idx: torch.Tensor) -> None:
        loss, _ = self._forward(fits, "train", idx)
        loss.sum().backward()

    def _run(self, specs, seed, on_step) -> list[FitResult]:
        """Lockstep: every fit starts at step 1 and steps until the last one stops."""
        cfg = self.config
        fits = self.make_fits(specs)
        trainable = [f for f in fits if f.module.trainable]
        params = [p for m in {id(f.module): f.module for f in trainable}.values() for p in m.parameters()]
        opt = torch.optim.Adam(params, lr=cfg.lr) if params else None
        n_train = len(fits[0].splits["train"].pos)
        rng = torch.Generator().manual_seed(seed)
        order, cursor, step = torch.randperm(n_train, generator=rng), 0, 0
        self._validate(trainable, 0)
        while any(f.active for f in trainable) and step < cfg.max_steps:
            step += 1
            if cursor + cfg.batch_size > n_train:
                order, cursor = torch.randperm(n_train, generator=rng), 0
            idx = order[cursor : cursor + cfg.batch_size]
            cursor += cfg.batch_size
            active = [f for f in trainable if f.active]
            opt.zero_grad(set_to_none=True)
            self.train_step(active, idx)
            adam_step(opt, active)
            if step % cfg.eval_every == 0 or step == cfg.max_steps:
                self._validate(active, step)
                if on_step:
                    on_step(step, sum(f.active for f in trainable),
                            max(f.best_iia for f in trainable))
        for f in trainable:
            if f.active:
                f.active, f.stop_reason, f.steps = False, "max_steps", step
            f.module.load_slice(f.slot, f.best_state)
        valid_loss, valid_ok = self._score(fits, "valid")
        test_loss, test_ok = self._score(fits, "test")
        results = [self.result(f, valid_loss[a], valid_ok[a], test_ok[a])
                   for a, f in enumerate(fits)]
        position = {id(spec): i for i, spec in enumerate(specs)}  # fits are grouped by module
        return [r for _, r in sorted(zip((position[id(f.spec)] for f in fits), results),
                                     key=lambda pair: pair[0])]

    @staticmethod
    def result(f: _Fit, valid_loss: float, valid_ok: np.ndarray, test_ok: np.ndarray) -> FitResult:
        """A fit's result from its best alignment's scores."""
        return FitResult(
            key=f.spec.key, alignment=f.spec.alignment, k=f.module.k,
            valid_iia=float(valid_ok.mean()), test_iia=float(test_ok.mean()),
            valid_loss=float(valid_loss), steps=f.steps, best_step=f.best_step,
            stop_reason=f.stop_reason or "untrained", test_correct=test_ok,
            state=f.best_state if f.module.trainable else {})

    def _validate(self, fits: list[_Fit], step: int) -> None:
        live = [f for f in fits if f.active]
        if not live:
            return
        loss, ok = self._score(live, "valid")
        release_free_memory()  # 100 steps' freed autograd buffers back to the OS (memory.py)
        for a, f in enumerate(live):
            self.judge(f, float(ok[a].mean()), float(loss[a]), step)

    def judge(self, f: _Fit, iia: float, loss: float, step: int) -> None:
        """Record a validation of fit ``f`` at its step ``step``; apply the stopping rules."""
        cfg = self.config
        f.valid_loss, f.steps = loss, step
        if iia > f.best_iia:
            f.best_iia, f.best_step, f.best_state = iia, step, f.module.slice_state(f.slot)
        if loss < f.loss_best - cfg.min_delta:
            f.loss_best, f.since_loss_best = loss, 0
        else:
            f.since_loss_best += 1
        if iia >= cfg.stop_iia:
            f.stop_reason = "reached_iia"
        elif f.since_loss_best >= cfg.patience and f.decays < cfg.lr_decays:
            # a plateau first lowers the fit's learning rate (up to lr_decays times)
            f.decays, f.lr_scale, f.since_loss_best = f.decays + 1, f.lr_scale * cfg.lr_decay, 0
        elif f.since_loss_best >= cfg.patience:
            f.stop_reason = "plateau"
        elif step >= cfg.fail_after and iia < cfg.fail_iia:
            f.stop_reason = "failing"
        if f.stop_reason:
            f.active = False
