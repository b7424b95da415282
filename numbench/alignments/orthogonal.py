"""Orthogonal alignment (OAF, classic DAS): h' = h_b + Q_k Q_kᵀ (h_s − h_b).

Only the d×k block Q_k of the rotation Q ∈ O(d) matters. It is parametrized exactly as
the linear alignment's rotation part, so the two families move at the same speed under
the same Adam step and differ only in what they can express:

    Q_k = V U_k,   U_k = qr(W) (sign-fixed, W free d×k),   V = V₀ (I − A)⁻¹ (I + A),

V the Cayley map of a free skew-symmetric A around a fixed orthogonal base V₀ (identity at
init; :func:`~numbench.alignments.base.cayley_times`). This is ``linear`` with its scales
fixed at 0: the same initialisation (U_k Haar-random from the seed, V = I) gives the same
projector, and ``linear`` = this plus the scales s that make the projection oblique.

Why V and not W alone: Adam moves each free entry by about lr per step. W's d·k entries
turn the subspace slowly; A's d(d−1)/2 entries each rotate the whole space. With W alone
(protocol 1), a variable lying along one direction needed the full 20,000-step budget for
orthogonal (test IIA 0.60 after 300 steps) while linear reached 1.00 in 150: a short
budget then reads an optimizer's speed as expressivity (docs/protocol.md, protocol 2).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from .base import Alignment, Factors, cayley_times, haar_basis, orthonormal_columns
from .registry import register_alignment


@register_alignment
class OrthogonalAlignment(Alignment):
    name = "orthogonal"
    trainable = True

    def __init__(self, d: int, k: int, count: int = 1, seed: int | Sequence[int] = 0):
        super().__init__(d, k, count)
        self.u_weight = nn.Parameter(haar_basis(seed, count, d, k))  # (A, d, k) → U_k
        self.v_skew = nn.Parameter(torch.zeros(count, d, d))  # (A, d, d) → A (upper part)
        self.register_buffer("v_base", torch.eye(d).repeat(count, 1, 1))  # (A, d, d) → V₀

    def basis(self) -> Tensor:
        """Q_k: (A, d, k) with orthonormal columns."""
        return _basis(self.u_weight, self.v_skew, self.v_base)

    def factors(self) -> Factors:
        q = self.basis()
        return q, q.mT

    def _factors_of_subset(self, slots: list[int]) -> Factors:
        q = _basis(self.u_weight[slots], self.v_skew[slots], self.v_base[slots])
        return q, q.mT

    def set_basis(self, q_k: Tensor) -> None:
        """Set Q_k ((d, k) or (A, d, k), orthonormal columns) for every slice (U_k = Q_k,
        V = I)."""
        with torch.no_grad():
            self.u_weight.copy_(q_k.expand_as(self.u_weight))
            self.v_base.copy_(torch.eye(self.d).expand_as(self.v_base))
            self.v_skew.zero_()


def _basis(u_weight: Tensor, v_skew: Tensor, v_base: Tensor) -> Tensor:
    """Q_k = V U_k (A, d, k) from the parameters of A slices."""
    return cayley_times(v_skew, v_base, orthonormal_columns(u_weight))
