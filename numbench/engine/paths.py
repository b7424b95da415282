"""How a step's rows go through the model: one object per path, chosen once per engine
(``Engine.__init__``), one for training steps and one for validation and scoring.

* :class:`Resumed` — a restartable recurrent site (``Resumable``): the cached state at
  the interchange is edited and only the cached suffix after it runs;
* :class:`Packed` — a causal model's training step (``TailRunnable``): every row from its
  interchange on, rows packed, the places before it from the model's head cache;
* :class:`Cut` — any model: its own forward over the counterfactuals, rows of similar
  length together, each group cut after its last scored place.

A path is called with ``make_edit(h_src, n)`` (the edit of the fits in this forward, as
``Engine.edit`` builds it), each fit's prepared split and the pair indices ``idx`` (A, n),
and returns the logits of the scored places, their targets, and each one's row in the A·n
layout of ``idx`` (row ``a·n + r`` is fit a's pair r). ``loss_only``: the path leaves out
places that carry no gradient, so it gives a training loss, not correctness;
``prefix_cached``: the scored places before the interchange are in the prepared split.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..models.contract import NumbenchModel
from ..models.packing import Packing
from .prepare import Split

#: make_edit(h_src (one per fit), n) -> edit(h, rows, t)
MakeEdit = Callable[[list, int], Callable]


def take(x: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
    """Rows ``i`` of ``x``: ``x[i]`` for a 1-d index, through ``index_select``, which
    copies rows several times faster than advanced indexing on CPU (same values)."""
    return x.index_select(0, i)


def fields(data: list[Split], idx: torch.Tensor):
    """``rows(name)``: field ``name`` of each fit's pairs in ``idx`` (A, n), a list of A."""
    return lambda name: [take(getattr(dat, name), i) for dat, i in zip(data, idx)]


def _step_rows(local: torch.Tensor, group: torch.Tensor, n: int) -> torch.Tensor:
    """Rows ``local`` of a forward over places ``group`` (A·g rows, fit by fit) in the A·n
    layout of the step's ``idx``."""
    g = len(group)
    return (local // g) * n + group[local % g]


def _needs(data: list[Split], idx: torch.Tensor) -> torch.Tensor:
    """(A, n): one past pair ``idx[a, r]``'s last scored place or its interchange, whichever
    is later; a causal model's forward of the pair needs no token after it."""
    def need(dat: Split, i: torch.Tensor) -> torch.Tensor:
        width = torch.arange(1, dat.scored.shape[1] + 1, device=i.device)
        return torch.maximum((take(dat.scored, i) * width).amax(1), take(dat.pos, i) + 1)

    return torch.stack([need(dat, i) for dat, i in zip(data, idx)])


def length_groups(data: list[Split], idx: torch.Tensor, groups: int = 4):
    """Batch places of ``idx`` (A, n) — fit a's pair ``idx[a, r]`` at place r — in up to
    ``groups`` groups of similar length, as (places, width): a place's length is the
    longest of its fits' pairs' (``_needs``).
    Forwards then skip the padding of short rows, which is most of the work on tasks whose
    sequences vary in length."""
    need = _needs(data, idx).amax(0)
    order = torch.argsort(need, stable=True)
    return [(g, int(need[g].max())) for g in order.tensor_split(min(groups, idx.shape[1]))
            if len(g)]


def _cut(xs: list[torch.Tensor], width: int, value) -> torch.Tensor:
    """Rows of ``xs`` (each (n_a, T_a)) stacked, cut or padded with ``value`` to ``width``."""
    return torch.cat([F.pad(x, (0, max(0, width - x.shape[1])), value=value)[:, :width] for x in xs])


def _in_float32(edit, device_type: str):
    """``edit`` run outside autocast: an alignment's products stay float32 in a bf16 forward."""
    def run(h: torch.Tensor, rows: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type, enabled=False):
            return edit(h.float(), rows, t)
    return run


class Path:
    """A way through the model (see the module's docstring)."""

    loss_only = False
    prefix_cached = False

    def __init__(self, model: NumbenchModel, site: str, mode: str = "single", *,
                 bf16: bool = False):
        self.model, self.site, self.mode, self.bf16 = model, site, mode, bf16
        self.device_type = model.device.type

    def autocast(self):
        """bf16 products where this path is asked for them (a training step only)."""
        return torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.bf16)

    def __call__(self, make_edit: MakeEdit, data: list[Split], idx: torch.Tensor):
        raise NotImplementedError


