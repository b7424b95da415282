"""Orthogonal alignment (OAF, classic DAS): h' = h_b + Q_k Q_kᵀ (h_s − h_b).

Only the d×k block Q_k of the rotation Q ∈ O(d) matters, so that is all we parametrize:
Q_k = qr(W) for a free W (d, k), signs fixed so diag(R) > 0 (a smooth map; see
:func:`orthonormal_columns`). Any orthonormal Q_k is reachable, by setting W = Q_k.
Initialised at a Haar-random Q_k (QR of a seeded Gaussian), and W starts *at* that Q_k:
the entries then have the scale 1/√d of an orthonormal basis, so an Adam step of lr 1e-3
turns the subspace about as fast as the paper code's rotation does. (Starting W at the
Gaussian itself gives the same Q_k but entries √d times larger, and the same lr then turns
the subspace ~10× slower: at d=128, count IIA 0.66 vs 0.90 after 500 steps.)
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from .base import Alignment, Factors, haar_basis, orthonormal_columns
from .registry import register_alignment


@register_alignment
class OrthogonalAlignment(Alignment):
    name = "orthogonal"
    trainable = True

    def __init__(self, d: int, k: int, count: int = 1, seed: int | Sequence[int] = 0):
        super().__init__(d, k, count)
        self.weight = nn.Parameter(haar_basis(seed, count, d, k))  # (A, d, k)

    def basis(self) -> Tensor:
        """Q_k: (A, d, k) with orthonormal columns."""
        return orthonormal_columns(self.weight)

    def set_basis(self, q_k: Tensor) -> None:
        """Set Q_k ((d, k) or (A, d, k), orthonormal columns) for every slice."""
        with torch.no_grad():
            self.weight.copy_(q_k.expand_as(self.weight))

    def factors(self) -> Factors:
        q = self.basis()
        return q, q.mT

    def _factors_of_subset(self, slots: list[int]) -> Factors:
        q = orthonormal_columns(self.weight[slots])
        return q, q.mT
