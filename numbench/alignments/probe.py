"""Probe alignment (untrained): swap the subspace a least-squares linear probe of the
variable's value reads.

Fitted once per fit (:meth:`ProbeAlignment.fit`), in float64, on the training pairs'
source activations X (N, d) at j and the values those pairs write into the variable (one
column of one-hot indicators per value seen, C in all; a set of several variables stacks
each one's columns):

1. centre X and the one-hot targets Y on their means (the probe's intercept);
2. W = Xc⁺ Yc (d, C), the least-squares probe, Xc⁺ the pseudo-inverse with singular values
   below ``RCOND`` times the largest dropped (directions of almost no variance would
   otherwise dominate W);
3. Q_k: the left singular vectors of W with the largest singular values (the probe's
   row space, orthonormal), r = rank W of them; W's rank is at most C − 1 (a binary phase:
   1), so where r < k the other k − r columns are the top principal directions of Xc
   within the complement of those r (so every method swaps k dimensions at the ranked k).

h' = h_b + Q_k Q_kᵀ (h_s − h_b). Cost: a pseudo-inverse of (N, d) and an SVD of (d, C),
once per fit. The subspace does not change when the values are permuted (W's columns are
permuted, its row space is not), so the permuted control scores the very subspace.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import NumbenchError
from .base import FittedBasis
from .pca import fixed_signs, top_eigenvectors
from .registry import register_alignment

RCOND = 1e-6  # pseudo-inverse cutoff, relative to the largest singular value of Xc
RANK_TOL = 1e-8  # W's singular values below this times its largest do not count


def one_hot(values: Tensor) -> Tensor:
    """(N, C) float64 indicators: for each column of ``values`` (N, |V|), one per value."""
    cols = []
    for v in values.reshape(len(values), -1).mT:
        seen = torch.unique(v)  # sorted
        cols.append((v[:, None] == seen[None, :]).double())
    return torch.cat(cols, dim=1)


def probe_basis(h_source: Tensor, values: Tensor, k: int) -> Tensor:
    """Q_k (d, k), float64: the probe's directions, completed by principal directions."""
    x = h_source.double()
    xc = x - x.mean(dim=0)
    y = one_hot(values.to(x.device))
    w = torch.linalg.pinv(xc, rtol=RCOND) @ (y - y.mean(dim=0))  # (d, C)
    u, s, _ = torch.linalg.svd(w, full_matrices=False)
    r = int((s > s[0] * RANK_TOL).sum()) if len(s) and s[0] > 0 else 0
    q = fixed_signs(u[:, : min(r, k)])
    if q.shape[1] < k:  # complete with the variance left outside the probe's subspace
        complete, _ = torch.linalg.qr(q, mode="complete") if q.shape[1] else (
            torch.eye(x.shape[1], dtype=x.dtype, device=x.device), None)
        rest = complete[:, q.shape[1]:]  # (d, d − r) orthonormal, ⟂ q
        q = torch.cat([q, rest @ top_eigenvectors(xc @ rest, k - q.shape[1])], dim=1)
    return q


@register_alignment
class ProbeAlignment(FittedBasis):
    """P = Q_k Q_kᵀ, Q_k the row space of a least-squares probe of the variable's value
    (a buffer set by :meth:`fit`; the first k coordinate axes until then)."""

    name = "probe"
    def fit(self, slot: int, h_base: Tensor, h_source: Tensor, values: Tensor | None) -> None:
        if values is None:
            raise NumbenchError("the probe alignment needs the variable's values of the "
                                "training pairs (PairTensors.values)")
        self.basis[slot] = probe_basis(h_source, values, self.k).to(self.basis.dtype)
