"""RevNet alignment: a nonlinear, exactly invertible f — a small reversible residual network.

    h' = f⁻¹( D_k f(h_s) + (I − D_k) f(h_b) ),   D_k the mask of the first k coordinates,

    f(h) = B_L ∘ π_{L−1} ∘ B_{L−1} ∘ … ∘ π_1 ∘ B_1 (Vᵀ h),

* V: a learned rotation, ``orthogonal``'s Cayley parametrization V = V₀ (I − A)⁻¹ (I + A)
  (:func:`~numbench.alignments.base.cayley_times`), A skew-symmetric and free;
* B_l: an additive coupling block (NICE / RevNet) on the halves x = (x₁, x₂) of widths
  d₁ = ⌊d/2⌋ and d₂ = d − d₁:

      y₁ = x₁ + F_l(x₂),   y₂ = x₂ + G_l(y₁),   F(x) = tanh(x W + b) U + c  (G alike),

  exactly invertible whatever its weights: x₂ = y₂ − G_l(y₁), x₁ = y₁ − F_l(x₂);
* π_l: fixed random permutations of the d coordinates between blocks (buffers), so each
  coordinate is on both sides of some split.

``depth`` L = 2 blocks of hidden ``width`` 64 (class attributes): L·(2·width·d + 2·width
+ d) coupling weights (W, b, U, c of F and G) beside V's d(d−1)/2 free entries. A step
costs a d×d LU solve and inverse (V) and, for N vectors, four passes through f or f⁻¹
(below) of O(N d² + N d·width·L) each.

**Init.** U = c = 0, so every block starts as the identity, and V₀ is the Haar rotation
whose first k columns are ``orthogonal``'s initial Q_k for the same seed (completed to a
rotation), its columns reordered by the permutations: the first k coordinates of f(h) at
init are Q_kᵀ h, so ``revnet`` starts *equal* to ``orthogonal`` with that seed (to float
rounding) and contains it (blocks held at the identity). W is N(0, 1/fan-in), b = 0. The
biases are stored as the last rows of W and U (an input padded with a 1), so that every
gradient comes out of a batched matmul: a broadcast bias's gradient is a sum whose bits may
depend on how many slices share it, and ``factors_of`` must not.
f⁻¹ applies V's computed inverse, not Vᵀ (V is orthogonal only to rounding, and the
blocks would amplify the difference).

**Computed as** h' = h_b + (f⁻¹(z') − f⁻¹(z_b)), z_b = f(h_b), z' = D_k f(h_s) + (I − D_k)
z_b: the same value (f⁻¹(z_b) = h_b), but h' = h_b exactly when nothing is swapped (h_s =
h_b), and f⁻¹∘f's rounding cancels instead of landing on h'. :meth:`transform` and
:meth:`inverse` give f and f⁻¹; f⁻¹(f(h)) = h to about 1e-6 in float32.
"""

from __future__ import annotations

import math
from typing import ClassVar, NamedTuple, Sequence

import torch
from torch import Tensor, nn

from .base import (Alignment, cayley_times, completed_basis, orthonormal_columns,
                   slice_seeds)
from .registry import register_alignment


class RevNetFactors(NamedTuple):
    """One step's tensors of B slices (every one with leading dimension B)."""

    v: Tensor  # (B, d, d) the rotation
    v_inv: Tensor  # (B, d, d) its inverse, computed (not Vᵀ: V is orthogonal to rounding)
    w_f: Tensor  # (B, L, d₂ + 1, width): F's W, b its last row
    u_f: Tensor  # (B, L, width + 1, d₁): F's U, c its last row
    w_g: Tensor  # (B, L, d₁ + 1, width): G's
    u_g: Tensor  # (B, L, width + 1, d₂)
    perms: Tensor  # (B, L − 1, d) π_l: z ↦ z[perm]
    inverse: Tensor  # (B, L − 1, d) π_l⁻¹


