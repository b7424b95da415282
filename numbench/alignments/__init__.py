"""Alignment functions of Distributed Alignment Search (PROTOCOL §4; docs/alignments.md).

Each kind is a module h' = h_b + P (h_s − h_b) with a rank-k projector P; a module can
hold ``count`` independent alignments applied to stacked inputs in one batched matmul.
"""

# Import order is registration order, which is the order ALIGNMENTS lists the kinds.
from . import orthogonal, linear, sd_linear, baselines  # noqa: F401, I001
from .base import Alignment, Factors
from .baselines import FullAlignment, RandomAlignment
from .linear import COND_BOUND, LOG_SCALE_BOUND, LinearAlignment
from .orthogonal import OrthogonalAlignment
from .registry import ALIGNMENTS, make_alignment, register_alignment
from .sd_linear import SDLinearAlignment

__all__ = [
    "Alignment", "Factors", "ALIGNMENTS", "make_alignment", "register_alignment",
    "OrthogonalAlignment", "LinearAlignment", "SDLinearAlignment", "FullAlignment",
    "RandomAlignment", "COND_BOUND", "LOG_SCALE_BOUND",
]
