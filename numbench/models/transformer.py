"""Transformer reference model: causal, pre-LayerNorm, RoPE, no absolute positions.

    embed -> block0 -> block1 -> LayerNorm -> unembed

Sites: ``embed`` (token embeddings) and ``blockL`` (the residual stream after block L), each
of width d. Without positional embeddings the only position signal is RoPE's relative one,
which is why reference training adds voids: otherwise the count could be read off where
``T`` sits.

A training step of alignment search runs :meth:`TransformerModel.run_tail_packed`: with
gradient only the positions from each row's interchange on (its *tail*), packed without
padding; the positions before it (its *head*) without gradient, their keys and values
from a :class:`~numbench.models.head_cache.HeadCache` built once per pair set (without
one, run once per step for rows that share them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .contract import Edit, NumbenchModel, edit_positions, left_align
from .speed import TailRunnable
from .head_cache import HeadCache, RowHeads, distinct_heads
from .packing import Packing
from .registry import register_architecture


@dataclass
class TransformerConfig:
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 1
    d_mlp: int = 512
    rope_base: float = 10000.0


def rotation(positions: torch.Tensor, dh: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE's cos and sin (T, dh) at ``positions`` (T,), or (B, 1, T, dh) at (B, T): feature
    pair k turns by angle t·θ_k. Float32 whatever the activations' dtype (a bf16 angle of
    position 60 would be off by a quarter turn)."""
    inv = base ** (-torch.arange(0, dh, 2, device=positions.device, dtype=torch.float32) / dh)
    ang = positions.float()[..., None] * inv  # (..., T, dh/2)
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)
    return (cos[:, None], sin[:, None]) if ang.dim() == 3 else (cos, sin)  # per row: over heads


