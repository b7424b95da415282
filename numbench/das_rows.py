"""How the engine runs a step's rows through the model: the restartable path
(``run_resumed``), the generic one (``run_cut``) and a ``TailRunnable`` model's training
path (``run_packed``); with their helpers: which tokens a pair needs, rows of
similar length grouped, rows cut or padded to one width, and an edit kept in float32.

Each path returns the logits of the scored places, their targets, and each one's row in
the A·n layout of the step's pair indices (row ``a·n + r`` is fit a's pair r)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from .das_prepare import Split
from .models.packing import Packing

if TYPE_CHECKING:
    from .das import Engine


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
    return torch.stack([torch.maximum((take(dat.scored, i) * torch.arange(1, dat.scored.shape[1] + 1)).amax(1),
                                      take(dat.pos, i) + 1) for dat, i in zip(data, idx)])


def _length_groups(data: list[Split], idx: torch.Tensor, groups: int = 4):
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


def _in_float32(edit):
    """``edit`` run outside autocast: an alignment's products stay float32 in a bf16 forward."""
    def run(h: torch.Tensor, rows: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", enabled=False):
            return edit(h.float(), rows, t)
    return run


def run_resumed(engine: Engine, fits: list, data: list[Split], idx: torch.Tensor):
    """Fast path: edit the cached state at i, run the cached suffixes only."""
    A, n = idx.shape
    rows = fields(data, idx)
    edit = engine.edit(fits, rows("h_src"), n)
    h = torch.cat(rows("h_base"))  # (A n, d)
    new = edit(h, torch.arange(A * n), torch.cat(rows("pos")))
    W = max(dat.targets.shape[1] for dat in data)
    fill = lambda x, v: x if x.shape[1] == W else F.pad(x, (0, W - x.shape[1]), value=v)
    pad = lambda xs, v: torch.cat([fill(x, v) for x in xs])
    select = pad(rows("scored"), False)
    suffix = pad(rows("ids"), 0)[:, : W - 1]
    # longest rows first, so the recurrence can drop rows as they end
    lengths = (select * torch.arange(1, W + 1)).amax(dim=1)
    perm = torch.argsort(lengths, descending=True, stable=True)
    select, targets = take(select, perm), take(pad(rows("targets"), 0), perm)
    # a training step may run the restarted recurrence's products in bf16 (the state
    # stays float32: see docs/contract.md); scoring never does
    training = torch.is_grad_enabled()
    low = training and engine.bf16
    fused = training and engine.fused
    extra = ({"fused": True} if fused else {}) | ({"padded": True} if engine.padded else {})
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=low):
        logits = engine.model.resume(engine.site, take(new, perm), take(suffix, perm), select,
                                   take(lengths, perm).tolist(), **extra)
    return logits.float(), targets[select], perm[select.nonzero(as_tuple=True)[0]]


def run_cut(engine: Engine, fits: list, data: list[Split], idx: torch.Tensor,
            group: torch.Tensor, width: int):
    """Generic path for places ``group`` of ``idx`` (A, n): the model's own forward on
    the counterfactuals' first ``width`` tokens (a causal model's later tokens cannot
    change them). Returns logits, targets and rows in the A·n layout of ``idx``."""
    n, g = idx.shape[1], len(group)
    subs = idx[:, group]
    rows = fields(data, subs)
    edit = engine.edit(fits, rows("h_src"), g)
    cut = lambda name, v: _cut(rows(name), width, v)
    select = cut("scored", False)
    low = engine.low_causal and torch.is_grad_enabled()  # a training step only
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=low):
        logits = engine.model.run(cut("ids", 0), engine.site, torch.cat(rows("pos")),
                                _in_float32(edit) if low else edit, engine.mode)[select]
    targets = cut("targets", 0)[select]
    local = select.nonzero(as_tuple=True)[0]  # which of the A·g rows
    return logits.float(), targets, _step_rows(local, group, n)


def run_packed(engine: Engine, fits: list, data: list[Split], idx: torch.Tensor):
    """Training path of a ``TailRunnable`` model, its rows packed: each row's logits
    from its interchange position on, as far as it needs (to its last scored place, no
    further than an edit at the site reaches), and only at its scored places. Returns
    logits, targets and rows in the A·n layout of ``idx``, as ``run_cut``."""
    A, n = idx.shape
    rows = fields(data, idx)
    pos = torch.cat(rows("pos"))
    new = engine.edit(fits, rows("h_src"), n)(torch.cat(rows("h_base")), torch.arange(A * n), pos)
    need = _needs(data, idx).flatten()
    lengths = need - pos
    reach = engine.model.tail_reach(engine.site)
    if reach is not None:
        lengths = lengths.clamp(max=reach)
    width = int(need.max())
    cut = lambda name, v: _cut(rows(name), width, v)
    packing = Packing.of(lengths)
    places = pos[packing.rows] + packing.cols
    select = cut("scored", False)[packing.rows, places]
    cached = [(d.heads() if d.heads else None, i) for d, i in zip(data, idx)]
    cached = cached if all(c is not None for c, _ in cached) else None
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=engine.low_causal):
        logits = engine.model.run_tail_packed(cut("ids", 0), engine.site, pos, new, lengths,
                                              select, cached=cached)
    targets = cut("targets", 0)[packing.rows, places][select]
    return logits.float(), targets, packing.rows[select]
