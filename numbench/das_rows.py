"""How the engine's generic paths lay out a step's rows: which tokens a pair needs, rows of
similar length grouped, rows cut or padded to one width, and an edit kept in float32."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .das_prepare import Split


def take(x: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
    """Rows ``i`` of ``x``: ``x[i]`` for a 1-d index, through ``index_select``, which
    copies rows several times faster than advanced indexing on CPU (same values)."""
    return x.index_select(0, i)


def _needs(data: list[Split], idx: torch.Tensor) -> torch.Tensor:
    """(A, n): one past pair ``idx[a, r]``'s last scored place or its interchange, whichever
    is later; a causal model's forward of the pair needs no token after it."""
    return torch.stack([torch.maximum((take(dat.scored, i) * torch.arange(1, dat.scored.shape[1] + 1)).amax(1),
                                      take(dat.pos, i) + 1) for dat, i in zip(data, idx)])


def _length_groups(data: list[Split], idx: torch.Tensor, groups: int = 4, tail: bool = False):
    """Batch places of ``idx`` (A, n) — fit a's pair ``idx[a, r]`` at place r — in up to
    ``groups`` groups of similar length, as (places, width): a place's length is the
    longest of its fits' pairs' (``_needs``; with ``tail``, counted from the interchange).
    Forwards then skip the padding of short rows, which is most of the work on tasks whose
    sequences vary in length."""
    need = _needs(data, idx)
    if tail:
        need = need - torch.stack([take(dat.pos, i) for dat, i in zip(data, idx)])
    need = need.amax(0)
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
