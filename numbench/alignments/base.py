"""The alignment contract: an interchange of part of an activation, through an invertible map.

Every alignment computes, for base and source activations of width d,

    h' = f⁻¹( D f(h_s) + (I − D) f(h_b) ),

f an invertible map of R^d (its own, learned or fixed) and D a diagonal mask: the 0/1 mask
D_k of the first k coordinates (``boundless``: a learned soft one). The fast special case
is a *linear* f = M: then h' = h_b + P (h_s − h_b) with the rank-k projector P = M⁻¹ D_k M,
written as a product of two thin factors,

    P = L R,   L: (d, k),   R: (k, d),   R L = I_k,

so applying it costs O(N d k) for N vectors. Every protocol kind is such a projector.

**Factors.** Whatever does not depend on the activations — a projector's L and R (QR,
matrix exponential, solve), a network's weights or rotation — is computed once per step by
:meth:`Alignment.factors`, not once per vector, and handed to :meth:`Alignment.interchange`,
which computes h' from it alone. For a projector kind the factors are the pair (L, R) and
the default ``interchange`` applies it; a nonlinear kind returns any object of its own
(a tuple or dict of tensors, each with leading dimension A) and overrides ``interchange``
(docs/alignments.md, "Adding an alignment").

**Batching.** One module holds ``count`` = A independent alignments of the same (d, k):
every parameter and buffer has a leading dimension A, and slice ``[a]`` belongs to
alignment a alone, so each gets exactly the gradients it would get on its own (the
factorizations are batched over A). With ``count == 1`` inputs are ``(..., d)``; with
``count > 1`` they are ``(A, ..., d)`` and alignment a edits ``h[a]``. One batched
matmul applies all A.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Sequence

import torch
from torch import Tensor, nn

#: (L (A, d, k), R (A, k, d)): the thin factors of the A projectors, P = L @ R — what a
#: projector kind's :meth:`Alignment.factors` returns. A nonlinear kind's factors are any
#: object of its own (tensors with leading dimension A in tuples, lists or dicts).
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


def has_fit_step(cls: type["Alignment"]) -> bool:
    """Whether alignment class ``cls`` defines a fit step (:meth:`Alignment.fit`)."""
    return cls.fit is not Alignment.fit


def haar_basis(seed: int | Sequence[int], count: int, d: int, k: int) -> Tensor:
    """(count, d, k) Haar-random orthonormal columns, slice a from its own seed."""
    return orthonormal_columns(seeded_normal(seed, count, d, k))


def completed_basis(q_k: Tensor) -> Tensor:
    """An orthogonal (..., d, d) whose first k columns are ``q_k`` (..., d, k) (orthonormal
    columns) and whose others span their complement (from a complete QR: no RNG)."""
    q, _ = torch.linalg.qr(q_k, mode="complete")
    return torch.cat([q_k, q[..., q_k.shape[-1]:]], dim=-1)


def take_slices(factors: Any, slots: Sequence[int]) -> Any:
    """``factors`` with every tensor cut to its slices ``slots`` (along its leading
    dimension A), through tuples (named ones too), lists and dicts; what the default
    :meth:`Alignment._factors_of_subset` keeps of all the slices' factors."""
    if isinstance(factors, Tensor):
        return factors[list(slots)]
    if isinstance(factors, dict):
        return {key: take_slices(value, slots) for key, value in factors.items()}
    if isinstance(factors, tuple) and hasattr(factors, "_fields"):  # a NamedTuple
        return type(factors)(*(take_slices(value, slots) for value in factors))
    if isinstance(factors, (tuple, list)):
        return type(factors)(take_slices(value, slots) for value in factors)
    raise TypeError(f"cannot take slices of factors of type {type(factors).__name__}: "
                    "override _factors_of_subset")