@register_alignment
class RevNetAlignment(Alignment):
    name = "revnet"
    trainable = True

    width: ClassVar[int] = 64  # hidden width of each coupling's F and G
    depth: ClassVar[int] = 2  # coupling blocks

    @classmethod
    def describe(cls, state: dict) -> dict:
        """The network's shape: its coupling blocks' hidden width and their number."""
        return {"width": cls.width, "depth": cls.depth}

    def __init__(self, d: int, k: int, count: int = 1, seed: int | Sequence[int] = 0):
        super().__init__(d, k, count)
        L, w = self.depth, self.width
        d1 = d // 2
        d2 = d - d1
        draws, perms, w_fs, w_gs = [], [], [], []
        for s in slice_seeds(seed, count):  # one generator per slice, drawn in this order
            g = torch.Generator().manual_seed(s)
            draws.append(torch.randn(d, k, generator=g))  # = haar_basis's draw for seed s
            perms.append(torch.stack([torch.randperm(d, generator=g) for _ in range(L - 1)])
                         if L > 1 else torch.zeros(0, d, dtype=torch.long))
            w_fs.append(torch.randn(L, d2, w, generator=g) / math.sqrt(max(d2, 1)))
            w_gs.append(torch.randn(L, d1, w, generator=g) / math.sqrt(max(d1, 1)))
        bias = torch.zeros(count, L, 1, w)  # b = 0
        perm = torch.stack(perms)  # (A, L − 1, d)
        order = torch.arange(d).repeat(count, 1)  # where each output coordinate comes from
        for step in range(L - 1):
            order = order.gather(1, perm[:, step])
        v0 = completed_basis(orthonormal_columns(torch.stack(draws)))  # (A, d, d)
        self.v_skew = nn.Parameter(torch.zeros(count, d, d))  # (A, d, d) → A (upper part)
        # V₀[:, order[j]] = Q₀[:, j]: at init f(h)[j] = Q₀[:, j]ᵀ h
        self.register_buffer("v_base", v0.gather(2, order.argsort(1)[:, None, :].expand(-1, d, -1)))
        self.register_buffer("perms", perm)
        self.w_f = nn.Parameter(torch.cat([torch.stack(w_fs), bias], dim=2))  # (A, L, d₂+1, w)
        self.u_f = nn.Parameter(torch.zeros(count, L, w + 1, d1))  # U = 0, c = 0
        self.w_g = nn.Parameter(torch.cat([torch.stack(w_gs), bias], dim=2))  # (A, L, d₁+1, w)
        self.u_g = nn.Parameter(torch.zeros(count, L, w + 1, d2))

    def factors(self) -> RevNetFactors:
        return self._factors(slice(None))

    def _factors_of_subset(self, slots: list[int]) -> RevNetFactors:
        return self._factors(slots)

    def _factors(self, at) -> RevNetFactors:
        """The factors of slices ``at`` (a slice or a list), V computed for those only."""
        perms, v = self.perms[at], cayley_times(self.v_skew[at], self.v_base[at])
        return RevNetFactors(v, torch.linalg.inv(v),
                             self.w_f[at], self.u_f[at], self.w_g[at], self.u_g[at],
                             perms, perms.argsort(-1))

    def interchange(self, h_base: Tensor, h_source: Tensor, factors: RevNetFactors) -> Tensor:
        B = factors.v.shape[0]
        n = h_base.numel() // (B * self.d)  # explicit, so N = 0 rows works too
        hb, hs = h_base.reshape(B, n, self.d), h_source.reshape(B, n, self.d)
        zb, zs = _forward(factors, hb), _forward(factors, hs)  # apart: equal inputs, equal bits
        swapped = torch.cat([zs[..., : self.k], zb[..., self.k :]], dim=-1)
        return (hb + (_inverse(factors, swapped) - _inverse(factors, zb))).reshape(h_base.shape)

    # -- f and f⁻¹ on their own ----------------------------------------------------------

    def transform(self, h: Tensor) -> Tensor:
        """f(h): (..., d) if count == 1, else (A, ..., d)."""
        return self._each(h, _forward)

    def inverse(self, z: Tensor) -> Tensor:
        """f⁻¹(z): (..., d) if count == 1, else (A, ..., d)."""
        return self._each(z, _inverse)

    def _each(self, x: Tensor, fn) -> Tensor:
        self._check_inputs(x, x)
        n = x.numel() // (self.count * self.d)
        return fn(self.factors(), x.reshape(self.count, n, self.d)).reshape(x.shape)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, width={self.width}, depth={self.depth}"


def _mlp(x: Tensor, w: Tensor, u: Tensor) -> Tensor:
    """tanh(x W + b) U + c for x (B, N, m), w = [W; b] (B, m + 1, width), u = [U; c]."""
    return _padded(torch.tanh(_padded(x) @ w)) @ u


def _padded(x: Tensor) -> Tensor:
    """[x, 1]: x (B, N, m) with a column of ones."""
    return torch.cat([x, x.new_ones(*x.shape[:-1], 1)], dim=-1)


def _permute(z: Tensor, perm: Tensor) -> Tensor:
    """z[..., perm] of each slice: z (B, N, d), perm (B, d)."""
    return z.gather(-1, perm.unsqueeze(1).expand_as(z))


def _forward(f: RevNetFactors, h: Tensor) -> Tensor:
    """f(h) for h (B, N, d)."""
    z = h @ f.v  # Vᵀ h, as rows
    d1 = f.u_f.shape[-1]
    L = f.w_f.shape[1]
    for l in range(L):
        x1, x2 = z[..., :d1], z[..., d1:]
        y1 = x1 + _mlp(x2, f.w_f[:, l], f.u_f[:, l])
        y2 = x2 + _mlp(y1, f.w_g[:, l], f.u_g[:, l])
        z = torch.cat([y1, y2], dim=-1)
        if l < L - 1:
            z = _permute(z, f.perms[:, l])
    return z


def _inverse(f: RevNetFactors, z: Tensor) -> Tensor:
    """f⁻¹(z) for z (B, N, d)."""
    d1 = f.u_f.shape[-1]
    L = f.w_f.shape[1]
    for l in reversed(range(L)):
        if l < L - 1:
            z = _permute(z, f.inverse[:, l])
        y1, y2 = z[..., :d1], z[..., d1:]
        x2 = y2 - _mlp(y1, f.w_g[:, l], f.u_g[:, l])
        x1 = y1 - _mlp(x2, f.w_f[:, l], f.u_f[:, l])
        z = torch.cat([x1, x2], dim=-1)
    return z @ f.v_inv
