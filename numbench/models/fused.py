"""Hand-written training recurrences of the reference GRU and LSTM (``fused`` kernels).

A training step of the DAS engine restarts the recurrence from an edited state and runs
a packed suffix whose batch shrinks as rows end (``RecurrentRunner._resume_packed``).
Through autograd, each time step records a dozen nodes and its backward runs twice as
many small kernels; most of a step is then per-op overhead, not arithmetic. These
``autograd.Function``s run the same equations without recording a graph and give the
backward in closed form, a few fused tensor ops a time step.

Two more changes make them faster, and are why they are used in *training steps only*
(the engine uses them wherever a model has them; validation and scoring always run the
model's own arithmetic, and the tests' reference engine trains through autograd):

* ``tanh(x)`` is computed as ``2·sigmoid(2x) − 1`` (torch's CPU tanh is ~5× slower than
  its sigmoid). The factor 2 is folded into the weights of the gate it feeds, an exact
  scaling, so one sigmoid covers every gate.
* matrix products run in the dtype of the weights handed in (bf16 under the engine's
  ``train_precision = "bf16"``); states, gates and gradients stay float32.

Each time step writes its states into the packed output in place, and the backward keeps
views of them: the caller must not modify the output in place (the engine only reads it).

The gradient agrees with autograd through the model's stepper to float32 rounding
(``tests/test_fused.py``).
"""

from __future__ import annotations

import torch


