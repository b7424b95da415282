"""A two-layer GRU, added to numbench as a plugin (docs/adding-an-architecture.md).

    numbench check-model --arch-module docs/examples/gru2.py gru2

Site ``state`` (2·d) = concat(h0, h1), both layers' hidden states after a position: the
whole recurrent state, so the model is Resumable. The readout reads h1 only.
"""

from dataclasses import dataclass

import torch
from torch import nn

from numbench.models import NumbenchModel, RecurrentRunner, Resumable, register_architecture


@dataclass
class GRU2Config:  # every hyper-parameter, typed: --config overrides are checked
    d_embed: int = 128
    d_hidden: int = 128
    d_readout: int = 512


@register_architecture  # --arch gru2, once this file is loaded
class TwoLayerGRU(RecurrentRunner, NumbenchModel, Resumable):
    arch = "gru2"
    family = "recurrent"  # trains with the recurrent models' void probability
    Config = GRU2Config
    state_sites = ("state",)  # the site is the whole state: resume applies

    def __init__(self, config: GRU2Config, vocabulary):
        super().__init__(config, vocabulary)
        d = config.d_hidden
        self.embed = nn.Embedding(self.vocab_size, config.d_embed)
        # one nn.GRU per layer, not nn.GRU(num_layers=2): that one returns only the top
        # layer's states, and recomputing layer 0's by hand would mix kernels
        self.layer0 = nn.GRU(config.d_embed, d, batch_first=True)
        self.layer1 = nn.GRU(d, d, batch_first=True)
        self.readout = nn.Sequential(nn.Linear(d, config.d_readout), nn.GELU(),
                                     nn.Linear(config.d_readout, self.vocab_size))

    @property
    def sites(self) -> dict[str, int]:
        return {"state": 2 * self.config.d_hidden}

    # --- the RecurrentRunner hooks ---
    def _layers(self, ids, state):
        """Both layers over ids (B, S) from state (h0, h1), each (1, B, d), or None (zeros):
        each layer's states (B, S, d) and last states (1, B, d)."""
        h0, h1 = (None, None) if state is None else state
        out0, last0 = self.layer0(self.embed(ids), h0)
        out1, last1 = self.layer1(out0, h1)
        return out0, out1, (last0, last1)

    def scan(self, ids: torch.Tensor, state=None):
        """One fused pass: (what the readout reads at each position (B, S, d), last state)."""
        _, out1, last = self._layers(ids, state)
        return out1, last

    def site_sequence(self, ids: torch.Tensor) -> torch.Tensor:
        """The site at every position (B, T, 2d), from the same kernels as ``scan``."""
        out0, out1, _ = self._layers(ids, None)
        return torch.cat([out0, out1], dim=-1)

    def site_from_state(self, state) -> torch.Tensor:
        h0, h1 = state
        return torch.cat([h0.squeeze(0), h1.squeeze(0)], dim=-1)  # (B, 2d)

    def state_from_site(self, site: torch.Tensor):
        h0, h1 = site.split(self.config.d_hidden, dim=-1)
        return h0.unsqueeze(0).contiguous(), h1.unsqueeze(0).contiguous()

    def output_from_site(self, site: torch.Tensor) -> torch.Tensor:
        return site[..., self.config.d_hidden :]  # h1: what the readout reads
