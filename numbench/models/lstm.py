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

from .contract import NumbenchModel
from .speed import FusedResume
from .fused import LSTMSuffix, double_columns, product_dtype
from .readout import readout_mlp
from .recurrent import RecurrentRunner
from .registry import register_architecture


@dataclass
class LSTMConfig:
    d_embed: int = 128
    d_hidden: int = 64
    d_readout: int = 512


@register_architecture
class LSTMModel(RecurrentRunner, NumbenchModel, FusedResume):
    arch = "lstm"
    family = "recurrent"
    Config = LSTMConfig
    state_sites = ("hidden",)
    fused_training = True  # train_suffix: models/fused.py
    bf16_training = True  # the stepper casts its products back to float32

    def __init__(self, config: LSTMConfig, vocabulary):
        super().__init__(config, vocabulary)
        self.embed = nn.Embedding(self.vocab_size, config.d_embed)
        self.rnn = nn.LSTM(config.d_embed, config.d_hidden, batch_first=True)
        self.readout = readout_mlp(config.d_hidden, config.d_readout, self.vocab_size)

    @property
    def sites(self) -> dict[str, int]:
        return {"hidden": 2 * self.config.d_hidden}

    def scan(self, ids, state=None):
        """(h at each position (B, S, d), (h_n, c_n) each (1, B, d)).

        Training uses the fused ``nn.LSTM``. In eval mode every run — plain, activations,
        restart from an edited state — goes through :meth:`stepper`, so they share their
        arithmetic to the bit: the fused kernel's c is not exposed, and recomputing it
        outside the kernel drifted the restarted logits by 3e-5 on a baseline, over the
        fidelity gate's 1e-5.
        """
        if self.training:
            return self.rnn(self.embed(ids), state)
        d = self.config.d_hidden
        start = None if state is None else torch.cat([state[0].squeeze(0), state[1].squeeze(0)], -1)
        sites = self._stepped(ids, start)
        if sites.shape[1] == 0:
            last = start if start is not None else sites.new_zeros(len(ids), 2 * d)
        else:
            last = sites[:, -1]
        return sites[..., :d], (last[:, :d].unsqueeze(0), last[:, d:].unsqueeze(0))

    def _stepped(self, ids: torch.Tensor, site: torch.Tensor | None) -> torch.Tensor:
        """(B, S, 2d) sites after each token of ids, stepping from ``site`` (zeros if None)."""
        step = self.stepper()
        cur = site if site is not None else self.embed.weight.new_zeros(len(ids), 2 * self.config.d_hidden)
        out = []
        for t in range(ids.shape[1]):
            cur = step(cur, ids[:, t])
            out.append(cur)
        return torch.stack(out, dim=1) if out else cur.new_zeros(len(ids), 0, cur.shape[-1])

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
        where = w_hh.device.type
        if torch.is_autocast_enabled(where):  # cast once, not every step
            w_hh = w_hh.to(torch.get_autocast_dtype(where))
        gi_table = (self.embed.weight @ self.rnn.weight_ih_l0.T + self.rnn.bias_ih_l0
                    + self.rnn.bias_hh_l0)  # (V, 4d)

        def step(site: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
            h, c = site[:, :d], site[:, d:]
            # .float(): under a training step's bf16 autocast only the product is bf16
            i, f, g, o = torch.addmm(gi_table.index_select(0, tokens), h, w_hh).float().chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            return torch.cat([torch.sigmoid(o) * torch.tanh(c), c], dim=-1)

        return step

    def train_suffix(self, site: torch.Tensor, suffix: torch.Tensor, alive: list[int]):
        """A training step's packed recurrence, backward in closed form (``fused.py``);
        packed outputs h, as ``output_from_site`` reads them."""
        d, rnn = self.config.d_hidden, self.rnn
        w = double_columns(rnn.weight_hh_l0.T, 2 * d, 3 * d).to(product_dtype())
        gi = double_columns(self.embed.weight @ rnn.weight_ih_l0.T + rnn.bias_ih_l0
                            + rnn.bias_hh_l0, 2 * d, 3 * d)
        with torch.autocast("cpu", enabled=False):  # the products' dtype is w's
            return LSTMSuffix.apply(site, suffix, alive, w, gi)

    def site_sequence(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T, 2d): (h, c) after each position, stepped as in eval-mode runs."""
        return self._stepped(ids, None)
