"""LSTM reference model: embedding -> one LSTM layer -> readout MLP on h.

Site ``hidden`` = concat(h, c), width 2·d_hidden: together they are the whole state, so an
interchange there can restart the recurrence (``resume``). The fused ``nn.LSTM`` returns h at
every position but not c; ``site_sequence`` recovers c from the same gates in one cheap
elementwise loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .contract import NumbenchModel, Resumable
from .readout import readout_mlp
from .recurrent import RecurrentRunner
from .registry import register_architecture


@dataclass
class LSTMConfig:
    d_embed: int = 128
    d_hidden: int = 64
    d_readout: int = 512


@register_architecture
class LSTMModel(RecurrentRunner, NumbenchModel, Resumable):
    arch = "lstm"
    family = "recurrent"
    Config = LSTMConfig
    state_sites = ("hidden",)

    def __init__(self, config: LSTMConfig, vocabulary):
        super().__init__(config, vocabulary)
        self.embed = nn.Embedding(self.vocab_size, config.d_embed)
        self.rnn = nn.LSTM(config.d_embed, config.d_hidden, batch_first=True)
        self.readout = readout_mlp(config.d_hidden, config.d_readout, self.vocab_size)

    @property
    def sites(self) -> dict[str, int]:
        return {"hidden": 2 * self.config.d_hidden}

    def scan(self, ids, state=None):
        """Fused pass; returns (h at each position (B, S, d), (h_n, c_n) each (1, B, d))."""
        return self.rnn(self.embed(ids), state)

    def site_from_state(self, state) -> torch.Tensor:
        h, c = state
        return torch.cat([h.squeeze(0), c.squeeze(0)], dim=-1)  # (B, 2d)

    def state_from_site(self, site: torch.Tensor):
        h, c = site.split(self.config.d_hidden, dim=-1)
        return h.unsqueeze(0).contiguous(), c.unsqueeze(0).contiguous()

    def output_from_site(self, site: torch.Tensor) -> torch.Tensor:
        return site[..., : self.config.d_hidden]

    def stepper(self):
        """One LSTM step on (n, 2d) site vectors, the vocabulary's input gates precomputed."""
        w_hh, d = self.rnn.weight_hh_l0.T, self.config.d_hidden
        gi_table = (self.embed.weight @ self.rnn.weight_ih_l0.T + self.rnn.bias_ih_l0
                    + self.rnn.bias_hh_l0)  # (V, 4d)

        def step(site: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
            h, c = site[:, :d], site[:, d:]
            i, f, g, o = torch.addmm(gi_table[tokens], h, w_hh).chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            return torch.cat([torch.sigmoid(o) * torch.tanh(c), c], dim=-1)

        return step

    def site_sequence(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T, 2d): h from the fused pass, c from the gates given h_{t-1}."""
        x = self.embed(ids)
        hs, _ = self.rnn(x)  # (B, T, d)
        h_prev = torch.cat([torch.zeros_like(hs[:, :1]), hs[:, :-1]], dim=1)
        gates = x @ self.rnn.weight_ih_l0.T + h_prev @ self.rnn.weight_hh_l0.T
        gates = gates + self.rnn.bias_ih_l0 + self.rnn.bias_hh_l0  # (B, T, 4d): i f g o
        i, f, g, _ = gates.chunk(4, dim=-1)
        i, f, g = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g)
        c, cs = torch.zeros_like(hs[:, 0]), []
        for t in range(ids.shape[1]):
            c = f[:, t] * c + i[:, t] * g[:, t]
            cs.append(c)
        return torch.cat([hs, torch.stack(cs, dim=1)], dim=-1)
