"""A plain Elman RNN, added to numbench only through the plugin path.

    numbench train --arch-module baselines/architectures/rnn.py --arch rnn --task multi_object ...

h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh); the readout MLP reads h_t. Site ``hidden``
(d) is the whole state, so the model is Resumable and alignment training runs suffixes only.
See docs/adding-an-architecture.md for the walk-through.
"""

from dataclasses import dataclass

import torch
from torch import nn

from numbench.models import NumbenchModel, RecurrentRunner, Resumable, register_architecture


@dataclass
class RNNConfig:
    d_embed: int = 128
    d_hidden: int = 128
    d_readout: int = 512


@register_architecture
class ElmanRNN(RecurrentRunner, NumbenchModel, Resumable):
    arch = "rnn"
    family = "recurrent"  # trained without voids, like GRU and LSTM
    Config = RNNConfig
    state_sites = ("hidden",)

    def __init__(self, config: RNNConfig, vocabulary):
        super().__init__(config, vocabulary)
        self.embed = nn.Embedding(self.vocab_size, config.d_embed)
        self.rnn = nn.RNN(config.d_embed, config.d_hidden, nonlinearity="tanh", batch_first=True)
        self.readout = nn.Sequential(nn.Linear(config.d_hidden, config.d_readout), nn.GELU(),
                                     nn.Linear(config.d_readout, self.vocab_size))

    @property
    def sites(self) -> dict[str, int]:
        return {"hidden": self.config.d_hidden}

    def scan(self, ids: torch.Tensor, state: torch.Tensor | None = None):
        """Fused pass over ids (B, S) from state (B, d): (h at each position (B, S, d), h_S)."""
        h0 = None if state is None else state.unsqueeze(0).contiguous()
        out, hn = self.rnn(self.embed(ids), h0)
        return out, hn.squeeze(0)

    def site_from_state(self, state: torch.Tensor) -> torch.Tensor:
        return state

    def state_from_site(self, h: torch.Tensor) -> torch.Tensor:
        return h
