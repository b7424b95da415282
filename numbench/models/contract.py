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
makes alignment training fast (the engine caches everything else). A causal model (the
transformer) may implement :class:`TailRunnable` instead: a training step then computes
with gradient only the positions from the interchange on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict
from typing import Callable, ClassVar

import torch
from torch import nn

from .packing import Packing

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

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def check_site(self, site: str) -> None:
        if site not in self.sites:
            raise KeyError(f"{self.arch} has no site '{site}' (sites: {', '.join(self.sites)})")


class Resumable(ABC):
    """A model whose ``state_sites`` are its whole recurrent state after a position."""

    state_sites: ClassVar[tuple[str, ...]]
    #: True when ``resume`` keeps its state in float32 under CPU ``autocast(bfloat16)``
    #: (only matrix products drop to bf16): the engine may then run a training step's
    #: restarted recurrence in bf16 (``EngineConfig.train_precision``). Scoring never is.
    bf16_training: ClassVar[bool] = False
    #: True when ``resume`` takes ``fused=True``: a training step may then run the model's
    #: hand-written recurrence and backward (``models/fused.py``). Scoring never.
    #: It also takes ``padded=True`` (below).
    fused_training: ClassVar[bool] = False

    @abstractmethod
    def resume(self, site: str, h: torch.Tensor, suffix: torch.Tensor,
               select: torch.Tensor | None = None, lengths: list[int] | None = None,
               fused: bool = False, padded: bool = False) -> torch.Tensor:
        """Restart from state ``h`` (B, d) at some position i and read ``suffix`` (B, S),
        the tokens at i+1..i+S. Returns logits (B, 1+S, V) for positions i..i+S, or only
        the (K, V) logits where the bool mask ``select`` (B, 1+S) is set, in row-major
        order (the readout is then computed for those positions alone).

        ``lengths`` (with ``select``): how many positions from i each row needs, sorted in
        descending order; rows are then not run past their length. ``fused`` (only passed
        to a model declaring ``fused_training``, only in a training step): its gradient may
        come from a hand-written backward, equal to autograd's up to float rounding.
        ``padded`` (only passed to a model declaring ``fused_training``, in float32 fused
        runs, training and scoring): a row's arithmetic must not depend on which other rows
        share the call, so that fits in one forward compute as they would alone (the
        reference models round their products' row counts up; see docs/engine.md)."""


class TailRunnable(ABC):
    """A causal model that can compute a single-position interchange's logits from the
    interchange position on, the positions before it without gradient."""

    #: True when ``run_tail`` and ``run`` keep the residual stream in float32 under CPU
    #: ``autocast(bfloat16)`` (only matrix products drop to bf16): a training step may then
    #: run them in bf16 (``EngineConfig.train_precision``; the edit stays float32). Scoring
    #: never does.
    bf16_training: ClassVar[bool] = False

    @abstractmethod
    def run_tail(self, ids: torch.Tensor, site: str, pos: torch.Tensor, new: torch.Tensor,
                 length: int) -> torch.Tensor:
        """Logits (B, length, V) at positions ``pos[b] .. pos[b] + length - 1`` of row b
        of ``run(ids, site, pos, edit, "single")``, where ``edit`` puts ``new[b]`` (B, d) at
        (b, pos[b]); positions past the end of ``ids`` (B, T) are padding. Only a training
        step calls it: the positions before ``pos[b]``, which no interchange at ``pos[b]``
        can change, may be computed without gradient and once for rows that share them."""

    def run_tail_packed(self, ids: torch.Tensor, site: str, pos: torch.Tensor, new: torch.Tensor,
                        lengths: torch.Tensor, keep: torch.Tensor | None = None,
                        cached: list | None = None) -> torch.Tensor:
        """``run_tail``'s logits at positions ``pos[b] .. pos[b] + lengths[b] - 1`` of row b
        (every ``lengths[b]`` ≥ 1), rows one after another: (N, V) with N = ``lengths.sum()``,
        or only the (K, V) where the bool mask ``keep`` (N,) is set. A model may override
        it to skip the padding of short rows (and compute only the kept places' outputs);
        this default cuts them from ``run_tail``. ``cached``: where ``head_cache`` gives an
        object, the rows as (that object for their pair set, their row indices in it), one
        run of rows after another; a model may read the positions before ``pos`` from it."""
        rows = Packing.of(lengths)
        logits = rows.unpad(self.run_tail(ids, site, pos, new, rows.width))
        return logits if keep is None else logits[keep]

    def head_cache(self, ids: torch.Tensor, site: str, pos: torch.Tensor) -> object | None:
        """What ``run_tail_packed`` at ``site`` may reuse of rows ``ids`` (N, T) before their
        positions ``pos`` (N,), which no interchange at ``pos`` changes: built once per pair
        set by the engine and handed back as ``cached``. None (this default): nothing; the
        positions before ``pos`` are then computed in every step."""
        return None

    def tail_reach(self, site: str) -> int | None:
        """How many positions from i an interchange at ``site`` and position i can change
        (None: all later ones). The engine asks ``run_tail`` for no more: the rest carry no
        gradient. A transformer's last residual stream reaches its own position only."""
        return None


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
