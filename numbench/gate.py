"""The fidelity gate (PROTOCOL §6): a model is scored only if an identity interchange
reproduces its logits, through every path the engine uses, and base-only IIA equals its
task accuracy."""

from __future__ import annotations

import torch

from .accuracy import sequence_correct
from .engine import Engine, FitSpec, PairTensors, run
from .errors import NumbenchError
from .models.contract import NumbenchModel, Resumable, left_align
from .protocol import engine_config

GATE_TOLERANCE = 1e-5


class GateFailed(NumbenchError):
    """The model failed the fidelity gate: it is not scored."""


@torch.no_grad()
def identity_logit_diff(model: NumbenchModel, site: str, ids: torch.Tensor, pos: torch.Tensor,
                        mode: str = "single") -> float:
    """Max |logits| change from an identity interchange (source = base, same position),
    through every path the engine uses: the model's interchange run and, for a resumable
    site, the restart from the cached state (PROTOCOL §6 fidelity gate)."""
    ids, pos = ids.to(model.device), pos.to(model.device)
    plain = model.run(ids)
    same = model.run(ids, site, pos, lambda h, rows, t: h, mode)
    diff = float((same - plain).abs().max())
    if mode == "single" and isinstance(model, Resumable) and site in model.state_sites:
        rows = torch.arange(len(ids), device=ids.device)
        h = model.activations(ids, site)[rows, pos]
        resumed = model.resume(site, h, left_align(ids, pos + 1))  # positions i..
        T = ids.shape[1]
        for b in range(len(ids)):
            n = T - int(pos[b])
            diff = max(diff, float((resumed[b, :n] - plain[b, int(pos[b]):]).abs().max()))
    return diff


def run_gate(model: NumbenchModel, pairs) -> dict:
    """Identity interchanges reproduce the plain logits; base-only IIA = task accuracy.
    ``pairs`` is the evaluation's pair-set source (``evaluate._Pairs``)."""
    p, t = pairs.get("up_down", "count", "test", "single", False)
    ids, pos = t.base_ids, t.base_pos
    diff = max(identity_logit_diff(model, site, ids, pos) for site in model.sites)
    identity = PairTensors(ids, ids, torch.from_numpy(p.base.scored), pos, ids, pos)
    base_acc = float(sequence_correct(model, p.base).mean())
    iia = {}
    for site in model.sites:
        spec = FitSpec("gate", "full", model.sites[site], identity, identity, identity)
        iia[site] = run(Engine(model, site, config=engine_config()), [spec])[0].test_iia
    passed = diff <= GATE_TOLERANCE and all(v == base_acc for v in iia.values())
    return {"passed": passed, "max_abs_logit_diff": diff, "base_only_iia": iia,
            "task_accuracy_on_bases": base_acc, "tolerance": GATE_TOLERANCE}
