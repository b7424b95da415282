"""Optional hooks that only make alignment training faster (docs/contract.md, appendix).

A model that implements none of them is evaluated the same, number for number in float32
(up to the rounding of a different order of operations), only slower. The engine looks
for them once, when it is built, and picks its training path by what it finds:

* ``bf16_training`` (a class flag): a training step's matrix products may run under
  ``autocast(bfloat16)`` because the model keeps its state in float32 there (only
  products drop to bf16). Validation and scoring never do.
* :class:`FusedResume`: a :class:`~numbench.models.contract.Resumable` model whose
  ``resume`` also takes ``fused=True`` (a training step through a hand-written recurrence
  and backward, ``models/fused.py``) and ``padded=True`` (row counts rounded up, so a
  row's float32 arithmetic does not depend on which rows share the call).
* :class:`TailRunnable`: a causal model that computes a single-position interchange's
  logits from the interchange position on, reusing the positions before it
  (``head_cache``) — a training step then has gradient only where an edit can reach.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch

from .contract import Resumable
from .packing import Packing


def bf16_training(model) -> bool:
    """Whether ``model`` declares that a training step may run its products in bf16."""
    return bool(getattr(model, "bf16_training", False))


class FusedResume(Resumable):
    """A restartable model with a hand-written training step (``models/fused.py``)."""

    #: True when ``resume`` keeps its state in float32 under ``autocast(bfloat16)``
    #: (only matrix products drop to bf16): a training step's restarted recurrence may
    #: then run in bf16 (``EngineConfig.train_precision``). Scoring never is.
    bf16_training: ClassVar[bool] = False
    #: True when ``resume`` takes ``fused=True`` and ``padded=True`` (below).
    fused_training: ClassVar[bool] = False

    @abstractmethod
    def resume(self, site: str, h: torch.Tensor, suffix: torch.Tensor,
               select: torch.Tensor | None = None, lengths: list[int] | None = None,
               fused: bool = False, padded: bool = False) -> torch.Tensor:
        """``Resumable.resume``, and: ``fused`` (only passed to a model declaring
        ``fused_training``, only in a training step): its gradient may come from a
        hand-written backward, equal to autograd's up to float rounding. ``padded``
        (only passed to a model declaring ``fused_training``, in float32 fused runs on a
        CPU, training and scoring): a row's arithmetic must not depend on which other
        rows share the call, so that fits in one forward compute as they would alone
        (the reference models round their products' row counts up; docs/engine.md)."""


def fused_training(model) -> bool:
    """Whether ``model``'s ``resume`` takes ``fused`` and ``padded``."""
    return isinstance(model, FusedResume) and bool(model.fused_training)


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
