"""A nonlinear method of one's own: ``numbench evaluate MODEL --alignments coupling
--alignment-module docs/examples/coupling.py`` (docs/alignments.md).

f(h) = (z₁ + t(z₂), z₂) with z = Vᵀ h split after its first k coordinates: one additive
coupling after a learned rotation V, t(x) = tanh(x W) U. The interchange swaps f's first
k coordinates and inverts, f⁻¹(y₁, y₂) = V (y₁ − t(y₂), y₂): the swapped part of h'
is z₁(h_s) + t(z₂(h_s)) − t(z₂(h_b)), a nonlinear function of both activations.
"""

import torch
from torch import nn

from numbench.alignments import Alignment, register_alignment
from numbench.alignments.base import cayley_times, orthonormal_columns, seeded_normal


@register_alignment
class CouplingAlignment(Alignment):
    name = "coupling"
    trainable = True
    width = 16  # t's hidden width

    def __init__(self, d, k, count=1, seed=0):
        super().__init__(d, k, count)
        # every parameter and buffer has leading dimension count (A): slice a is alignment a
        draw = seeded_normal(seed, count, d, d + self.width)  # slice a from seed + a
        self.register_buffer("v_base", orthonormal_columns(draw[..., :d]))  # V₀: Haar (A, d, d)
        self.v_skew = nn.Parameter(torch.zeros(count, d, d))  # V = Cayley(v_skew) around V₀
        self.w = nn.Parameter(draw[:, : d - k, d:] / max(d - k, 1) ** 0.5)  # (A, d − k, width)
        self.u = nn.Parameter(torch.zeros(count, self.width, k))  # (A, width, k): t = 0 at init

    def factors(self):
        # once per step, what does not depend on the activations; every tensor has leading
        # dimension A, so factors_of(slots) cuts it to a subset of the slices by itself
        return cayley_times(self.v_skew, self.v_base), self.w, self.u

    def interchange(self, h_base, h_source, factors):
        v, w, u = factors  # the B slices' own: read them here, never self's parameters
        B, k = v.shape[0], self.k
        n = h_base.numel() // (B * self.d)
        hb, hs = h_base.reshape(B, n, self.d), h_source.reshape(B, n, self.d)
        t = lambda x: torch.tanh(x @ w) @ u  # (B, n, d − k) -> (B, n, k)

        def f(h):
            z = h @ v  # Vᵀ h, as rows
            return torch.cat([z[..., :k] + t(z[..., k:]), z[..., k:]], -1)

        def f_inv(y):
            return torch.cat([y[..., :k] - t(y[..., k:]), y[..., k:]], -1) @ v.mT

        yb, ys = f(hb), f(hs)
        swapped = torch.cat([ys[..., :k], yb[..., k:]], -1)  # D_k f(h_s) + (I − D_k) f(h_b)
        # h_b + (f⁻¹(swapped) − f⁻¹(f(h_b))) equals f⁻¹(swapped) and is h_b exactly when
        # the source is the base
        return (hb + (f_inv(swapped) - f_inv(yb))).reshape(h_base.shape)