class Alignment(nn.Module, ABC):
    """Base class of every alignment kind. Subclasses set ``name`` and ``trainable`` and
    implement :meth:`factors`; their constructor takes ``(d, k, count=1, seed=0)``. A
    projector kind returns (L, R) from :meth:`factors`; a nonlinear kind returns what its
    :meth:`interchange`, which it overrides, needs. A method fitted from data also
    overrides :meth:`fit`; one whose state moves with training (``boundless``'s
    temperature) overrides :meth:`after_step`.

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
    def factors(self) -> Factors | Any:
        """The per-step precomputation of all A slices, what :meth:`interchange` applies:
        for a projector kind L (A, d, k) and R (A, k, d) with P = L R; for a nonlinear
        kind any object of its own (every tensor in it with leading dimension A, so
        :meth:`factors_of` can cut it generically). Call once per step; reuse via
        :meth:`apply` when one step edits several times (prefix interchanges)."""

    def fit(self, slot: int, h_base: Tensor, h_source: Tensor, values: Tensor | None) -> None:
        """Optional fit step of a method fitted from data (``pca``, ``probe``): set alignment
        ``slot``'s tensors from its training pairs before any training or scoring. The
        engine calls it once per fit, without gradients, on the model's device, only where a
        subclass overrides it (:func:`has_fit_step`), with the site's activations of the
        training pairs: ``h_base`` (N, d) the base's at i, ``h_source`` (N, d) the source's
        at j (in prefix mode, at i = j), and ``values`` (N, |V|) int64, the value each pair
        writes into each variable of the set (the source's, after π for the permuted
        control; None when the caller has none). The default does nothing."""

    def after_step(self, slots: list[int]) -> None:
        """Called by the engine without gradients after every optimizer step, with the
        alignments ``slots`` that took it (each fit's slice once per step of its own): for
        state that moves with training but not by gradient (``boundless`` counts its steps
        to anneal its mask's temperature). The forward cannot count steps: the engine may
        compute factors several times a step (once per length group) and apply them at
        several positions (prefix mode). The default does nothing."""

    def forward(self, h_base: Tensor, h_source: Tensor) -> Tensor:
        """f⁻¹(D f(h_s) + (I − D) f(h_b)) — a projector's h_b + P (h_s − h_b): (..., d) if
        count == 1, else (A, ..., d)."""
        return self.apply(h_base, h_source, self.factors())

    def apply(self, h_base: Tensor, h_source: Tensor, factors: Factors | Any) -> Tensor:
        """:meth:`forward` with precomputed ``factors``."""
        self._check_inputs(h_base, h_source)
        return self.interchange(h_base, h_source, factors)

    def interchange(self, h_base: Tensor, h_source: Tensor, factors: Factors | Any) -> Tensor:
        """The interchange of the B alignments whose ``factors`` are given (from
        :meth:`factors` or :meth:`factors_of`), on inputs (B, ..., d) (or (..., d) when
        B = 1), unchecked: what :meth:`apply` computes, for a subset of the slices too.
        It reads the slices' tensors from ``factors`` alone, never from the module (the
        engine passes a subset's). The general hook: the engine calls it, and a nonlinear
        kind overrides it. This default is a projector's, h_b + P (h_s − h_b) with
        ``factors`` = L (B, d, k), R (B, k, d)."""
        left, right = factors
        shape = h_base.shape
        B = left.shape[0]
        n = h_base.numel() // (B * self.d)  # explicit, so N = 0 rows works too
        diff = (h_source - h_base).reshape(B, n, self.d)  # (B, N, d)
        coords = diff @ right.mT  # (B, N, k): coordinates in the aligned subspace
        return h_base + (coords @ left.mT).reshape(shape)

    def factors_of(self, slots: Sequence[int]) -> Factors | Any:
        """The factors of alignments ``slots`` only, in that order: bit for bit the
        slices ``slots`` of :meth:`factors` (each slice is factorized on its own). The
        engine calls it once per forward with the slices of the fits in it, so a stopped
        fit's slice costs nothing; kinds whose factors are costly override
        :meth:`_factors_of_subset`."""
        slots = [int(a) for a in slots]
        if slots == list(range(self.count)):
            return self.factors()
        return self._factors_of_subset(slots)

    def _factors_of_subset(self, slots: list[int]) -> Factors | Any:
        """All the factors, cut to ``slots`` (:func:`take_slices`: any tensors with
        leading dimension A, in tuples, lists or dicts)."""
        return take_slices(self.factors(), slots)

    @classmethod
    def describe(cls, state: dict) -> dict:
        """What a result records of a fitted slice beyond its IIA (``state``: the slice's
        ``slice_state``, e.g. a fit result's): a size it learned, its shape. Nothing here."""
        return {}

    def projector(self) -> Tensor:
        """P = L R: (d, d) if count == 1, else (A, d, d). Projector kinds only (a
        nonlinear kind's interchange is no matrix)."""
        factors = self.factors()
        if not (isinstance(factors, tuple) and len(factors) == 2
                and all(isinstance(t, Tensor) for t in factors)):
            raise TypeError(f"alignment '{self.name}' is not a projector: its interchange "
                            "is nonlinear")
        left, right = factors
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


class FittedBasis(Alignment):
    """P = Q_k Q_kᵀ for an orthonormal basis Q_k that a method's :meth:`fit` sets from the
    training pairs (a buffer (A, d, k); the first k coordinate axes until then). Untrained."""

    trainable = False

    def __init__(self, d: int, k: int, count: int = 1, seed: int | Sequence[int] = 0):
        super().__init__(d, k, count)
        self.register_buffer("basis", torch.eye(d, k).repeat(count, 1, 1))  # (A, d, k)

    def factors(self) -> Factors:
        return self.basis, self.basis.mT

