"""The readout MLP shared by the recurrent reference models: d -> hidden -> GELU -> V."""

from torch import nn


def readout_mlp(d_in: int, d_hidden: int, vocab_size: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.GELU(), nn.Linear(d_hidden, vocab_size))
