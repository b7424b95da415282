"""The paper code's linear alignment (reproduction only, not ranked):

    M = (C Cᵀ + 0.1·I)·diag(s),   h' = h_b + M⁻¹ D_k M (h_s − h_b),

C a free d×d matrix, s a free vector. M is invertible only while every s_i ≠ 0, and its
conditioning is unbounded. It is *not* a superset of the orthogonal family: P is symmetric
iff M Mᵀ = G S² G (G = C Cᵀ + 0.1·I) is block diagonal, which for d = 2 forces G diagonal
and so P = D_k (docs/alignments.md).

Init (our choice; the paper's is not recorded here): C ~ N(0, 1/d), s = 1.
M⁻¹[:, :k] is computed with ``torch.linalg.solve`` (no explicit inverse).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from .base import Alignment, Factors, seeded_normal
from .registry import register_alignment

RIDGE = 0.1


@register_alignment
class SDLinearAlignment(Alignment):
    name = "sd_linear"
    trainable = True

    def __init__(self, d: int, k: int, count: int = 1, seed: int | Sequence[int] = 0):
        super().__init__(d, k, count)
        self.c = nn.Parameter(seeded_normal(seed, count, d, d) / d ** 0.5)  # (A, d, d)
        self.s = nn.Parameter(torch.ones(count, d))  # (A, d)

    def matrix(self) -> Tensor:
        """M = (C Cᵀ + 0.1·I) diag(s): (A, d, d)."""
        eye = torch.eye(self.d, dtype=self.c.dtype, device=self.c.device)
        return (self.c @ self.c.mT + RIDGE * eye) * self.s.unsqueeze(-2)

    def factors(self) -> Factors:
        m = self.matrix()
        first_k = torch.eye(self.d, self.k, dtype=m.dtype, device=m.device).expand(
            self.count, self.d, self.k)
        return torch.linalg.solve(m, first_k), m[:, : self.k, :]  # M⁻¹[:, :k], M[:k, :]
