"""The model contract: what any numbench model provides (documented in docs/contract.md).

A model maps token ids (B, T) to next-token logits (B, T, V), declares the task vocabulary
it was trained on and its **named sites** (activations an interchange may edit) with their
widths, and can run with an interchange at a site:

* ``single``: at each row's own position ``pos[b]``, the site activation h is replaced by
  ``edit(h, rows, t)``;
* ``prefix``: the same at every position ``0..pos[b]`` of each row, position by position.

``edit`` receives the activations about to be replaced, ``h: (M, d)``, the row of each,
``rows: (M,)``, and its position ``t: (M,)``, and returns the replacements ``(M, d)``. In
``prefix`` mode a recurrent model calls it once per time step, so ``h`` at step t already
reflects the edits before t.

Recurrent models also implement :class:`Resumable`: a site that *is* the whole recurrent
state can be restarted from an edited state without recomputing the prefix. That is what
makes alignment training fast (the engine caches everything else).

Everything else a model may offer only makes training faster, and lives apart, in
``models/speed.py``: bf16 and fused training steps, a causal model's tails and head caches.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict
from typing import Callable, ClassVar

import torch
from torch import nn

#: edit(h (M, d), rows (M,), t (M,)) -> (M, d)
Edit = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
MODES = ("single", "prefix")


class NumbenchModel(nn.Module, ABC):
    """Base class of every architecture. Subclasses set ``arch``, ``family``, ``Config``."""

    arch: ClassVar[str]
    family: ClassVar[str]  # "recurrent" | "transformer": which reference void_p it trains with
    Config: ClassVar[type]

    def __init__(self, config, vocabulary: tuple[str, ...]):
        super().__init__()
        self.config = config
        self.vocabulary = tuple(vocabulary)

    @property
    def vocab_size(self) -> int:
        return len(self.vocabulary)

    @property
    @abstractmethod
    def sites(self) -> dict[str, int]:
        """Site name -> width d, in the model's order (input to output)."""

    @abstractmethod
    def run(self, ids: torch.Tensor, site: str | None = None, pos: torch.Tensor | None = None,
            edit: Edit | None = None, mode: str = "single") -> torch.Tensor:
        """Logits (B, T, V) for ``ids`` (B, T), with an optional interchange at ``site``."""

    @abstractmethod
    def activations(self, ids: torch.Tensor, site: str) -> torch.Tensor:
        """The plain run's activations at ``site``: (B, T, d)."""

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.run(ids)

    def config_dict(self) -> dict:
        return asdict(self.config)

    @property
    def device(self) -> torch.device:
        """Where the model's parameters are (the CPU for a model without any)."""
        first = next(self.parameters(), None)
        return first.device if first is not None else torch.device("cpu")

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def check_site(self, site: str) -> None:
        if site not in self.sites:
            raise KeyError(f"{self.arch} has no site '{site}' (sites: {', '.join(self.sites)})")


class Resumable(ABC):
    """A model whose ``state_sites`` are its whole recurrent state after a position."""

    state_sites: ClassVar[tuple[str, ...]]

    @abstractmethod
    def resume(self, site: str, h: torch.Tensor, suffix: torch.Tensor,
               select: torch.Tensor | None = None, lengths: list[int] | None = None
               ) -> torch.Tensor:
        """Restart from state ``h`` (B, d) at some position i and read ``suffix`` (B, S),
        the tokens at i+1..i+S. Returns logits (B, 1+S, V) for positions i..i+S, or only
        the (K, V) logits where the bool mask ``select`` (B, 1+S) is set, in row-major
        order (the readout is then computed for those positions alone).

        ``lengths`` (with ``select``): how many positions from i each row needs, sorted in
        descending order; rows are then not run past their length."""


def left_align(ids: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """Row b of the result is ids[b, start[b]:], left-aligned; (B, S) with S = T - min(start).

    Positions past a row's end repeat its last token; callers never read them.
    """
    B, T = ids.shape
    S = max(T - int(start.min()), 0)
    idx = (start[:, None] + torch.arange(S, device=ids.device)[None, :]).clamp(max=T - 1)
    return ids.gather(1, idx)


def edit_positions(x: torch.Tensor, pos: torch.Tensor, edit: Edit, mode: str) -> torch.Tensor:
    """Apply ``edit`` to ``x`` (B, T, d) at each row's ``pos`` (single) or ``0..pos`` (prefix).

    Out of place, so autograd flows through the edit and the plain activations survive.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode '{mode}'")
    B, T, _ = x.shape
    t = torch.arange(T, device=x.device)
    mask = (t[None, :] == pos[:, None]) if mode == "single" else (t[None, :] <= pos[:, None])
    rows, cols = mask.nonzero(as_tuple=True)
    new = edit(x[rows, cols], rows, cols)
    return x.index_put((rows, cols), new)