class Resumed(Path):
    """Edit the cached state at i, run the cached suffixes only. ``fused``: the model's
    hand-written training step (``FusedResume``); ``padded``: its runs round their row
    counts up, so a fit computes as it would alone (float32 fused runs, docs/engine.md)."""

    prefix_cached = True

    def __init__(self, model, site, *, bf16=False, fused=False, padded=False):
        super().__init__(model, site, "single", bf16=bf16)
        self.extra = ({"fused": True} if fused else {}) | ({"padded": True} if padded else {})

    def __call__(self, make_edit, data, idx):
        A, n = idx.shape
        rows = fields(data, idx)
        edit = make_edit(rows("h_src"), n)
        h = torch.cat(rows("h_base"))  # (A n, d)
        new = edit(h, torch.arange(A * n, device=idx.device), torch.cat(rows("pos")))
        W = max(dat.targets.shape[1] for dat in data)
        fill = lambda x, v: x if x.shape[1] == W else F.pad(x, (0, W - x.shape[1]), value=v)
        pad = lambda xs, v: torch.cat([fill(x, v) for x in xs])
        select = pad(rows("scored"), False)
        suffix = pad(rows("ids"), 0)[:, : W - 1]
        # longest rows first, so the recurrence can drop rows as they end
        lengths = (select * torch.arange(1, W + 1, device=idx.device)).amax(dim=1)
        perm = torch.argsort(lengths, descending=True, stable=True)
        select, targets = take(select, perm), take(pad(rows("targets"), 0), perm)
        # bf16 products keep the state float32 (models/speed.py); scoring never runs them
        with self.autocast():
            logits = self.model.resume(self.site, take(new, perm), take(suffix, perm), select,
                                       take(lengths, perm).tolist(), **self.extra)
        return logits.float(), targets[select], perm[select.nonzero(as_tuple=True)[0]]


class Cut(Path):
    """The model's own forward on the counterfactuals, places of similar length together,
    each group's rows cut after the group's last needed token (a causal model's later
    tokens cannot change them)."""

    def __call__(self, make_edit, data, idx):
        parts = [self._group(make_edit, data, idx, group, width)
                 for group, width in length_groups(data, idx)]
        return tuple(torch.cat(x) for x in zip(*parts))

    def _group(self, make_edit, data, idx, group: torch.Tensor, width: int):
        n, g = idx.shape[1], len(group)
        subs = idx[:, group]
        rows = fields(data, subs)
        edit = make_edit(rows("h_src"), g)
        cut = lambda name, v: _cut(rows(name), width, v)
        select = cut("scored", False)
        with self.autocast():
            logits = self.model.run(cut("ids", 0), self.site, torch.cat(rows("pos")),
                                    _in_float32(edit, self.device_type) if self.bf16 else edit,
                                    self.mode)[select]
        targets = cut("targets", 0)[select]
        local = select.nonzero(as_tuple=True)[0]  # which of the A·g rows
        return logits.float(), targets, _step_rows(local, group, n)


class Packed(Path):
    """A ``TailRunnable`` model's training step, rows packed: each row's logits from its
    interchange position on, as far as it needs (to its last scored place, no further than
    an edit at the site reaches), and only at its scored places."""

    loss_only = True

    def __call__(self, make_edit, data, idx):
        A, n = idx.shape
        rows = fields(data, idx)
        pos = torch.cat(rows("pos"))
        new = make_edit(rows("h_src"), n)(torch.cat(rows("h_base")),
                                          torch.arange(A * n, device=idx.device), pos)
        need = _needs(data, idx).flatten()
        lengths = need - pos
        reach = self.model.tail_reach(self.site)
        if reach is not None:
            lengths = lengths.clamp(max=reach)
        width = int(need.max())
        cut = lambda name, v: _cut(rows(name), width, v)
        packing = Packing.of(lengths)
        places = pos[packing.rows] + packing.cols
        select = cut("scored", False)[packing.rows, places]
        cached = [(d.heads() if d.heads else None, i) for d, i in zip(data, idx)]
        cached = cached if all(c is not None for c, _ in cached) else None
        with self.autocast():
            logits = self.model.run_tail_packed(cut("ids", 0), self.site, pos, new, lengths,
                                                select, cached=cached)
        targets = cut("targets", 0)[packing.rows, places][select]
        return logits.float(), targets, packing.rows[select]