def double_columns(x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """``x`` with its last dimension's columns start..stop doubled (exact in any dtype)."""
    scale = torch.ones(x.shape[-1], dtype=x.dtype)
    scale[start:stop] = 2
    return x * scale


def product_dtype() -> torch.dtype:
    """bf16 under a training step's CPU autocast, else float32."""
    return torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else torch.float32


def _blocks(packed: torch.Tensor, alive: list[int]) -> list[torch.Tensor]:
    """Split packed rows into position 0 (every row) and the rows alive at 1, 2, ..."""
    return list(packed.split([len(packed) - sum(alive[1:])] + alive[1:]))


def _packed(first: torch.Tensor, alive: list[int]):
    """The packed output buffer, ``first`` (every row's position 0) copied in, and its
    blocks: each time step writes its rows in place (no concatenation at the end)."""
    out = first.new_empty(len(first) + sum(alive[1:]), first.shape[1])
    blocks = _blocks(out, alive)
    blocks[0].copy_(first)
    return out, blocks


def _unpack(ctx, dout: torch.Tensor):
    """A backward's inputs: W_hhᵀ, d, dout's blocks, the saved tensors (released)."""
    w, saved, ctx.saved = ctx.w, ctx.saved, None
    return w, w.shape[0], _blocks(dout, ctx.alive), saved


def _merge(block: torch.Tensor, carried: torch.Tensor) -> torch.Tensor:
    """``block`` plus ``carried`` on its first rows (the rows that stepped on)."""
    n = len(carried)
    if n == len(block):
        return block + carried
    out = block.clone()
    out[:n] += carried
    return out


class GRUSuffix(torch.autograd.Function):
    """Packed GRU states from h0 (B, d): [h0; the rows alive at 1; at 2; ...].

    ``w`` (d, 3d) and ``b`` (3d,) are W_hhᵀ and b_hh, ``gi`` (V, 3d) the vocabulary's input
    gates, each with its n-gate columns doubled (see the module's docstring)."""

    @staticmethod
    def forward(ctx, h0, tokens, alive, w, b, gi):
        d = h0.shape[1]
        out, blocks = _packed(h0, alive)
        cur, saved = h0, []
        for s in range(1, len(alive)):
            hp = cur[: alive[s]]
            gh = torch.addmm(b, hp.to(w.dtype), w).float()
            pre = gi.index_select(0, tokens[: alive[s], s - 1])  # not gi[...]: benchmarks/gather_speed.py
            rz = torch.sigmoid(pre[:, : 2 * d].add_(gh[:, : 2 * d]))
            r, z = rz[:, :d], rz[:, d:]
            ghn = gh[:, 2 * d :]
            sn = torch.sigmoid(torch.addcmul(pre[:, 2 * d :], r, ghn))  # n = 2 sn - 1
            n = sn.mul(2).sub_(1)
            cur = torch.lerp(n, hp, z, out=blocks[s])
            saved.append((hp, rz, ghn, sn, n))
        ctx.saved, ctx.alive, ctx.w = saved, alive, w
        return out

    @staticmethod
    def backward(ctx, dout):
        w, d, blocks, saved = _unpack(ctx, dout)
        g = blocks[-1]
        for s in range(len(blocks) - 1, 0, -1):
            hp, rz, ghn, sn, n = saved[s - 1]
            r, z = rz[:, :d], rz[:, d:]
            gz = g * z  # h = n + z (hp - n)
            da = (g - gz).mul_(torch.rsub(sn, 1).mul_(sn).mul_(2))  # through n = 2 sigmoid(a) - 1
            part = torch.empty(len(g), 2 * d)
            torch.mul(da, ghn, out=part[:, :d])
            torch.mul(g, hp - n, out=part[:, d:])
            dgh = torch.empty(len(g), 3 * d, dtype=w.dtype)
            torch.mul(part, torch.rsub(rz, 1).mul_(rz), out=dgh[:, : 2 * d])
            torch.mul(da, r, out=dgh[:, 2 * d :])
            g = _merge(blocks[s - 1], gz + (dgh @ w.T).float())
        return g, None, None, None, None, None


class LSTMSuffix(torch.autograd.Function):
    """Packed LSTM outputs h from the site (h0, c0) (B, 2d): [h0; h at 1; ...].

    ``w`` (d, 4d) is W_hhᵀ and ``gi`` (V, 4d) the vocabulary's input gates with both biases,
    each with its g-gate columns doubled (see the module's docstring)."""

    @staticmethod
    def forward(ctx, site0, tokens, alive, w, gi):
        d = w.shape[0]
        h, c = site0[:, :d], site0[:, d:]
        out, blocks = _packed(h, alive)
        saved = []
        for s in range(1, len(alive)):
            n = alive[s]
            hp, cp = h[:n], c[:n]
            pre = gi.index_select(0, tokens[:n, s - 1]).add_(hp.to(w.dtype) @ w)
            gates = torch.sigmoid(pre)  # i, f, sg, o; tanh(g) = 2 sg - 1
            i, f, sg, o = gates.chunk(4, dim=1)
            tg = sg * 2 - 1
            c = torch.addcmul(f * cp, i, tg)
            sc = torch.sigmoid(c * 2)
            tc = sc * 2 - 1
            h = torch.mul(o, tc, out=blocks[s])
            saved.append((cp, gates, tg, tc))
        ctx.saved, ctx.alive, ctx.w = saved, alive, w
        return out

    @staticmethod
    def backward(ctx, dout):
        w, d, blocks, saved = _unpack(ctx, dout)
        gh, gc = blocks[-1], None
        for s in range(len(blocks) - 1, 0, -1):
            cp, gates, tg, tc = saved[s - 1]
            i, f, sg, o = gates.chunk(4, dim=1)
            dc = gh * o * torch.rsub(tc * tc, 1)
            if gc is not None:
                dc = dc + gc
            dpre = torch.cat([dc * tg, dc * cp, dc * i * 2, gh * tc], 1) * (gates * torch.rsub(gates, 1))
            gc = dc * f
            gh = _merge(blocks[s - 1], (dpre.to(w.dtype) @ w.T).float())
            if len(gc) < len(gh):
                gc = torch.cat([gc, gc.new_zeros(len(gh) - len(gc), d)])
        if gc is None:
            gc = torch.zeros_like(gh)
        return torch.cat([gh, gc], 1), None, None, None, None
