"""What the DAS engine computes once per pair set, not every step (docs/engine.md).

For every fit's split: the site activations at the interchange positions (base at i,
source at j) and, for a restartable recurrent site (the engine's fast path), the
counterfactual suffix after i with its targets, and the loss and correctness of the scored
places before i, which no interchange at i can change. Fits share pair sets, so a
:class:`Preparer` computes each (ids, positions) once, on the model's device.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import fields
from typing import Callable

import torch
import torch.nn.functional as F

from ..models.contract import NumbenchModel, left_align
from .config import PairTensors


@dataclass
class Split:
    """One fit's split, prepared: cached activations and (fast path) aligned suffixes."""

    h_base: torch.Tensor  # (N, d) at i
    h_src: torch.Tensor  # (N, d) at j, or (N, Ts, d) for prefix mode
    pos: torch.Tensor  # (N,)
    ids: torch.Tensor  # fast path: suffix (N, S); else counterfactual (N, T)
    targets: torch.Tensor  # (N, W) fast path from i, else (N, T)
    scored: torch.Tensor  # same shape as targets, bool
    # fast path: scored positions before i, which no interchange at i can change
    prefix_ce: torch.Tensor | None = None  # (N,) summed cross-entropy there
    prefix_n: torch.Tensor | None = None  # (N,) how many
    prefix_ok: torch.Tensor | None = None  # (N,) all right there
    # a causal model's head_cache of the rows before i (a training step's tail reads it), built when
    # first asked for (training splits only) and shared by pair sets with the same bases
    heads: Callable[[], object] | None = None


def targets_of(ids: torch.Tensor) -> torch.Tensor:
    return torch.cat([ids[:, 1:], ids[:, -1:]], dim=1)


def by_position(pos: torch.Tensor, chunk: int = 2000):
    """Rows in chunks of similar ``pos`` (sorted), each with width max(pos) + 1: preparing a
    causal model's activations at pos, or its predictions before pos, then skips the
    tokens after. Chunks follow the sort, so each row's result is computed the same way."""
    order = torch.argsort(pos, stable=True)
    for s in range(0, len(pos), chunk):
        rows = order[s : s + chunk]
        yield rows, int(pos[rows].max()) + 1


def _seen(store: list, ids: torch.Tensor, pos: torch.Tensor | None):
    """What ``store`` (pairs ((ids, pos), value)) holds for these very tensors, or None."""
    return next((value for (a, b), value in store if a is ids and b is pos), None)


