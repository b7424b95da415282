"""Transformer reference model: causal, pre-LayerNorm, RoPE, no absolute positions.

    embed -> block0 -> block1 -> LayerNorm -> unembed

Sites: ``embed`` (token embeddings) and ``blockL`` (the residual stream after block L), each
of width d. Without positional embeddings the only position signal is RoPE's relative one,
which is why reference training adds voids: otherwise the count could be read off where
``T`` sits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .contract import Edit, NumbenchModel, edit_positions
from .registry import register_architecture


@dataclass
class TransformerConfig:
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 1
    d_mlp: int = 512
    rope_base: float = 10000.0


def rope(x: torch.Tensor, base: float) -> torch.Tensor:
    """Rotary position embedding on (B, H, T, dh): rotate feature pairs by angle t·θ_k."""
    T, dh = x.shape[-2], x.shape[-1]
    inv = base ** (-torch.arange(0, dh, 2, device=x.device, dtype=x.dtype) / dh)  # (dh/2,)
    ang = torch.arange(T, device=x.device, dtype=x.dtype)[:, None] * inv[None, :]  # (T, dh/2)
    cos, sin = ang.cos().repeat(1, 2), ang.sin().repeat(1, 2)  # (T, dh)
    x1, x2 = x[..., : dh // 2], x[..., dh // 2 :]
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class Block(nn.Module):
    """x + attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, c: TransformerConfig):
        super().__init__()
        self.n_heads, self.rope_base = c.n_heads, c.rope_base
        self.ln1, self.ln2 = nn.LayerNorm(c.d_model), nn.LayerNorm(c.d_model)
        self.qkv = nn.Linear(c.d_model, 3 * c.d_model)
        self.proj = nn.Linear(c.d_model, c.d_model)
        self.mlp = nn.Sequential(nn.Linear(c.d_model, c.d_mlp), nn.GELU(),
                                 nn.Linear(c.d_mlp, c.d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, d) -> (B, T, d)
        B, T, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        heads = lambda z: z.view(B, T, self.n_heads, d // self.n_heads).transpose(1, 2)
        q, k, v = heads(q), heads(k), heads(v)  # (B, H, T, dh)
        q, k = rope(q, self.rope_base), rope(k, self.rope_base)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(B, T, d))
        return x + self.mlp(self.ln2(x))


@register_architecture
class TransformerModel(NumbenchModel):
    arch = "transformer"
    family = "transformer"
    Config = TransformerConfig

    def __init__(self, config: TransformerConfig, vocabulary):
        super().__init__(config, vocabulary)
        if config.d_model % config.n_heads or (config.d_model // config.n_heads) % 2:
            raise ValueError("d_model / n_heads must be an even integer (RoPE rotates pairs)")
        self.embed = nn.Embedding(self.vocab_size, config.d_model)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.d_model)
        self.unembed = nn.Linear(config.d_model, self.vocab_size)

    @property
    def sites(self) -> dict[str, int]:
        names = ["embed"] + [f"block{k}" for k in range(self.config.n_layers)]
        return {n: self.config.d_model for n in names}

    def _stream(self, ids, site=None, pos=None, edit: Edit | None = None, mode="single",
                stop_at: str | None = None):
        """The residual stream, edited at ``site``; stops early at ``stop_at`` if given."""
        x = self.embed(ids)  # (B, T, d)
        for k, name in enumerate(self.sites):
            if k > 0:
                x = self.blocks[k - 1](x)
            if name == site and edit is not None:
                x = edit_positions(x, pos, edit, mode)
            if name == stop_at:
                return x
        return x

    def run(self, ids, site=None, pos=None, edit=None, mode="single"):
        if edit is not None:
            self.check_site(site)
        return self.unembed(self.ln_f(self._stream(ids, site, pos, edit, mode)))

    def activations(self, ids, site):
        self.check_site(site)
        return self._stream(ids, stop_at=site)
