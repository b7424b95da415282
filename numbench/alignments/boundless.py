"""Boundless DAS (Wu et al. 2023): a learned rotation and a learned soft mask over its
coordinates, the mask's temperature annealed over training.

    h' = V (m ⊙ Vᵀ h_s + (1 − m) ⊙ Vᵀ h_b) = h_b + V diag(m) Vᵀ (h_s − h_b),
    m = sigmoid(logits / τ),

the general form f⁻¹(D f(h_s) + (I − D) f(h_b)) with f = Vᵀ (a rotation) and the soft mask
D = diag(m). f is linear, so it is applied as a projector kind's factors, L = V diag(m)
and R = Vᵀ, with d columns (O(N d²) per step) instead of k: V diag(m) Vᵀ is no projector
while m is soft, and becomes one (rank = the learned size) as m hardens.

* **V** is ``orthogonal``'s rotation: V = V₀ (I − A)⁻¹ (I + A), A skew-symmetric and free
  (:func:`~numbench.alignments.base.cayley_times`), around a fixed base V₀ whose first k
  columns are ``orthogonal``'s initial Q_k for the same seed (completed to a rotation).
* **logits** (A, d) start at +1 on the first k coordinates and −1 on the others, so the
  mask is above ½ on exactly k coordinates (the learned size starts at k) and its hard
  version starts as ``orthogonal``'s initial subspace.
* **τ** is annealed geometrically from ``temperature_start`` to ``temperature_end`` over
  ``anneal_steps`` training steps, then held: τ_t = τ₀ (τ₁ / τ₀)^(min(t, T) / T), with t
  the alignment's own count of optimizer steps, the buffer ``steps`` (A,), which the
  engine advances through :meth:`after_step`. So τ depends on that slice's steps alone
  (deterministic, the same in any batch), a fit's kept state carries the τ it was scored
  at, and validation and scoring use the τ of the step reached (soft, as in training).
* **Learned size**: the number of coordinates whose mask is above ½ — those with a
  positive logit, whatever τ (:meth:`learned_size`, :func:`learned_size_of` of a kept
  state).

No size penalty is added: the engine's loss is the interchange's cross-entropy alone, so
the learned size is what that loss prefers from a start at k.
"""

from __future__ import annotations

import math
from typing import ClassVar, Mapping, Sequence

import torch
from torch import Tensor, nn

from .base import Alignment, Factors, cayley_times, completed_basis, haar_basis
from .registry import register_alignment


@register_alignment
class BoundlessAlignment(Alignment):
    name = "boundless"
    trainable = True

    temperature_start: ClassVar[float] = 1.0
    temperature_end: ClassVar[float] = 0.01
    anneal_steps: ClassVar[int] = 1000
    init_logit: ClassVar[float] = 1.0  # ± on the first k / other coordinates

    def __init__(self, d: int, k: int, count: int = 1, seed: int | Sequence[int] = 0):
        super().__init__(d, k, count)
        self.v_skew = nn.Parameter(torch.zeros(count, d, d))  # (A, d, d) → A (upper part)
        self.register_buffer("v_base", completed_basis(haar_basis(seed, count, d, k)))
        logits = torch.full((count, d), -self.init_logit)
        logits[:, :k] = self.init_logit
        self.mask_logits = nn.Parameter(logits)  # (A, d)
        self.register_buffer("steps", torch.zeros(count, dtype=torch.long))  # (A,)

    # -- the rotation, the temperature and the mask ---------------------------------------

    def rotation(self) -> Tensor:
        """V: (A, d, d), orthogonal."""
        return cayley_times(self.v_skew, self.v_base)

    @classmethod
    def temperature_at(cls, steps: Tensor) -> Tensor:
        """τ after ``steps`` training steps (any shape), float32."""
        t = steps.float().clamp(max=cls.anneal_steps) / cls.anneal_steps
        return cls.temperature_start * torch.exp(
            t * math.log(cls.temperature_end / cls.temperature_start))

    def temperature(self) -> Tensor:
        """τ of each slice: (A,)."""
        return self.temperature_at(self.steps)

    def mask(self) -> Tensor:
        """m = sigmoid(logits / τ): (A, d), each in (0, 1)."""
        return _mask(self.mask_logits, self.temperature())

    def learned_size(self, slot: int = 0) -> int:
        """The size alignment ``slot`` has learned: how many coordinates its mask keeps
        above ½ (positive logits; τ does not change which)."""
        return int((self.mask_logits[slot] > 0).sum())

    def factors(self) -> Factors:
        return _factors(self.v_skew, self.v_base, self.mask_logits, self.temperature())

    def _factors_of_subset(self, slots: list[int]) -> Factors:
        return _factors(self.v_skew[slots], self.v_base[slots], self.mask_logits[slots],
                        self.temperature_at(self.steps[slots]))

    @classmethod
    def describe(cls, state: dict) -> dict:
        """The size the slice learned (``learned_size_of``)."""
        return {"learned_size": learned_size_of(state)}

    def after_step(self, slots: list[int]) -> None:
        self.steps[slots] += 1

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, temperature {self.temperature_start} → "
                f"{self.temperature_end} over {self.anneal_steps} steps")


def learned_size_of(state: Mapping[str, Tensor]) -> int:
    """The learned size of a kept ``boundless`` slice (``slice_state``, a fit result's
    ``state``): coordinates with a positive mask logit."""
    return int((torch.as_tensor(state["mask_logits"]) > 0).sum())


def _mask(logits: Tensor, tau: Tensor) -> Tensor:
    return torch.sigmoid(logits / tau.to(logits.dtype).unsqueeze(-1))


def _factors(v_skew: Tensor, v_base: Tensor, logits: Tensor, tau: Tensor) -> Factors:
    """L = V diag(m) (A, d, d), R = Vᵀ (A, d, d) from the state of A slices."""
    v = cayley_times(v_skew, v_base)
    # a matmul, not a broadcast product: the latter's backward sums over a dimension, and
    # a sum's bits may depend on how many slices share it (factors_of must not)
    return v @ torch.diag_embed(_mask(logits, tau)), v.mT
