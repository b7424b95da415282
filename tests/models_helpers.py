"""Tiny real models for the tests, and plain per-step reference computations ("oracles")."""

from pathlib import Path

import torch

from numbench.models import build_model, load_arch_module
from numbench.models.registry import architectures

RNN_PLUGIN = Path(__file__).resolve().parents[1] / "baselines" / "architectures" / "rnn.py"

TINY = {
    "gru": {"d_embed": 16, "d_hidden": 12, "d_readout": 24},
    "lstm": {"d_embed": 16, "d_hidden": 6, "d_readout": 24},
    "transformer": {"d_model": 16, "d_mlp": 32},
    "rnn": {"d_embed": 16, "d_hidden": 12, "d_readout": 24},
}
ARCHS = list(TINY)


def ensure_plugin():
    if "rnn" not in architectures():
        load_arch_module(RNN_PLUGIN)


def tiny(arch: str, task, seed: int = 0):
    ensure_plugin()
    torch.manual_seed(seed)
    return build_model(arch, TINY[arch], task.vocabulary).eval()


def recurrent_oracle(model, ids, edit=None):
    """Per-step loop with the cell equations written out. ``edit(b, t, site) -> new site or
    None`` may replace row b's site state (h, or concat(h, c)) at step t. Logits (B, T, V)."""
    r = model.rnn
    W_ih, W_hh, b_ih, b_hh = r.weight_ih_l0, r.weight_hh_l0, r.bias_ih_l0, r.bias_hh_l0
    B, T = ids.shape
    d = r.hidden_size
    h, c = torch.zeros(B, d), torch.zeros(B, d)
    x = model.embed(ids)
    outs = []
    for t in range(T):
        gi, gh = x[:, t] @ W_ih.T + b_ih, h @ W_hh.T + b_hh
        if model.arch == "gru":
            ir, iz, inn = gi.chunk(3, -1)
            hr, hz, hn = gh.chunk(3, -1)
            rr, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
            h = (1 - z) * torch.tanh(inn + rr * hn) + z * h
        elif model.arch == "lstm":
            i, f, g, o = (gi + gh).chunk(4, -1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
        else:  # Elman
            h = torch.tanh(gi + gh)
        if edit is not None:
            h, c = h.clone(), c.clone()
            for b in range(B):
                site = torch.cat([h[b], c[b]]) if model.arch == "lstm" else h[b]
                new = edit(b, t, site)
                if new is not None:
                    h[b] = new[:d]
                    if model.arch == "lstm":
                        c[b] = new[d:]
        outs.append(h)
    return model.readout(torch.stack(outs, 1))


def transformer_oracle(model, ids, site, edit):
    """Replace the site's output with a forward hook on the module itself; ``edit(b, t, h)``
    as for :func:`recurrent_oracle`."""
    module = model.embed if site == "embed" else model.blocks[int(site[5:])]

    def hook(_mod, _inp, out):
        out = out.clone()
        for b in range(out.shape[0]):
            for t in range(out.shape[1]):
                new = edit(b, t, out[b, t])
                if new is not None:
                    out[b, t] = new
        return out

    handle = module.register_forward_hook(hook)
    try:
        return model.run(ids)
    finally:
        handle.remove()


def oracle(model, ids, site, edit):
    if model.family == "recurrent":
        return recurrent_oracle(model, ids, edit)
    return transformer_oracle(model, ids, site, edit)
