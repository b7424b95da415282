"""Linear alignment (LAF): h' = h_b + M⁻¹ D_k M (h_s − h_b), an oblique projection.

M is any invertible d×d matrix, D_k the 0/1 mask of the first k coordinates. We
parametrize M by its singular value decomposition,

    M = U diag(e^s) Vᵀ,   U, V ∈ O(d),   s = 2·tanh(s_raw) ∈ (−2, 2)^d,

so M is always invertible with cond(M) = e^(max s − min s) < e^4 (``COND_BOUND``), and
its inverse is exact: M⁻¹ = V diag(e^−s) Uᵀ. The projector only needs M's first k rows
and M⁻¹'s first k columns, which involve only U's first k rows:

    R = M[:k, :]  = U_kᵀ diag(e^s) Vᵀ,    L = M⁻¹[:, :k] = V diag(e^−s) U_k,

with U_k := (U[:k, :])ᵀ (d, k) orthonormal. So U_k is parametrized like the orthogonal
alignment's Q_k (sign-fixed QR of a free d×k matrix), and V by a Cayley transform around a
fixed orthogonal base V₀ (identity at init; set by :meth:`set_factors`):

    V = V₀ (I − A)⁻¹ (I + A),   A = B − Bᵀ skew-symmetric (B strictly upper, free).

I − A is always invertible (its singular values are ≥ 1), and only V times the 2k columns
of diag(e^∓s) U_k is needed, so a step costs one d×d LU solve with 2k right-hand sides
(the matrix exponential's backward was ~30× slower at d = 256).

Init: U_k Haar-random from the seed (the same draw and scale as ``orthogonal``),
s = 0, V = I; so M is orthogonal and the alignment starts *equal* to the orthogonal one.
V stays in V₀·SO(d), which loses nothing: flipping a row of M (det M < 0) leaves P
unchanged. The Cayley image misses only rotations with an eigenvalue −1 (measure zero;
:meth:`set_factors` reaches any V by moving the base).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from .base import Alignment, Factors, cayley_times, haar_basis, orthonormal_columns
from .registry import register_alignment

LOG_SCALE_BOUND = 2.0  # |s_i| < 2
COND_BOUND = math.exp(2 * LOG_SCALE_BOUND)  # cond(M) < e^4 ≈ 54.6


@register_alignment
class LinearAlignment(Alignment):
    name = "linear"
    trainable = True

    def __init__(self, d: int, k: int, count: int = 1, seed: int | Sequence[int] = 0):
        super().__init__(d, k, count)
        self.u_weight = nn.Parameter(haar_basis(seed, count, d, k))  # → U_k
        self.log_scale_raw = nn.Parameter(torch.zeros(count, d))  # (A, d) → s
        self.v_skew = nn.Parameter(torch.zeros(count, d, d))  # (A, d, d) → B (upper part)
        self.register_buffer("v_base", torch.eye(d).repeat(count, 1, 1))  # (A, d, d) → V₀

    # -- the factors of M = U diag(e^s) Vᵀ ------------------------------------------------

    def u_k(self) -> Tensor:
        """U_k = (U[:k, :])ᵀ: (A, d, k), orthonormal columns."""
        return orthonormal_columns(self.u_weight)

    def log_scale(self) -> Tensor:
        """s: (A, d), each in (−2, 2)."""
        return _log_scale(self.log_scale_raw)

    def v(self, x: Tensor | None = None) -> Tensor:
        """V @ x for x (A, d, m), or V itself (A, d, d) orthogonal when x is None."""
        return cayley_times(self.v_skew, self.v_base, x)

    def factors(self) -> Factors:
        return _factors(self.k, self.u_weight, self.log_scale_raw, self.v_skew, self.v_base)

    def _factors_of_subset(self, slots: list[int]) -> Factors:
        return _factors(self.k, self.u_weight[slots], self.log_scale_raw[slots],
                        self.v_skew[slots], self.v_base[slots])

    def matrix(self) -> Tensor:
        """One full M (A, d, d) with these factors: U_k completed to an orthogonal U (the
        completion is arbitrary and does not change P). For analysis and tests."""
        u_k = self.u_k()
        complete, _ = torch.linalg.qr(u_k, mode="complete")
        u = torch.cat([u_k, complete[..., self.k:]], dim=-1).mT  # rows 0..k-1 = U_kᵀ
        return u @ torch.diag_embed(self.log_scale().exp()) @ self.v().mT

    def set_factors(self, u_k: Tensor | None = None, log_scale: Tensor | None = None,
                    v: Tensor | None = None) -> None:
        """Set any of U_k ((A,) d, k; orthonormal), s ((A,) d; each in (−2, 2)) and
        V ((A,) d, d; orthogonal) for every slice. E.g. ``set_factors(q_k, 0, eye)``
        makes M = Qᵀ, the orthogonal alignment with basis q_k."""
        with torch.no_grad():
            if u_k is not None:
                self.u_weight.copy_(u_k.expand_as(self.u_weight))
            if log_scale is not None:
                s = torch.as_tensor(log_scale, dtype=self.log_scale_raw.dtype)
                if s.abs().max() >= LOG_SCALE_BOUND:
                    raise ValueError(f"log scales must lie in (−{LOG_SCALE_BOUND}, "
                                     f"{LOG_SCALE_BOUND})")
                self.log_scale_raw.copy_(torch.atanh(s / LOG_SCALE_BOUND)
                                         .expand_as(self.log_scale_raw))
            if v is not None:
                self.v_base.copy_(v.expand_as(self.v_base))
                self.v_skew.zero_()


# -- the math, on the parameters of any subset of the slices ------------------------------

def _log_scale(raw: Tensor) -> Tensor:
    return LOG_SCALE_BOUND * torch.tanh(raw)


def _factors(k: int, u_weight: Tensor, log_scale_raw: Tensor, v_skew: Tensor,
             v_base: Tensor) -> Factors:
    """M⁻¹[:, :k] (A, d, k) and M[:k, :] (A, k, d) from the parameters of A slices."""
    u_k, s = orthonormal_columns(u_weight), _log_scale(log_scale_raw)
    scaled = torch.cat([u_k * (-s).exp().unsqueeze(-1), u_k * s.exp().unsqueeze(-1)], -1)
    left, right_t = cayley_times(v_skew, v_base, scaled).split(k, dim=-1)  # V e^−s U_k, V e^s U_k
    return left, right_t.mT
