"""Hand-wired recurrent models whose true alignment is known (a plugin architecture).

    numbench evaluate --arch-module tests/known_answer.py MODEL.pt

``counter`` is a linear recurrence h_t = W h_{t−1} + e(x_t) with a linear readout. Built
from its config it is random (nn.Linear / nn.Embedding initialisation), which is what the
random-init control sees; :func:`hand_wire` then loads the values that make it run the
Up-Down program exactly on ``multi_object``:

* count c and phase p are coordinates of h in the basis (e_c, PHASE_STEP·e_p): a demo
  token adds e_c, a response token subtracts it, ``T`` adds PHASE_STEP·e_p; W = I;
* the readout decodes c and p with the dual basis and predicts ``R`` while c ≥ 1 in the
  respond phase, ``E`` at c = 0, a demo token in the demo phase.

``encoding`` places e_p: ``"orthogonal"`` at right angles to e_c (an orthogonal projector
onto any subspace holding e_c and not e_p interchanges the count exactly), or
``"oblique"`` at 45° to it (h_s − h_b = e_c Δc + e_p Δp; a projector that moves Δc and
not Δp must map e_c to itself and e_p to 0, which no orthogonal projector does, and the
oblique projector e_c (dual_c)ᵀ does). Both directions are turned by a fixed random
rotation, so neither lies along an axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from numbench.models import NumbenchModel, RecurrentRunner, Resumable, register_architecture

ENCODINGS = ("orthogonal", "oblique")
CONFIDENCE = 12.0  # logit scale of the hand-wired readout
# ``T`` moves h by PHASE_STEP·e_p: a large step leaves no orthogonal compromise for the
# oblique encoding (a projector that moves a 4-unit phase step by under ½ along e_p while
# moving a 1-unit count step fully must be oblique; with unit steps a symmetric projector
# squeezes both errors under the readout's ½ margins)
PHASE_STEP = 4.0


@dataclass
class CounterConfig:
    d_hidden: int = 8
    encoding: str = "orthogonal"


@register_architecture
class Counter(RecurrentRunner, NumbenchModel, Resumable):
    arch = "counter"
    family = "recurrent"
    Config = CounterConfig
    state_sites = ("hidden",)

    def __init__(self, config: CounterConfig, vocabulary):
        super().__init__(config, vocabulary)
        if config.encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, not {config.encoding!r}")
        d = config.d_hidden
        self.embed = nn.Embedding(self.vocab_size, d)
        self.cell = nn.Linear(d, d, bias=False)  # W
        self.readout = nn.Linear(d, self.vocab_size)

    @property
    def sites(self) -> dict[str, int]:
        return {"hidden": self.config.d_hidden}

    def stepper(self):
        weight, table = self.cell.weight, self.embed.weight

        def step(h: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:  # (n, d), (n,)
            return h @ weight.T + table[tokens]

        return step

    def scan(self, ids: torch.Tensor, state: torch.Tensor | None = None):
        """(h at each position (B, S, d), h_S), from ``state`` (B, d) or zeros."""
        h = ids.new_zeros(ids.shape[0], self.config.d_hidden, dtype=torch.float32) if state is None else state
        step, out = self.stepper(), []
        for t in range(ids.shape[1]):
            h = step(h, ids[:, t])
            out.append(h)
        return torch.stack(out, 1) if out else h[:, None, :0].expand(-1, 0, h.shape[1]), h

    def site_from_state(self, state: torch.Tensor) -> torch.Tensor:
        return state

    def state_from_site(self, h: torch.Tensor) -> torch.Tensor:
        return h


def directions(d: int, encoding: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(e_c, e_p), unit vectors in a randomly rotated frame."""
    rot, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed)))
    u, v = rot[:, 0], rot[:, 1]
    return u, (v if encoding == "orthogonal" else (u + v) / math.sqrt(2))


@torch.no_grad()
def hand_wire(model: Counter, seed: int = 0) -> Counter:
    """Load the Up-Down values into ``model`` (in place; returns it)."""
    d, vocab = model.config.d_hidden, model.vocabulary
    e_c, e_p = directions(d, model.config.encoding, seed)
    dual = torch.linalg.pinv(torch.stack([e_c, PHASE_STEP * e_p], 1))  # (2, d): c = dual[0]·h, p = dual[1]·h
    model.cell.weight.copy_(torch.eye(d))
    model.embed.weight.zero_()
    for token in vocab:
        if token.startswith("D"):
            model.embed.weight[vocab.index(token)] = e_c
    model.embed.weight[vocab.index("R")] = -e_c
    model.embed.weight[vocab.index("T")] = PHASE_STEP * e_p
    # logits: R = s(c − ½), E = 0, D0 = s(½ − p) (the demo phase), every other token −s
    w, b = torch.zeros(len(vocab), d), torch.full((len(vocab),), -CONFIDENCE)
    w[vocab.index("R")], b[vocab.index("R")] = CONFIDENCE * dual[0], -CONFIDENCE / 2
    b[vocab.index("E")] = 0.0
    w[vocab.index("D0")], b[vocab.index("D0")] = -CONFIDENCE * dual[1], CONFIDENCE / 2
    model.readout.weight.copy_(w)
    model.readout.bias.copy_(b)
    return model
