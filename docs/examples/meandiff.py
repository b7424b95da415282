"""A method of one's own: ``numbench evaluate MODEL --alignments meandiff
--alignment-module docs/examples/meandiff.py`` (docs/alignments.md)."""

import torch
from torch import nn

from numbench.alignments import Alignment, register_alignment
from numbench.alignments.base import haar_basis, orthonormal_columns


@register_alignment
class MeanDiffAlignment(Alignment):
    """Swap the span of the k largest class-mean differences of the source activations,
    then train it as an orthogonal subspace from there."""

    name = "meandiff"
    trainable = True

    def __init__(self, d, k, count=1, seed=0):
        super().__init__(d, k, count)
        self.w = nn.Parameter(haar_basis(seed, count, d, k))  # (A, d, k) → Q_k = qr(W)

    def fit(self, slot, h_base, h_source, values):
        v = values[:, 0]
        means = torch.stack([h_source[v == x].mean(0) for x in torch.unique(v)])  # (C, d)
        u, _, _ = torch.linalg.svd((means - means.mean(0)).T, full_matrices=True)
        self.w[slot] = u[:, : self.k]  # (d, k); u has d columns, so any k ≤ d fits

    def factors(self):
        q = orthonormal_columns(self.w)
        return q, q.mT
