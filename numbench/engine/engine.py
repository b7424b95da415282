"""The Engine: many DAS fits through one model forward (PROTOCOL §5; docs/engine.md).

The engine knows tensors, sites and alignments — nothing of tasks or files — on whatever
device the model is on. A *fit* is one alignment (kind, k) trained on one pair set at one
site. Fits that share a model, site and mode train together: every step each fit takes
its batch of pair indices and interchanges its own rows, and all rows go through the
frozen model in a single forward. Each fit's parameters see only its own loss (their
slices are independent and Adam is elementwise), so a fit trains as it would alone.

What does not depend on the alignment is computed once (``prepare``). How a step's rows
go through the model is a path (``paths``), chosen here once. When fits start and stop,
and in which process, is the schedule's (``schedule``): the engine gives it one training
step (``train_step``), scoring (``score``), the stopping rules (``judge``) and a fit's
result (``result``).

Stopping (per fit, checked at every validation, every ``eval_every`` steps): valid IIA ≥
``stop_iia``; valid loss not improved by ``min_delta`` in ``patience`` validations (the
first ``lr_decays`` such plateaus multiply the fit's learning rate by ``lr_decay``
instead); valid IIA < ``fail_iia`` after ``fail_after`` steps; ``max_steps``. The alignment
with the best valid IIA is kept; its test IIA is reported.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..alignments import ALIGNMENTS, Alignment, has_fit_step, make_alignment
from ..machine import fp32_rows_exact
from ..memory import release_free_memory
from ..models.contract import NumbenchModel, Resumable
from ..models.speed import TailRunnable, bf16_training, fused_training
from .config import EngineConfig, FitResult, FitSpec, PairTensors
from .paths import Cut, Packed, Path, Resumed, fields, take
from .prepare import Preparer, Split


class Fit:
    """One fit in training: its spec, its slice of an alignment module, its prepared
    splits and where its stopping rules stand."""

    def __init__(self, spec: FitSpec, module: Alignment, slot: int, engine: Engine):
        self.spec, self.module, self.slot, self.engine = spec, module, slot, engine
        self.splits: dict[str, Split] = {}
        self.active = True
        self.best_iia, self.best_step = -1.0, 0
        self.best_state = module.slice_state(slot)
        self.loss_best, self.since_loss_best = float("inf"), 0
        self.valid_loss, self.steps, self.stop_reason = float("nan"), 0, ""
        self.t = 0  # steps trained (continuous schedule: each fit counts its own)
        self.lr_scale, self.decays = 1.0, 0  # this fit's learning rate is lr · lr_scale
        self.max_steps = spec.max_steps or engine.config.max_steps
        self.patience = spec.patience or engine.config.patience


def trainable(specs: list[FitSpec]) -> list[int]:
    """Indices of the specs whose alignment trains (not ``full`` or ``random``)."""
    return [i for i, s in enumerate(specs) if getattr(ALIGNMENTS.get(s.alignment), "trainable", False)]


class Engine:
    """Trains and scores groups of fits that share (model, site, mode), on the model's
    device. ``config``: the budget and speed settings (``protocol.engine_config`` gives
    the protocol's); ``reference``: the tests' oracle, which trains every step through
    autograd and runs a causal model's whole forward in float32 (no fused kernels, no
    tails) — the same alignments up to float rounding, slower."""

    def __init__(self, model: NumbenchModel, site: str, mode: str = "single",
                 config: EngineConfig | None = None, *, reference: bool = False):
        if config is None:
            raise TypeError("an Engine needs a config: a budget and speed settings "
                            "(numbench.protocol.engine_config() gives the protocol's)")
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self.model, self.site, self.mode, self.config = model, site, mode, config
        self.d = model.sites[site]
        self.device = model.device
        cpu = self.device.type == "cpu"
        if config.workers > 1 and not cpu:
            raise ValueError(f"workers > 1 is for CPUs; on {self.device} fits share one process")
        # a restartable recurrent site: every step runs only the suffix after i
        self.fast = (mode == "single" and isinstance(model, Resumable)
                     and site in model.state_sites)
        bf16 = config.train_precision == "bf16" and bf16_training(model)
        causal = not self.fast and isinstance(model, TailRunnable) and not reference
        tail = causal and mode == "single"
        # a restarted recurrence's training step through the model's hand-written forward
        # and backward (models/fused.py), a CPU kernel, where it has them
        fused = self.fast and cpu and not reference and fused_training(model)
        # float32 training through the fused kernels: every packed run (training and
        # scoring) rounds its row counts up, so a fit computes as it would alone
        self.padded = fused and config.train_precision == "fp32"
        self.bf16 = self.fast and bf16
        if self.fast:
            self.train_path: Path = Resumed(model, site, bf16=bf16, fused=fused, padded=self.padded)
            self.score_path: Path = Resumed(model, site, padded=self.padded)
        else:
            self.train_path = (Packed(model, site, bf16=bf16) if tail
                               else Cut(model, site, mode, bf16=causal and bf16))
            self.score_path = Cut(model, site, mode)
        self._prepared = Preparer(model, site, mode, self.fast, heads=tail, device=self.device)

    def prepare(self, pairs: PairTensors) -> Split:
        return self._prepared.prepare(pairs)

    @property
    def continuous(self) -> bool:
        """Whether fits may train on the continuous schedule (``EngineConfig.schedule``):
        it needs a fit's arithmetic not to depend on which fits share its forward. That
        holds on a CPU for bf16 training products, and for float32 ones through the fused
        kernels, whose runs round their row counts up, where such products are row-exact
        (machine.fp32_rows_exact). Elsewhere fits step in lockstep."""
        if self.config.schedule != "continuous" or not self.fast or self.device.type != "cpu":
            return False
        return self.bf16 or (self.padded and fp32_rows_exact())

    # --- fits ----------------------------------------------------------------------------
    def make_fits(self, specs: list[FitSpec]) -> list[Fit]:
        """Fits of ``specs``, their splits prepared; one alignment module per (kind, k) on
        the device, its slices seeded by the fits' own seeds, and a fitted method's slices
        set by its fit step (:meth:`fit_step`). Fits of a module are consecutive."""
        groups: dict[tuple[str, int], list[FitSpec]] = {}
        for s in specs:
            groups.setdefault((s.alignment, s.k), []).append(s)
        fits: list[Fit] = []
        for (kind, k), members in groups.items():
            module = make_alignment(kind, self.d, k, count=len(members),
                                    seed=[m.seed for m in members]).to(self.device)
            fits += [Fit(m, module, a, self) for a, m in enumerate(members)]
        for f in fits:
            f.splits = {name: self.prepare(getattr(f.spec, name)) for name in ("train", "valid", "test")}
            f.active = f.module.trainable
            if has_fit_step(type(f.module)):
                self.fit_step(f)
        return fits

    @torch.no_grad()
    def fit_step(self, f: Fit) -> None:
        """A fitted method's fit step (``Alignment.fit``): its slice set from the training
        pairs' site activations — the base's at i, the source's at j (in prefix mode, at
        i = j) — and the values the pairs write, before any training or scoring."""
        train = f.splits["train"]
        h_src = train.h_src
        if h_src.dim() == 3:  # prefix mode: the source's whole run, (N, Ts, d)
            h_src = h_src[torch.arange(len(train.pos), device=h_src.device), train.pos]
        values = self._prepared.on_device(f.spec.train).values
        f.module.fit(f.slot, train.h_base, h_src, values)
        f.best_state = f.module.slice_state(f.slot)  # a trained method starts from the fit

    def edit(self, fits: list[Fit], h_src: list[torch.Tensor], n: int):
        """The edit of ``n`` pairs of every fit in one forward, rows sorted fit by fit
        (row ``a·n + r`` is pair r of fit a); ``h_src[a]`` is fit a's (n, d) or (n, Ts, d)."""
        A = len(fits)
        segments: dict[int, tuple[Alignment, list[int]]] = {}
        for a, f in enumerate(fits):  # fits of one module, with its factors computed once
            segments.setdefault(id(f.module), (f.module, []))[1].append(a)
        # only the slices of the fits here: a stopped fit's slice costs nothing
        factors = {key: module.factors_of([fits[a].slot for a in members])
                   for key, (module, members) in segments.items()}
        first_row = torch.arange(A, device=self.device)[:, None] * n

        def edit(h: torch.Tensor, rows: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            """Each fit edits the same m (pair, t) places."""
            m = h.shape[0] // A
            hb = h.view(A, m, self.d)
            r = rows.view(A, m) - first_row  # pair index in the batch
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

    def _forward(self, fits: list[Fit], split: str, idx: torch.Tensor, path: Path):
        """Per-fit mean loss (A,) and per-pair correctness (A, n) for pairs ``idx``: (n,)
        the same pairs for every fit, or (A, n) fit a's own ``idx[a]``."""
        A = len(fits)
        idx = idx.to(self.device)
        idx = idx.expand(A, -1) if idx.dim() == 1 else idx
        n = idx.shape[1]
        data = [f.splits[split] for f in fits]
        logits, targets, row = path(lambda h_src, m: self.edit(fits, h_src, m), data, idx)
        ce = F.cross_entropy(logits, targets, reduction="none")
        fit_of = row // n
        total = torch.zeros(A, device=self.device).index_add(0, fit_of, ce)
        if path.loss_only:  # the places before i carry no gradient, so their loss is left
            # out; the mean still divides by all of a pair's scored places, as the whole
            # run's does. Correctness would need them too: a training step does not read it
            count = torch.stack([x.sum() for x in fields(data, idx)("scored")]).float()
            return total / count.clamp(min=1), None
        count = torch.bincount(fit_of, minlength=A).float()
        wrong = torch.bincount(row[logits.argmax(-1) != targets], minlength=A * n)
        correct = (wrong == 0).view(A, n)
        if path.prefix_cached:  # add the positions before i, as the plain run scores them
            rows = fields(data, idx)
            total = total + torch.stack([x.sum() for x in rows("prefix_ce")])
            count = count + torch.stack([x.sum() for x in rows("prefix_n")]).float()
            correct = correct & torch.stack(rows("prefix_ok"))
        return total / count.clamp(min=1), correct

    def chunks(self, fits: list[Fit]) -> list[list[Fit]]:
        """At most ``fits_per_forward`` fits a forward, in chunks of equal size (10 fits go
        5 + 5, not 8 + 2: a small chunk pays the recurrence's per-step overhead alone)."""
        if not fits:
            return []
        n_chunks = -(-len(fits) // max(1, self.config.fits_per_forward))
        size = -(-len(fits) // n_chunks)
        return [fits[s : s + size] for s in range(0, len(fits), size)]

    # --- training and scoring ------------------------------------------------------------
    def train_step(self, fits: list[Fit], idx: torch.Tensor) -> None:
        """Forward and backward of ``fits`` on pairs ``idx`` ((n,) or (A, n)), at most
        ``fits_per_forward`` fits a forward (each fit's loss is its own: exact)."""
        at = 0
        for chunk in self.chunks(fits):
            part = idx if idx.dim() == 1 else idx[at : at + len(chunk)]
            loss, _ = self._forward(chunk, "train", part, self.train_path)
            loss.sum().backward()
            at += len(chunk)

    def score(self, fits: list[Fit], split: str) -> tuple[np.ndarray, np.ndarray]:
        """Mean loss (A,) and correctness (A, N) of every fit on ``split``, in float32."""
        parts = [self._score_chunk(chunk, split) for chunk in self.chunks(fits)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    @torch.no_grad()
    def _score_chunk(self, fits: list[Fit], split: str) -> tuple[np.ndarray, np.ndarray]:
        N = len(fits[0].splits[split].pos)
        losses, correct = [], []
        chunk = max(1, self.config.eval_chunk)
        for s in range(0, N, chunk):
            idx = torch.arange(s, min(N, s + chunk), device=self.device)
            loss, ok = self._forward(fits, split, idx, self.score_path)
            losses.append(loss * len(idx))
            correct.append(ok)
        return ((torch.stack(losses).sum(0) / N).cpu().numpy(),
                torch.cat(correct, 1).cpu().numpy())

    def validate(self, fits: list[Fit], step: int) -> None:
        """Score the active ``fits`` on valid together at ``step`` and judge them."""
        live = [f for f in fits if f.active]
        if not live:
            return
        loss, ok = self.score(live, "valid")
        release_free_memory()  # freed autograd buffers back to the OS (memory.py)
        for a, f in enumerate(live):
            self.judge(f, float(ok[a].mean()), float(loss[a]), step)

    def judge(self, f: Fit, iia: float, loss: float, step: int) -> None:
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
        elif f.since_loss_best >= f.patience and f.decays < cfg.lr_decays:
            # a plateau first lowers the fit's learning rate (up to lr_decays times)
            f.decays, f.lr_scale, f.since_loss_best = f.decays + 1, f.lr_scale * cfg.lr_decay, 0
        elif f.since_loss_best >= f.patience:
            f.stop_reason = "plateau"
        elif step >= cfg.fail_after and iia < cfg.fail_iia:
            f.stop_reason = "failing"
        if not f.stop_reason and step >= f.max_steps:  # the budget's, or the fit's own
            f.stop_reason = "max_steps"
        if f.stop_reason:
            f.active = False

    @staticmethod
    def result(f: Fit, valid_loss: float, valid_ok: np.ndarray, test_ok: np.ndarray) -> FitResult:
        """A fit's result from its best alignment's scores (its state on the CPU)."""
        state = {k: v.cpu() for k, v in f.best_state.items()} if f.module.trainable else {}
        return FitResult(
            key=f.spec.key, alignment=f.spec.alignment, k=f.module.k,
            valid_iia=float(valid_ok.mean()), test_iia=float(test_ok.mean()),
            valid_loss=float(valid_loss), steps=f.steps, best_step=f.best_step,
            stop_reason=f.stop_reason or "untrained", test_correct=test_ok, state=state)