def rope(x: torch.Tensor, base: float, rot: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Rotary position embedding on (B, H, T, dh), at positions 0..T-1 or by ``rot``."""
    T, dh = x.shape[-2], x.shape[-1]
    cos, sin = rot or rotation(torch.arange(T, device=x.device), dh, base)
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

    def _qkv(self, x: torch.Tensor, rot=None):
        """Queries, keys and values (B, H, T, dh) of x (B, T, d), RoPE by ``rot``
        (``rotation``; None: positions 0..T-1)."""
        B, T, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        heads = lambda z: z.view(B, T, self.n_heads, d // self.n_heads).transpose(1, 2)
        q, k, v = heads(q), heads(k), heads(v)
        return rope(q, self.rope_base, rot), rope(k, self.rope_base, rot), v

    def _finish(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        B, T, d = x.shape
        x = x + self.proj(a.transpose(1, 2).reshape(B, T, d))
        return x + self.mlp(self.ln2(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, d) -> (B, T, d)
        q, k, v = self._qkv(x)
        return self._finish(x, F.scaled_dot_product_attention(q, k, v, is_causal=True))

    def keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values (B, H, T, dh) of x (B, T, d) at positions 0..T-1."""
        return self._qkv(x)[1:]

    def tail(self, x: torch.Tensor, rot, head_k: torch.Tensor, head_v: torch.Tensor,
             head_mask: torch.Tensor) -> torch.Tensor:
        """The block on tails x (B, S, d) at consecutive positions per row, rotated by
        ``rot`` (``rotation`` of (B, S)); the rows' earlier positions enter as keys and
        values (B, H, P, dh), those set in ``head_mask`` (B, P) only."""
        q, k, v = self._qkv(x, rot)
        S = x.shape[1]
        causal = torch.ones(S, S, dtype=torch.bool, device=x.device).tril()
        mask = torch.cat([head_mask[:, None, :].expand(-1, S, -1),
                          causal.expand(len(x), S, S)], dim=-1)  # (B, S, P + S)
        k, v = torch.cat([head_k.to(k.dtype), k], 2), torch.cat([head_v.to(v.dtype), v], 2)
        return self._finish(x, _attend(q, k, v, mask))

    def _token_qkv(self, x: torch.Tensor, rot):
        """Queries, keys and values (N, H, dh) of the tokens x (N, d), RoPE by ``rot``."""
        N, d = x.shape
        heads = lambda z: z.view(N, self.n_heads, d // self.n_heads)
        q, k, v = (heads(z) for z in self.qkv(self.ln1(x)).split(d, dim=-1))
        return rope(q, self.rope_base, rot), rope(k, self.rope_base, rot), v

    def packed_keys_values(self, x: torch.Tensor, rows: "Tails", rot):
        """Keys and values (B, S, H, dh) of rows that start at position 0, their tokens x
        (N, d) packed by ``rows``; zero past a row's end."""
        _, k, v = self._token_qkv(x, rot)
        return rows.tokens.pad(k), rows.tokens.pad(v)

    def packed(self, x: torch.Tensor, rows: "Tails", rot, head=None,
               keep: torch.Tensor | None = None) -> torch.Tensor:
        """The block on the tokens x (N, d) of ``rows``, rotated by ``rot`` (``rotation`` of
        their positions, as (N, 1, dh)). ``head``: the keys and values of the rows' earlier
        positions, as (keys (U, P, H, dh), values, which is each row's (B,)) or as a
        ``RowHeads`` (cached), or None. ``keep`` (N,) bool: the tokens whose output is
        wanted, (K, d) returned; the others still give their keys and values."""
        q, k, v = self._token_qkv(x, rot)
        a = rows.attend(q, k, v, head).reshape(x.shape)
        if keep is not None:
            x, a = x[keep], a[keep]
        x = x + self.proj(a)
        return x + self.mlp(self.ln2(x))


class _Group(NamedTuple):
    """Rows of a ``Tails`` that attend together, laid out at absolute positions 0..W-1."""

    rows: torch.Tensor  # (B_g,) which rows
    packing: Packing  # their tokens, packed in this group's order
    tokens: torch.Tensor  # (N_g,) those tokens' indices among all the rows' tokens
    extent: int  # W: the furthest position + 1 of its rows
    at: torch.Tensor  # (N_g,) each token's place in the flat (B_g W) layout
    mask: torch.Tensor  # (B_g, S_g, W): query i of row b sees positions up to pos[b] + i


class Tails:
    """A step's rows, each from its position ``pos[b]`` on for ``lengths[b]`` tokens,
    packed (``tokens``); for attention, the rows sorted by their extent ``pos + lengths``
    and cut into up to ``groups`` groups, each laid out at absolute positions and padded to
    its own widths (its longest tail, its furthest extent)."""

    def __init__(self, pos: torch.Tensor, lengths: torch.Tensor, groups: int = 4):
        self.pos, self.tokens = pos, Packing.of(lengths)
        self.places = pos[self.tokens.rows] + self.tokens.cols  # each token's position
        extent = pos + lengths
        self.groups = []
        for rows in torch.argsort(extent, stable=True).tensor_split(min(groups, len(pos))):
            if len(rows):
                self.groups.append(self._group(rows, lengths[rows], int(extent[rows].max())))
        self.inverse = torch.argsort(torch.cat([g.tokens for g in self.groups]))

    def _group(self, rows: torch.Tensor, lengths: torch.Tensor, W: int) -> _Group:
        """The layout of ``rows`` (their ``lengths``), computed once for every block."""
        sub = Packing.of(lengths)
        tokens = self.tokens.starts[rows][sub.rows] + sub.cols
        arange = lambda n: torch.arange(n, device=rows.device)
        at = arange(len(rows))[sub.rows] * W + self.places[tokens]
        # query i of row b sees positions up to pos[b] + i: its head and its tail so far
        see = (self.pos[rows, None] + arange(sub.width)[None, :])[..., None]
        return _Group(rows, sub, tokens, W, at, arange(W)[None, None, :] <= see)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, head=None) -> torch.Tensor:
        """Causal attention (N, H, dh) of the tokens' queries over the keys and values of
        their own row's tokens (N, H, dh) and of its head (``Block.packed``), group by group."""
        out = []
        for g in self.groups:
            lay = lambda z, h: self._laid_out(z.index_select(0, g.tokens), g.at, h, len(g.rows), g.extent)
            if head is None:
                hk = hv = None
            elif isinstance(head, RowHeads):  # the cached heads' tokens, placed
                tokens, places = head.places(g.rows, g.extent)
                hk = (head.keys.index_select(0, tokens), places)
                hv = (head.values.index_select(0, tokens), places)
            else:  # (keys, values, which is each row's)
                of = head[2][g.rows]
                hk, hv = head[0][of], head[1][of]
            qg = g.packing.pad(q.index_select(0, g.tokens)).transpose(1, 2)  # (B_g, H, S_g, dh)
            kg, vg = lay(k, hk), lay(v, hv)  # (B_g, H, W, dh)
            out.append(g.packing.unpad(_attend(qg, kg, vg, g.mask).transpose(1, 2)))
        return torch.cat(out).index_select(0, self.inverse)

    @staticmethod
    def _laid_out(z: torch.Tensor, at: torch.Tensor, head, B: int, W: int) -> torch.Tensor:
        """Tokens' z (N_g, H, dh) at flat places ``at`` of (B, W), over the head: its
        (B, P, H, dh) (zero past a head's end), or its tokens (M, H, dh) and their flat
        places (M,), or none (zeros). Returns (B, H, W, dh)."""
        H, dh = z.shape[1:]
        if head is None:
            flat = z.new_zeros(B * W, H, dh)
        elif isinstance(head, tuple):
            tokens, places = head
            flat = z.new_zeros(B * W, H, dh).index_copy_(0, places, tokens.to(z.dtype))
        else:
            head = head[:, :W].to(z.dtype)
            flat = F.pad(head, (0, 0, 0, 0, 0, W - head.shape[1])).reshape(B * W, H, dh)
        return flat.index_copy(0, at, z).view(B, W, H, dh).transpose(1, 2)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """softmax(q·kᵀ/√dh)·v over the keys where ``mask`` (B, S, W) is set, for queries q
    (B, H, S, dh), keys and values (B, H, W, dh). By hand: at these sizes torch's fused CPU
    attention with a mask is ~5x slower (its backward above all); the arithmetic is the
    same up to rounding."""
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    return scores.masked_fill(~mask[:, None], float("-inf")).softmax(-1) @ v


@register_architecture
class TransformerModel(NumbenchModel, TailRunnable):
    arch = "transformer"
    family = "transformer"
    Config = TransformerConfig
    bf16_training = True  # the residual stream adds bf16 products into float32

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

    def tail_reach(self, site):
        return 1 if site == list(self.sites)[-1] else None  # only ln_f and unembed follow

    def run_tail_packed(self, ids, site, pos, new, lengths, keep=None, cached=None):
        """Tails packed without padding (``Tails``): the position-wise layers run on each
        row's own tokens only, the last block's on the kept ones only; attention groups
        rows of similar extent. Heads from ``cached`` (``head_cache``), or else run here,
        once per distinct head, without gradient."""
        self.check_site(site)
        at = list(self.sites).index(site)  # the interchange goes in before block ``at``
        if at == len(self.blocks) and int(lengths.max()) == 1:  # the readout of new alone
            return self.unembed(self.ln_f(new if keep is None else new[keep]))
        rows = Tails(pos, lengths)
        x = self.embed(ids[rows.tokens.rows, rows.places.clamp(max=ids.shape[1] - 1)])  # (N, d)
        rot = self._rotation(rows.places)
        if cached is None:
            heads = self._packed_heads(ids, pos)
        else:
            heads = HeadCache.gather(cached) or [None] * len(self.blocks)
        for k, block in enumerate(self.blocks):
            if k == at:
                x = x.index_copy(0, rows.tokens.starts, new.to(x.dtype))
            last = k + 1 == len(self.blocks) and at < len(self.blocks)
            x = block.packed(x, rows, rot, heads[k], keep if last else None)
        if at == len(self.blocks):
            x = x.index_copy(0, rows.tokens.starts, new.to(x.dtype))
            x = x if keep is None else x[keep]
        return self.unembed(self.ln_f(x))

    def head_cache(self, ids, site, pos):
        self.check_site(site)
        if site == list(self.sites)[-1]:  # nothing but the readout of the new state follows
            return None
        return HeadCache.build(ids, pos, self._keys_values)

    def _keys_values(self, ids: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Every block's keys and values (B, T, H, dh) of ``ids`` (B, T), by the model's own
        forward (the one ``run`` scores with)."""
        x, keys, values = self.embed(ids), [], []
        for k, block in enumerate(self.blocks):
            key, value = block.keys_values(x)  # (B, H, T, dh)
            keys.append(key.transpose(1, 2))
            values.append(value.transpose(1, 2))
            if k + 1 < len(self.blocks):
                x = block(x)
        return keys, values

    def _rotation(self, positions: torch.Tensor):
        """RoPE's cos and sin (N, 1, dh) of packed tokens at ``positions`` (N,)."""
        cos, sin = rotation(positions, self.config.d_model // self.config.n_heads, self.config.rope_base)
        return cos[:, None], sin[:, None]

    @torch.no_grad()
    def _packed_heads(self, ids: torch.Tensor, pos: torch.Tensor) -> list:
        """Per block, the keys and values (U, P, H, dh) of the rows' distinct heads (their
        tokens before ``pos``; zero past a head's end) and which is each row's (B,), as
        ``Block.packed`` takes them; None for every block if no row has a head. Each
        distinct head runs once, its tokens packed."""
        if int(pos.max()) == 0:
            return [None] * len(self.blocks)
        heads, head_of, _ = distinct_heads(ids, pos)
        lengths = (heads >= 0).sum(1)
        keep = lengths > 0  # a row with no head has no tokens to run
        rows = Tails(torch.zeros(int(keep.sum()), dtype=torch.long, device=ids.device), lengths[keep])
        x = self.embed(heads[keep][rows.tokens.rows, rows.tokens.cols])
        rot = self._rotation(rows.places)
        # each row's head among those run; a row with none gets the zero head appended last
        of = torch.where(keep, torch.cumsum(keep, 0) - 1, int(keep.sum()))[head_of]
        out = []
        for k, block in enumerate(self.blocks):
            hk, hv = block.packed_keys_values(x, rows, rot)  # (U', P, H, dh)
            zero = hk.new_zeros((1,) + hk.shape[1:])  # the empty head's
            out.append((torch.cat([hk, zero]), torch.cat([hv, zero]), of))
            if k + 1 < len(self.blocks):
                x = block.packed(x, rows, rot)
        return out

    def run_tail(self, ids, site, pos, new, length):
        self.check_site(site)
        at = list(self.sites).index(site)  # the interchange goes in before block ``at``
        if at == len(self.blocks) and length == 1:  # nothing but the readout of new
            return self.unembed(self.ln_f(new[:, None]))
        # heads: the tokens before pos, which rows of one base share (-1 pads a short head)
        heads, head_of, before = distinct_heads(ids, pos)  # before: (B, P)
        with torch.no_grad():
            xh = self.embed(heads.clamp(min=0))  # (U, P, d); padding is masked out below
        x = self.embed(left_align(ids, pos)[:, :length])  # (B, length, d) from pos on
        if x.shape[1] < length:  # a tail past the end of ids: padding, never read
            x = F.pad(x, (0, 0, 0, length - x.shape[1]))
        positions = pos[:, None] + torch.arange(length, device=ids.device)[None, :]
        rot = rotation(positions, self.config.d_model // self.config.n_heads, self.config.rope_base)
        for k, block in enumerate(self.blocks):
            if k == at:
                x = torch.cat([new[:, None].to(x.dtype), x[:, 1:]], dim=1)
            with torch.no_grad():
                head_k, head_v = block.keys_values(xh)
                if k + 1 < len(self.blocks):
                    xh = block(xh)
            x = block.tail(x, rot, head_k[head_of], head_v[head_of], before)
        if at == len(self.blocks):
            x = torch.cat([new[:, None].to(x.dtype), x[:, 1:]], dim=1)
        return self.unembed(self.ln_f(x))
