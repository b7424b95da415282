"""A causal transformer's keys and values before each row's interchange, computed once.

A training step of a single-position interchange at position i changes nothing before i:
the keys and values there (the row's *head*) are the base's own. The engine takes them
from a :class:`HeadCache`, built once per pair set by the model's own forward (the one
that scores) and shared by every fit whose pairs have those bases (docs/engine.md); a
model without one recomputes them every step, for the step's distinct heads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch

from .packing import Packing

# (blocks' keys, values) of token ids (U, W): each a list over blocks of (U, W, H, dh)
KeysValues = Callable[[torch.Tensor], tuple[list[torch.Tensor], list[torch.Tensor]]]


def distinct_heads(ids: torch.Tensor, pos: torch.Tensor, width: int | None = None):
    """The rows' heads ``ids[r, :pos[r]]`` once each: (U, width) with -1 past a short
    head's end (width: the longest head), which is each row's (N,), and the mask of the
    rows' places before ``pos`` (N, width)."""
    width = int(pos.max()) if width is None else width
    before = torch.arange(width, device=ids.device)[None, :] < pos[:, None]
    heads, head_of = torch.unique(torch.where(before, ids[:, :width], -1), dim=0, return_inverse=True)
    return heads, head_of, before


def _tokens(starts: torch.Tensor, lengths: torch.Tensor, heads: torch.Tensor):
    """``heads``' tokens packed one head after another (their ``Packing``) and their
    indices among all heads' tokens (head u's ``lengths[u]`` from ``starts[u]`` on)."""
    sub = Packing.of(lengths[heads])
    return sub, starts[heads][sub.rows] + sub.cols


@dataclass(frozen=True)
class HeadCache:
    """Every distinct head of a pair set's rows: row r's head is ``head_of[r]``, whose
    ``lengths[u]`` tokens start at ``starts[u]`` in each block's packed keys and values."""

    head_of: torch.Tensor  # (N,) each row's head
    lengths: torch.Tensor  # (U,)
    starts: torch.Tensor  # (U,)
    keys: list[torch.Tensor]  # per block, (sum of lengths, H, dh)
    values: list[torch.Tensor]

    @classmethod
    @torch.no_grad()
    def build(cls, ids: torch.Tensor, pos: torch.Tensor, keys_values: KeysValues,
              chunk: int = 1000) -> "HeadCache":
        """The heads ``ids[r, :pos[r]]`` of rows ``ids`` (N, T), each distinct one run once
        through ``keys_values``, in chunks of heads of similar length (a causal forward: a
        position's keys and values never see the padding after it)."""
        heads, head_of, _ = distinct_heads(ids, pos, max(int(pos.max()), 1))
        lengths = (heads >= 0).sum(1)
        starts = torch.cumsum(lengths, 0) - lengths
        keys, values = None, None
        order = torch.argsort(lengths, stable=True)
        order = order[lengths[order] > 0]  # an empty head has nothing to run
        for s in range(0, len(order), chunk):
            rows = order[s : s + chunk]
            width = int(lengths[rows].max())
            ks, vs = keys_values(heads[rows, :width].clamp(min=0))
            if keys is None:
                keys = [k.new_empty((int(lengths.sum()),) + k.shape[2:]) for k in ks]
                values = [v.new_empty((int(lengths.sum()),) + v.shape[2:]) for v in vs]
            sub, at = _tokens(starts, lengths, rows)
            for k, v, K, V in zip(ks, vs, keys, values):
                K.index_copy_(0, at, k[sub.rows, sub.cols])
                V.index_copy_(0, at, v[sub.rows, sub.cols])
        return cls(head_of, lengths, starts, keys or [], values or [])

    @staticmethod
    def gather(cached: list[tuple["HeadCache", torch.Tensor]]) -> list["RowHeads"] | None:
        """Per block, the heads of the rows given as (cache, row indices), one run of rows
        after another, as ``Tails.attend`` takes them: each distinct head's tokens once
        (fits that train on the same pairs share them); None if no row has a head."""
        runs: dict[int, list] = {}  # each cache's runs, by identity, in order
        for i, (cache, rows) in enumerate(cached):
            runs.setdefault(id(cache), [cache]).append((i, rows))
        lengths, tokens, of, at = [], [], [None] * len(cached), 0
        for cache, *mine in runs.values():
            heads, inverse = torch.unique(torch.cat([cache.head_of[rows] for _, rows in mine]),
                                          return_inverse=True)
            tokens.append((cache, _tokens(cache.starts, cache.lengths, heads)[1]))
            lengths.append(cache.lengths[heads])
            for i, rows in mine:
                of[i], inverse = inverse[: len(rows)] + at, inverse[len(rows):]
            at += len(heads)
        lengths = torch.cat(lengths)
        if not bool((lengths > 0).any()):
            return None
        starts = torch.cumsum(lengths, 0) - lengths  # the caches' tokens one after another
        join = lambda zs: zs[0] if len(zs) == 1 else torch.cat(zs)
        pick = lambda b, which: join([getattr(c, which)[b].index_select(0, t) for c, t in tokens])
        return [RowHeads(pick(b, "keys"), pick(b, "values"), starts, lengths, torch.cat(of))
                for b in range(len(tokens[0][0].keys))]


class RowHeads(NamedTuple):
    """One block's keys and values of a step's heads: head u's ``lengths[u]`` tokens from
    ``starts[u]`` on, one head after another; row b's head is ``of[b]``."""

    keys: torch.Tensor  # (M, H, dh)
    values: torch.Tensor
    starts: torch.Tensor  # (U,)
    lengths: torch.Tensor  # (U,)
    of: torch.Tensor  # (B,)

    def places(self, rows: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The head tokens of ``rows`` and their places in a (len(rows), width) layout at
        absolute positions."""
        sub, tokens = _tokens(self.starts, self.lengths, self.of[rows])
        return tokens, sub.rows * width + sub.cols
