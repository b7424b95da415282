"""PCA alignment (untrained): swap the top-k principal directions of the site's activations.

    h' = h_b + Q_k Q_kᵀ (h_s − h_b),

Q_k (d, k) the eigenvectors of the k largest eigenvalues of Xcᵀ Xc, where Xc is the
training pairs' base activations at i and source activations at j stacked (2N, d) and
centred on their mean. Closed form, fitted once per fit by :meth:`PCAAlignment.fit` (in
float64; an eigendecomposition of one d×d matrix after an O(N d²) product), never trained:
the subspace knows nothing of the variable, which is what makes it a baseline for the
methods that do.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import FittedBasis
from .registry import register_alignment


def fixed_signs(q: Tensor) -> Tensor:
    """``q`` (d, m) with each column's largest-magnitude entry made positive: one basis for
    one subspace (P = Q Qᵀ does not depend on the signs)."""
    if q.shape[-1] == 0:
        return q
    pick = q.abs().argmax(dim=0)
    sign = torch.where(q[pick, torch.arange(q.shape[1], device=q.device)] < 0, -1.0, 1.0)
    return q * sign.to(q.dtype)


def top_eigenvectors(x: Tensor, m: int) -> Tensor:
    """(d, m) orthonormal: the eigenvectors of xᵀ x (x (n, d), float64) with the m largest
    eigenvalues, largest first."""
    values, vectors = torch.linalg.eigh(x.mT @ x)  # ascending
    order = torch.argsort(values, descending=True, stable=True)[:m]
    return fixed_signs(vectors[:, order])


@register_alignment
class PCAAlignment(FittedBasis):
    """P = Q_k Q_kᵀ, Q_k the training activations' top-k principal directions (a buffer
    set by :meth:`fit`; the first k coordinate axes until then)."""

    name = "pca"
    def fit(self, slot: int, h_base: Tensor, h_source: Tensor, values: Tensor | None) -> None:
        x = torch.cat([h_base, h_source]).double()  # (2N, d)
        q = top_eigenvectors(x - x.mean(dim=0), self.k)
        self.basis[slot] = q.to(self.basis.dtype)
