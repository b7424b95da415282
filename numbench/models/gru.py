"""GRU reference model: embedding -> one GRU layer -> readout MLP. Site ``hidden`` (d).

The fused ``nn.GRU`` runs whole sequences; an interchange at position i runs the prefix
fused, edits the state, and resumes the same weights from the edited state (``resume``),
so the prefix is never recomputed. ``prefix`` mode needs every state edited in turn, so it
steps one position at a time with the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .contract import NumbenchModel
from .speed import FusedResume
from .fused import GRUSuffix, double_columns, product_dtype
from .readout import readout_mlp
from .recurrent import RecurrentRunner
from .registry import register_architecture


@dataclass
class GRUConfig:
    d_embed: int = 128
    d_hidden: int = 128
    d_readout: int = 512


@register_architecture
class GRUModel(RecurrentRunner, NumbenchModel, FusedResume):
    arch = "gru"
    family = "recurrent"
    Config = GRUConfig
    state_sites = ("hidden",)
    fused_training = True  # train_suffix: models/fused.py
    bf16_training = True  # the stepper casts its products back to float32

    def __init__(self, config: GRUConfig, vocabulary):
        super().__init__(config, vocabulary)
        self.embed = nn.Embedding(self.vocab_size, config.d_embed)
        self.rnn = nn.GRU(config.d_embed, config.d_hidden, batch_first=True)
        self.readout = readout_mlp(config.d_hidden, config.d_readout, self.vocab_size)

    @property
    def sites(self) -> dict[str, int]:
        return {"hidden": self.config.d_hidden}

    # --- the recurrent runner's hooks ---
    def scan(self, ids: torch.Tensor, state: torch.Tensor | None = None):
        """Fused pass over ids (B, S) from state (B, d); returns (site vectors (B, S, d), state)."""
        h0 = None if state is None else state.unsqueeze(0).contiguous()
        out, hn = self.rnn(self.embed(ids), h0)  # (B, S, d), (1, B, d)
        return out, hn.squeeze(0)

    def stepper(self):
        """One GRU step on (n, d) states, the vocabulary's input gates precomputed."""
        w_hh, b_hh = self.rnn.weight_hh_l0.T, self.rnn.bias_hh_l0
        where = w_hh.device.type
        if torch.is_autocast_enabled(where):  # cast once, not every step
            low = torch.get_autocast_dtype(where)
            w_hh, b_hh = w_hh.to(low), b_hh.to(low)
        d = self.config.d_hidden
        gi_table = self.embed.weight @ self.rnn.weight_ih_l0.T + self.rnn.bias_ih_l0  # (V, 3d)

        def step(h: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
            # .float(): under a training step's bf16 autocast only the product is bf16
            gi, gh = gi_table.index_select(0, tokens), torch.addmm(b_hh, h, w_hh).float()
            r, z = torch.sigmoid(gi[:, : 2 * d] + gh[:, : 2 * d]).chunk(2, dim=-1)
            n = torch.tanh(torch.addcmul(gi[:, 2 * d :], r, gh[:, 2 * d :]))
            return torch.lerp(n, h, z)  # = (1 - z) n + z h

        return step

    def train_suffix(self, h: torch.Tensor, suffix: torch.Tensor, alive: list[int]):
        """A training step's packed recurrence, backward in closed form (``fused.py``)."""
        d, rnn = self.config.d_hidden, self.rnn
        w = double_columns(rnn.weight_hh_l0.T, 2 * d, 3 * d).to(product_dtype())
        b = double_columns(rnn.bias_hh_l0, 2 * d, 3 * d).to(product_dtype())
        gi = double_columns(self.embed.weight @ rnn.weight_ih_l0.T + rnn.bias_ih_l0, 2 * d, 3 * d)
        with torch.autocast("cpu", enabled=False):  # the products' dtype is w's
            return GRUSuffix.apply(h, suffix, alive, w, b, gi)

    def site_from_state(self, state: torch.Tensor) -> torch.Tensor:
        return state

    def state_from_site(self, h: torch.Tensor) -> torch.Tensor:
        return h
