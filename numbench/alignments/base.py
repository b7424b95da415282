"""The alignment contract: a rank-k projector P that interchanges part of an activation.

Every alignment computes the interchange  h' = h_b + P (h_s − h_b)  for base and source
activations of width d. P is written as a product of two thin factors,

    P = L R,   L: (d, k),  R: (k, d),   R L = I_k,

so applying it costs O(N d k) for N vectors, and any matrix factorization behind L and R
(QR, matrix exponential, solve) is done once per step by :meth:`Alignment.factors`, not
once per vector.

**Batching.** One module holds ``count`` = A independent alignments of the same (d, k):
every parameter and buffer has a leading dimension A, and slice ``[a]`` belongs to
alignment a alone, so each gets exactly the gradients it would get on its own (the
factorizations are batched over A). With ``count == 1`` inputs are ``(..., d)``; with
``count > 1`` they are ``(A, ..., d)`` and alignment a edits ``h[a]``. One batched
matmul applies all A.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Sequence

import torch
from torch import Tensor, nn

#: (L (A, d, k), R (A, k, d)): the thin factors of the A projectors, P = L @ R.
Factors = tuple[Tensor, Tensor]


def slice_seeds(seed: int | Sequence[int], count: int) -> list[int]:
    """The seed of each slice: ``seed, seed+1, …`` for an int, or the given list."""
    if isinstance(seed, int):
        return [seed + a for a in range(count)]
    seeds = [int(s) for s in seed]
    if len(seeds) != count:
        raise ValueError(f"got {len(seeds)} seeds for count={count}")
    return seeds


def seeded_normal(seed: int | Sequence[int], count: int, *shape: int) -> Tensor:
    """(count, *shape) standard normal, slice a drawn from its own generator (the global
    RNG is never touched), so slice a of a batch equals a count-1 draw with its seed."""
    gens = [torch.Generator().manual_seed(s) for s in slice_seeds(seed, count)]
    return torch.stack([torch.randn(*shape, generator=g) for g in gens])


def orthonormal_columns(w: Tensor) -> Tensor:
    """Q of the reduced QR of ``w`` (..., d, k), signs fixed so diag(R) > 0.

    With the sign fix Q is the unique Gram–Schmidt basis of w's columns, a smooth
    function of w wherever w has full column rank; an orthonormal w maps to itself.
    """
    q, r = torch.linalg.qr(w)
    sign = torch.where(r.diagonal(dim1=-2, dim2=-1) < 0, -1.0, 1.0).to(w.dtype)
    return q * sign.unsqueeze(-2)


def cayley_times(v_skew: Tensor, v_base: Tensor, x: Tensor | None = None) -> Tensor:
    """V @ x (or V itself when x is None) for V = V₀ (I − A)⁻¹ (I + A), the Cayley map
    around an orthogonal base ``v_base`` (A, d, d) of the skew-symmetric A = B − Bᵀ, B the
    strict upper triangle of ``v_skew`` (A, d, d). I − A is always invertible (its singular
    values are ≥ 1), so V is orthogonal for any ``v_skew``; V = V₀ at ``v_skew`` = 0. Every
    one of the d(d−1)/2 free entries rotates the whole space, which is what lets a subspace
    turn fast under Adam (docs/alignments.md). Costs one d×d LU solve with x's columns."""
    upper = v_skew.triu(1)
    skew = upper - upper.mT
    eye = torch.eye(skew.shape[-1], dtype=skew.dtype, device=skew.device)
    x = eye.expand_as(skew) if x is None else x
    return v_base @ torch.linalg.solve(eye - skew, x + skew @ x)


def haar_basis(seed: int | Sequence[int], count: int, d: int, k: int) -> Tensor:
    """(count, d, k) Haar-random orthonormal columns, slice a from its own seed."""
    return orthonormal_columns(seeded_normal(seed, count, d, k))


