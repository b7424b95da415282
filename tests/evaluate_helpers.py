"""A tiny real model and a small engine budget, so whole evaluations run in seconds; a
user's alignment method file."""

from numbench.evaluate import Settings
from numbench.protocol import engine_config

TINY_ENGINE = engine_config(max_steps=6, eval_every=3, fits_per_forward=16, eval_chunk=1000)


def tiny_settings(seed=0):
    return Settings(seed=seed, engine=TINY_ENGINE)


# a user's method file, as docs/alignments.md shows how to write one
MINE = '''"""A user's method: an orthogonal subspace, Q_k = qr(W), W free."""
import torch
from torch import nn

from numbench.alignments import Alignment, register_alignment
from numbench.alignments.base import haar_basis, orthonormal_columns


@register_alignment
class Mine(Alignment):
    name = "mine"
    trainable = True

    def __init__(self, d, k, count=1, seed=0):
        super().__init__(d, k, count)
        self.w = nn.Parameter(haar_basis(seed, count, d, k))  # (A, d, k)

    def factors(self):
        q = orthonormal_columns(self.w)
        return q, q.mT
'''
