"""The untrained references: ``full`` swaps the whole vector (the baseline), ``random``
swaps a fixed random k-dimensional orthogonal subspace (the control)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .base import Alignment, Factors, haar_basis
from .registry import register_alignment


@register_alignment
class FullAlignment(Alignment):
    """h' = h_s (P = I). ``k`` is ignored and recorded as d; no parameters."""

    name = "full"
    trainable = False

    def __init__(self, d: int, k: int | None = None, count: int = 1,
                 seed: int | Sequence[int] = 0):
        super().__init__(d, d, count)

    def factors(self) -> Factors:
        eye = torch.eye(self.d).expand(self.count, self.d, self.d)
        return eye, eye

    def interchange(self, h_base: Tensor, h_source: Tensor, factors: Factors) -> Tensor:
        return h_source  # exactly, not h_b + (h_s − h_b), which rounds


@register_alignment
class RandomAlignment(Alignment):
    """h' = h_b + Q_k Q_kᵀ (h_s − h_b) for a fixed Haar-random Q_k drawn from ``seed``
    (a buffer: never trained, moved by ``.to``, saved in the state dict)."""

    name = "random"
    trainable = False

    def __init__(self, d: int, k: int, count: int = 1, seed: int | Sequence[int] = 0):
        super().__init__(d, k, count)
        self.register_buffer("basis", haar_basis(seed, count, d, k))

    def factors(self) -> Factors:
        return self.basis, self.basis.mT