class Alignment(nn.Module, ABC):
    """Base class of every alignment kind. Subclasses set ``name`` and ``trainable`` and
    implement :meth:`factors`; their constructor takes ``(d, k, count=1, seed=0)``.

    Invariant: every parameter and buffer has leading dimension ``count`` (that is what
    makes :meth:`slice_state` / :meth:`load_slice` generic).
    """

    name: ClassVar[str]
    trainable: ClassVar[bool] = True

    def __init__(self, d: int, k: int, count: int = 1):
        super().__init__()
        if not 1 <= k <= d:
            raise ValueError(f"subspace size k={k} must be in 1..d={d}")
        if count < 1:
            raise ValueError(f"count={count} must be ≥ 1")
        self.d, self.k, self.count = int(d), int(k), int(count)

    @abstractmethod
    def factors(self) -> Factors:
        """L (A, d, k) and R (A, k, d) with P = L R. Call once per step; reuse via
        :meth:`apply` when one step edits several times (prefix interchanges)."""

    def forward(self, h_base: Tensor, h_source: Tensor) -> Tensor:
        """h_b + P (h_s − h_b): (..., d) if count == 1, else (A, ..., d)."""
        return self.apply(h_base, h_source, self.factors())

    def apply(self, h_base: Tensor, h_source: Tensor, factors: Factors) -> Tensor:
        """:meth:`forward` with precomputed ``factors``."""
        self._check_inputs(h_base, h_source)
        return self.interchange(h_base, h_source, factors)

    def interchange(self, h_base: Tensor, h_source: Tensor, factors: Factors) -> Tensor:
        """h_b + P (h_s − h_b) for the B alignments whose ``factors`` (B, d, k), (B, k, d)
        are given, on inputs (B, ..., d) (or (..., d) when B = 1), unchecked: what
        :meth:`apply` computes, for a subset of the slices too (:meth:`factors_of`)."""
        left, right = factors
        shape = h_base.shape
        B = left.shape[0]
        n = h_base.numel() // (B * self.d)  # explicit, so N = 0 rows works too
        diff = (h_source - h_base).reshape(B, n, self.d)  # (B, N, d)
        coords = diff @ right.mT  # (B, N, k): coordinates in the aligned subspace
        return h_base + (coords @ left.mT).reshape(shape)

    def factors_of(self, slots: Sequence[int]) -> Factors:
        """The factors of alignments ``slots`` only, in that order: bit for bit the
        slices ``slots`` of :meth:`factors` (each slice is factorized on its own). The
        engine calls it when some fits of a module have stopped, so their slices cost
        nothing; kinds whose factors are costly override :meth:`_factors_of_subset`."""
        slots = [int(a) for a in slots]
        if slots == list(range(self.count)):
            return self.factors()
        return self._factors_of_subset(slots)

    def _factors_of_subset(self, slots: list[int]) -> Factors:
        left, right = self.factors()
        return left[slots], right[slots]

    def projector(self) -> Tensor:
        """P: (d, d) if count == 1, else (A, d, d)."""
        left, right = self.factors()
        p = left @ right
        return p[0] if self.count == 1 else p

    # -- per-slice state: snapshot the best alignment, or copy one into a batch ----------

    def slice_state(self, a: int) -> dict[str, Tensor]:
        """A detached copy of alignment a's parameters and buffers (no leading A)."""
        return {key: value[a].detach().clone() for key, value in self.state_dict().items()}

    def load_slice(self, a: int, state: dict[str, Tensor]) -> None:
        """Overwrite alignment a with ``state`` (from :meth:`slice_state`)."""
        own = self.state_dict(keep_vars=True)
        if set(own) != set(state):
            raise KeyError(f"slice state keys {sorted(state)} ≠ {sorted(own)}")
        with torch.no_grad():
            for key, value in state.items():
                own[key][a].copy_(value)

    def single(self, a: int) -> "Alignment":
        """A count-1 copy of alignment a (same class, d and k)."""
        one = type(self)(self.d, self.k, count=1)
        one.load_slice(0, self.slice_state(a))
        return one

    def extra_repr(self) -> str:
        return f"d={self.d}, k={self.k}, count={self.count}"

    def _check_inputs(self, h_base: Tensor, h_source: Tensor) -> None:
        if h_base.shape != h_source.shape:
            raise ValueError(f"base {tuple(h_base.shape)} and source "
                             f"{tuple(h_source.shape)} shapes differ")
        if h_base.shape[-1] != self.d:
            raise ValueError(f"activations have width {h_base.shape[-1]}, alignment d={self.d}")
        if self.count > 1 and (h_base.dim() < 2 or h_base.shape[0] != self.count):
            raise ValueError(f"a batch of {self.count} alignments expects inputs "
                             f"(A={self.count}, ..., d), got {tuple(h_base.shape)}")

