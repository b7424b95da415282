"""Alignment functions of Distributed Alignment Search (PROTOCOL §4; docs/alignments.md).

Each kind is a module h' = f⁻¹(D f(h_s) + (I − D) f(h_b)) for an invertible f and a
diagonal mask D; the protocol's kinds are its fast special case, h' = h_b + P (h_s − h_b)
with a rank-k projector P = L R (``boundless``: a soft mask; ``revnet``: a nonlinear f). A
module can hold ``count`` independent alignments applied to stacked inputs in one batched
call. A kind fitted from data (``pca``, ``probe``) sets its slices in an optional fit step.
"""

# Import order is registration order, which is the order ALIGNMENTS lists the kinds.
from . import orthogonal, linear, sd_linear, baselines, pca, probe  # noqa: F401, I001
from . import boundless, revnet  # noqa: F401, I001
from .base import Alignment, Factors, has_fit_step
from .baselines import FullAlignment, RandomAlignment
from .boundless import BoundlessAlignment, learned_size_of
from .linear import COND_BOUND, LOG_SCALE_BOUND, LinearAlignment
from .orthogonal import OrthogonalAlignment
from .pca import PCAAlignment
from .probe import ProbeAlignment
from .registry import (ALIGNMENTS, alignment_paths, alignment_record, load_alignment_module,
                       make_alignment, register_alignment, resolve_alignment)
from .revnet import RevNetAlignment
from .sd_linear import SDLinearAlignment

__all__ = [
    "Alignment", "Factors", "ALIGNMENTS", "make_alignment", "register_alignment",
    "OrthogonalAlignment", "LinearAlignment", "SDLinearAlignment", "FullAlignment",
    "RandomAlignment", "PCAAlignment", "ProbeAlignment", "BoundlessAlignment",
    "RevNetAlignment", "learned_size_of", "COND_BOUND", "LOG_SCALE_BOUND",
    "alignment_paths", "alignment_record", "has_fit_step", "load_alignment_module",
    "resolve_alignment",
]