class Preparer:
    """Prepared splits of one (model, site, mode) on ``device``; ``fast``: the
    restartable path."""

    def __init__(self, model: NumbenchModel, site: str, mode: str, fast: bool, heads: bool = False,
                 device: torch.device = torch.device("cpu")):
        self.model, self.site, self.mode, self.fast, self.heads = model, site, mode, fast, heads
        self.d, self.device = model.sites[site], device
        self._acts: list[tuple[tuple, torch.Tensor]] = []
        self._before: list = []
        self._heads: list = []
        self._moved: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def on_device(self, pairs: PairTensors) -> PairTensors:
        """``pairs`` with its tensors on the device, each tensor moved once (pair sets
        share tensors, and the caches below know a pair set by its tensors' identity)."""
        def move(x: torch.Tensor | None) -> torch.Tensor | None:
            if x is None or x.device == self.device:
                return x
            if id(x) not in self._moved:
                self._moved[id(x)] = (x, x.to(self.device))  # x kept: its id is not reused
            return self._moved[id(x)][1]

        return PairTensors(*(move(getattr(pairs, f.name)) for f in fields(pairs)))

    @torch.no_grad()
    def activations(self, ids: torch.Tensor, pos: torch.Tensor | None) -> torch.Tensor:
        """Site activations of ``ids`` at ``pos`` (N, d), or everywhere (N, T, d) if None.
        Fits share pair sets, so each (ids, pos) is computed once."""
        acts = _seen(self._acts, ids, pos)
        if acts is not None:
            return acts
        if pos is None:
            acts = torch.cat([self.model.activations(ids[s : s + 2000], self.site)
                              for s in range(0, len(ids), 2000)])
        else:  # a causal model's site at pos needs only the tokens up to pos
            acts = ids.new_empty(len(ids), self.d, dtype=torch.float32)
            for rows, width in by_position(pos):
                a = self.model.activations(ids[rows, :width], self.site)
                acts[rows] = a[torch.arange(len(rows), device=a.device), pos[rows]]
        self._acts.append(((ids, pos), acts))
        return acts

    def prepare(self, pairs: PairTensors) -> Split:
        pairs = self.on_device(pairs)
        pos = pairs.base_pos
        h_base = self.activations(pairs.base_ids, pos)
        h_src = self.activations(pairs.src_ids, pairs.src_pos if self.mode == "single" else None)
        targets = targets_of(pairs.cf_ids)
        if not self.fast:
            heads = (lambda: self._head_cache(pairs)) if self.heads else None
            return Split(h_base, h_src, pos, pairs.cf_ids, targets, pairs.cf_scored, heads=heads)
        # positions i .. i+W-1 hold every scored prediction after the interchange
        T = pairs.cf_ids.shape[1]
        at = lambda n: torch.arange(n, device=pos.device)
        last = torch.where(pairs.cf_scored, at(T), -1).max(dim=1).values
        W = int((last - pos).max()) + 1
        idx = (pos[:, None] + at(W)[None, :]).clamp(max=T - 1)
        inside = pos[:, None] + at(W)[None, :] < T
        scored = pairs.cf_scored.gather(1, idx) & inside
        suffix = left_align(pairs.cf_ids, pos + 1)[:, : W - 1]
        ce, n, ok = self._before_i(pairs)
        return Split(h_base, h_src, pos, suffix, targets.gather(1, idx), scored, ce, n, ok)

    @torch.no_grad()
    def _head_cache(self, pairs: PairTensors):
        """The model's ``head_cache`` of the counterfactuals before i. They equal the bases
        there (PROTOCOL §4), so pair sets that share bases share one cache."""
        pos = pairs.base_pos
        cache = _seen(self._heads, pairs.cf_ids, pos)
        if cache is not None:
            return cache
        P = int(pos.max())
        before = torch.arange(P, device=pos.device)[None, :] < pos[:, None]
        same = pairs.cf_ids.shape[1] >= P and bool(
            ((pairs.cf_ids[:, :P] == pairs.base_ids[:, :P]) | ~before).all())
        ids = pairs.base_ids if same else pairs.cf_ids
        cache = _seen(self._heads, ids, pos)
        if cache is None:
            cache = self.model.head_cache(ids, self.site, pos)
            self._heads.append(((ids, pos), cache))
        self._heads.append(((pairs.cf_ids, pos), cache))
        return cache

    @torch.no_grad()
    def _before_i(self, pairs: PairTensors):
        """Loss sum, count and all-right of the scored predictions before i. They depend
        only on the base up to i (the counterfactual's prefix), so fits share them."""
        stats = _seen(self._before, pairs.base_ids, pairs.base_pos)
        if stats is not None:
            return stats
        N, T = pairs.cf_ids.shape
        device = pairs.cf_ids.device
        before = pairs.cf_scored & (torch.arange(T, device=device)[None, :] < pairs.base_pos[:, None])
        targets = targets_of(pairs.cf_ids)
        ce, ok = torch.zeros(N, device=device), torch.ones(N, dtype=torch.bool, device=device)
        # tokens before i only; 500 rows a run keeps the readout's (rows, T, hidden) small
        for rows, width in by_position(pairs.base_pos, chunk=500):
            m = before[rows, :width]
            r = m.nonzero(as_tuple=True)[0]
            lg, tg = self.model.run(pairs.cf_ids[rows, :width])[m], targets[rows, :width][m]
            ce[rows] = torch.zeros(len(m), device=device).index_add(
                0, r, F.cross_entropy(lg, tg, reduction="none"))
            ok[rows] = torch.bincount(r[lg.argmax(-1) != tg], minlength=len(m)) == 0
        stats = (ce, before.sum(1), ok)
        self._before.append(((pairs.base_ids, pairs.base_pos), stats))
        return stats
