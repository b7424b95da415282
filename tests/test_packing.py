"""Packing rows of different lengths without padding, and back."""

import torch

from numbench.models.packing import Packing


def test_pad_and_unpad_are_each_others_inverse_on_the_rows_places():
    lengths = torch.tensor([2, 0, 3, 1])
    rows = Packing.of(lengths)
    assert rows.rows.tolist() == [0, 0, 2, 2, 2, 3]
    assert rows.cols.tolist() == [0, 1, 0, 1, 2, 0]
    assert rows.starts.tolist() == [0, 2, 2, 5] and rows.width == 3
    z = torch.arange(1, 7, dtype=torch.float32)[:, None] * torch.tensor([1.0, -1.0])  # (6, 2)
    padded = rows.pad(z)
    assert padded.shape == (4, 3, 2)
    assert padded[:, :, 0].tolist() == [[1, 2, 0], [0, 0, 0], [3, 4, 5], [6, 0, 0]]
    assert torch.equal(rows.unpad(padded), z)
    # gradient flows through both ways, to the rows' own places only
    z.requires_grad_(True)
    g, = torch.autograd.grad(rows.pad(z).sum(), z)
    assert torch.equal(g, torch.ones_like(z))
