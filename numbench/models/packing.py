"""Rows of different lengths packed token after token, with no padding between them.

A causal model's position-wise layers (LayerNorm, projections, MLP) do not care which row a
token belongs to, so they can run on the packed tokens (N, d) alone; only attention needs
the rows, and gets them by :meth:`Packing.pad` and back by :meth:`Packing.unpad`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Packing:
    """Row b's ``lengths[b]`` tokens, row after row: token t is row ``rows[t]``'s place
    ``cols[t]``; ``starts[b]`` is the index of row b's first token."""

    rows: torch.Tensor  # (N,)
    cols: torch.Tensor  # (N,)
    starts: torch.Tensor  # (B,)
    width: int  # the longest row

    @classmethod
    def of(cls, lengths: torch.Tensor) -> "Packing":
        lengths = lengths.long()
        B = len(lengths)
        starts = torch.cumsum(lengths, 0) - lengths
        rows = torch.repeat_interleave(torch.arange(B, device=lengths.device), lengths)
        cols = torch.arange(len(rows), device=lengths.device) - starts[rows]
        return cls(rows, cols, starts, int(lengths.max()) if B else 0)

    @property
    def batch(self) -> int:
        return len(self.starts)

    def pad(self, z: torch.Tensor) -> torch.Tensor:
        """(N, ...) packed → (B, width, ...) with zeros past each row's end."""
        flat = z.new_zeros((self.batch * self.width,) + z.shape[1:])
        flat = flat.index_copy(0, self.rows * self.width + self.cols, z)
        return flat.view((self.batch, self.width) + z.shape[1:])

    def unpad(self, z: torch.Tensor) -> torch.Tensor:
        """(B, width, ...) → (N, ...): each row's first ``lengths[b]`` places, packed."""
        flat = z.reshape((self.batch * self.width,) + z.shape[2:])
        return flat.index_select(0, self.rows * self.width + self.cols)
