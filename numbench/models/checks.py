"""The model contract as checks: what ``numbench check-model`` runs on any architecture and
tests/test_model_contract.py runs on the shipped ones.

Each ``check_*`` raises :class:`ContractViolation` (an ``AssertionError``, so a test reads
it as a failed assert) saying what was wrong, and returns None when the model passes.
``oracle(model, ids, site, edit)`` computes by hand the logits (B, T, V) of the plain run
with ``edit(b, t, h) -> new activation or None`` applied to row b's site activation at
position t; :func:`step_oracle` is one for any model with the recurrent hooks of
:class:`~numbench.models.RecurrentRunner`.
"""

from __future__ import annotations

from typing import Callable

import torch

from .contract import NumbenchModel, Resumable, left_align
from .speed import bf16_training

#: the fidelity gate's tolerance (``gate.GATE_TOLERANCE``, asserted equal in the tests):
#: not imported, so the tests of the models do not load the alignment engine
TOLERANCE = 1e-5
#: an edit that changes anything must change some logit by more than this (non-vacuity)
CHANGED = 1e-3

Oracle = Callable[[NumbenchModel, torch.Tensor, str, Callable], torch.Tensor]


class ContractViolation(AssertionError):
    """The model breaks its contract; the message says where."""


def _require(ok, message: str) -> None:
    if not ok:
        raise ContractViolation(message)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().abs().max()) if a.numel() else 0.0


def check_shapes(model: NumbenchModel, ids: torch.Tensor) -> None:
    """Sites declared as {name: width}; ``run`` gives (B, T, V) finite logits, plain and
    with an edit in either mode; ``activations`` gives (B, T, d) at every site."""
    sites = model.sites
    _require(isinstance(sites, dict) and sites, "`sites` must be a non-empty dict {name: width}")
    for site, d in sites.items():
        _require(isinstance(site, str) and isinstance(d, int) and d > 0,
                 f"site {site!r}: width must be a positive int, got {d!r}")
    B, T = ids.shape
    want = (B, T, model.vocab_size)
    plain = model.run(ids)
    _require(tuple(plain.shape) == want, f"run(ids) gave {tuple(plain.shape)}, want {want}")
    _require(bool(torch.isfinite(plain).all()), "run(ids) gave non-finite logits")
    pos = torch.zeros(B, dtype=torch.long)
    for site, d in sites.items():
        acts = model.activations(ids, site)
        _require(tuple(acts.shape) == (B, T, d),
                 f"activations(ids, {site!r}) gave {tuple(acts.shape)}, want {(B, T, d)}")
        out = model.run(ids, site, pos, lambda h, rows, t: h, "single")
        _require(tuple(out.shape) == want,
                 f"run with an edit at {site!r} gave {tuple(out.shape)}, want {want}")


def check_noop(model: NumbenchModel, ids: torch.Tensor, pos: torch.Tensor, mode: str,
               tol: float = TOLERANCE) -> None:
    """An identity edit at every site, in ``mode``, reproduces the plain logits within ``tol``."""
    plain = model.run(ids)
    for site in model.sites:
        diff = _max_diff(model.run(ids, site, pos, lambda h, rows, t: h, mode), plain)
        _require(diff <= tol, f"{mode} identity edit at {site!r} moved the logits by "
                              f"{diff:.3g} (tolerance {tol:g})")


def check_single_edit(model: NumbenchModel, ids: torch.Tensor, pos: torch.Tensor,
                      oracle: Oracle | None = None, tol: float = TOLERANCE) -> None:
    """At every site, a random new activation put at each row's ``pos[b]`` through ``run``:
    ``edit`` is called once per row, at ``pos[b]``, on the plain run's activation there;
    the logits equal the ``oracle``'s (when one is given); nothing before ``pos[b]``
    changes, and something from ``pos[b]`` on does (non-vacuity)."""
    torch.manual_seed(1)
    plain = model.run(ids)
    for site, d in model.sites.items():
        new, seen = torch.randn(len(ids), d), []
        acts = model.activations(ids, site)

        def edit(h, rows, t):
            seen.append((h.detach().clone(), rows.clone(), t.clone()))
            return new[rows]

        got = model.run(ids, site, pos, edit, "single")
        h = torch.cat([s[0] for s in seen]) if seen else torch.empty(0, d)
        rows = torch.cat([s[1] for s in seen]) if seen else torch.empty(0, dtype=torch.long)
        t = torch.cat([s[2] for s in seen]) if seen else torch.empty(0, dtype=torch.long)
        _require(sorted(rows.tolist()) == list(range(len(ids))),
                 f"{site!r}: edit was called for rows {sorted(rows.tolist())}, want each row once")
        _require(torch.equal(t, pos[rows]), f"{site!r}: edit was called at positions "
                                            f"{t.tolist()}, want {pos[rows].tolist()}")
        diff = _max_diff(h, acts[rows, t])
        _require(diff <= tol, f"{site!r}: edit saw activations {diff:.3g} away from "
                              f"activations(ids, site) at pos")
        if oracle is not None:
            want = oracle(model, ids, site, lambda b, t, h: new[b] if t == pos[b] else None)
            diff = _max_diff(got, want)
            _require(diff <= tol, f"{site!r}: run's edited logits differ from editing the "
                                  f"activation by hand by {diff:.3g}")
        for b, i in enumerate(pos.tolist()):
            _require(torch.equal(got[b, :i], plain[b, :i]),
                     f"{site!r}: an edit at position {i} changed logits before it (row {b})")
            _require(_max_diff(got[b, i:], plain[b, i:]) > CHANGED,
                     f"{site!r}: an edit at position {i} changed nothing (row {b})")


def check_prefix_edit(model: NumbenchModel, ids: torch.Tensor, pos: torch.Tensor,
                      oracle: Oracle, tol: float = TOLERANCE) -> None:
    """At every site, an edit that depends on the current activation, at 0..pos[b], equals
    the ``oracle``'s position by position, and changes something."""
    torch.manual_seed(2)
    plain = model.run(ids)
    for site, d in model.sites.items():
        src = torch.randn(len(ids), ids.shape[1], d)
        mix = lambda h, s: 0.5 * (h + s)  # depends on the current activation h
        got = model.run(ids, site, pos, lambda h, rows, t: mix(h, src[rows, t]), "prefix")
        want = oracle(model, ids, site,
                      lambda b, t, h: mix(h, src[b, t]) if t <= pos[b] else None)
        diff = _max_diff(got, want)
        _require(diff <= tol, f"{site!r}: run's prefix-edited logits differ from editing "
                              f"by hand position by position by {diff:.3g}")
        _require(_max_diff(got, plain) > CHANGED, f"{site!r}: a prefix edit changed nothing")


def check_resume(model: Resumable, ids: torch.Tensor, pos: torch.Tensor,
                 lengths: torch.Tensor | None = None, tol: float = TOLERANCE) -> None:
    """At every state site: ``resume`` from the plain state at ``pos`` gives the plain
    run's logits from ``pos`` on; the packed path (rows needing ``lengths`` positions,
    sorted descending; a hole; a row needing none) gives the same at ``select``; under
    bf16 autocast (``bf16_training``) the packed path stays close."""
    vocab = model.vocab_size
    for site in model.state_sites:
        _require(site in model.sites, f"state site {site!r} is not in `sites`")
        h = model.activations(ids, site)[torch.arange(len(ids)), pos]
        resumed = model.resume(site, h, left_align(ids, pos + 1))
        plain = model.run(ids)
        for b, i in enumerate(pos.tolist()):
            n = ids.shape[1] - i
            diff = _max_diff(resumed[b, :n], plain[b, i:])
            _require(diff <= tol, f"{site!r}: resume from position {i} differs from the plain "
                                  f"run by {diff:.3g} (row {b})")
        width = resumed.shape[1]
        if lengths is None:  # a spread of lengths, longest first, as the engine sorts rows
            g = torch.Generator().manual_seed(3)
            lengths = torch.randint(1, width + 1, (len(ids),), generator=g).sort(descending=True)[0]
        lengths = lengths.clone()
        select = torch.arange(width)[None, :] < lengths[:, None]
        select[1, min(3, width - 1)] = False  # a hole inside a row is allowed
        packed = model.resume(site, h, left_align(ids, pos + 1), select, lengths.tolist())
        _require(tuple(packed.shape) == (int(select.sum()), vocab),
                 f"{site!r}: resume with select gave {tuple(packed.shape)}, want "
                 f"{(int(select.sum()), vocab)}")
        diff = _max_diff(packed, resumed[select])
        _require(diff <= tol, f"{site!r}: packed resume differs from resume by {diff:.3g}")
        lengths[-1], select[-1] = 0, False  # a row that needs no position (last, as sorted)
        packed = model.resume(site, h, left_align(ids, pos + 1), select, lengths.tolist())
        diff = _max_diff(packed, resumed[select])
        _require(diff <= tol, f"{site!r}: packed resume with an empty row differs by {diff:.3g}")
        if bf16_training(model):  # a bf16 training step: rows padded to few shapes, same places
            with torch.autocast("cpu", dtype=torch.bfloat16):
                low = model.resume(site, h, left_align(ids, pos + 1), select, lengths.tolist())
            _require(low.shape == packed.shape, f"{site!r}: bf16 resume changed the shape")
            diff = _max_diff(low.float(), packed)
            _require(0 < diff <= 0.05 * packed.abs().max(),
                     f"{site!r}: bf16 resume is {diff:.3g} from float32 (bf16_training = True)")


# --- a by-hand oracle for recurrent models ----------------------------------------------

_HOOKS = ("scan", "site_from_state", "state_from_site", "output_from_site", "readout")


def has_step_oracle(model: NumbenchModel) -> bool:
    """Whether :func:`step_oracle` applies: the model has the recurrent hooks."""
    return all(callable(getattr(model, hook, None)) for hook in _HOOKS)


def step_oracle(model: NumbenchModel, ids: torch.Tensor, site: str, edit) -> torch.Tensor:
    """Logits (B, T, V) from a per-step, per-row loop over the model's recurrent hooks
    (one ``scan`` step at a time; the site is the whole state), with ``edit(b, t, h)``
    applied to the state after each step — independent of how ``run`` batches its edits."""
    B, T = ids.shape
    state, outs = None, []
    for t in range(T):
        _, state = model.scan(ids[:, t : t + 1], state)
        h = model.site_from_state(state).clone()
        for b in range(B):
            new = edit(b, t, h[b])
            if new is not None:
                h[b] = new
        state = model.state_from_site(h)
        outs.append(model.output_from_site(h))
    return model.readout(torch.stack(outs, 1))


# --- all of them, named, for ``numbench check-model`` -----------------------------------

#: the sample the checks run on: 6 sequences of the task, and each check's positions
SAMPLE_SEED, SAMPLE_VOID_P = 1, 0.2
SINGLE_POS, PREFIX_POS, RESUME_POS = [1, 2, 3, 5, 8, 4], [2, 1, 3, 0, 4, 2], [3, 1, 2, 6, 5, 4]
GATE_PAIRS = 64  # the gate's pairs: the first of the task's frozen test pairs

#: check name -> the one line that says how to fix a failure
FIXES = {
    "shapes": "declare `sites` as {name: width in int}; `run(ids)` must return logits "
              "(B, T, V) and `activations(ids, site)` (B, T, d) — docs/contract.md",
    "no-op fidelity": "an edit returning h unchanged must reproduce the plain logits: edit "
                      "the very activations the plain run computes, on the same path, with "
                      "no randomness (dropout, noise) in `run`",
    "hook oracle": "call `edit` once per row at pos[b] on the plain activation there, and "
                   "let its result reach only positions ≥ pos[b] (nothing before may change)",
    "prefix mode": "in prefix mode call `edit` at each position 0..pos[b] in order, on the "
                   "activation that already carries the earlier edits (or raise "
                   "NotImplementedError if unsupported)",
    "resume": "`resume(site, h, suffix)` must restart from state h at position i and give "
              "the plain run's logits at i.. (and only the `select`ed ones when given)",
    "fidelity gate": "identity interchanges through the alignment engine must reproduce "
                     "the logits and base-only IIA must equal task accuracy (PROTOCOL §6); "
                     "fix the checks above first",
}


def sample(task) -> torch.Tensor:
    """The checks' token ids (6, T): sequences of ``task`` with voids."""
    from ..sequences import generate

    return torch.from_numpy(generate(task, 6, seed=SAMPLE_SEED, void_p=SAMPLE_VOID_P).ids)


class _FirstPairs:
    """The gate's pair source (as ``evaluate._Pairs``) cut to the first ``n`` pairs."""

    def __init__(self, task, n: int):
        self.task, self.n = task, n

    def get(self, program: str, variable: str, split: str, mode: str, permuted: bool):
        import dataclasses

        from ..engine import PairTensors
        from ..pairs import make_pairs

        p = make_pairs(self.task, program, variable, split, mode=mode, permuted=permuted)
        cut = lambda s: dataclasses.replace(s, ids=s.ids[: self.n], lengths=s.lengths[: self.n],
                                            counts=s.counts[: self.n], scored=s.scored[: self.n])
        p = dataclasses.replace(p, base=cut(p.base), source=cut(p.source),
                                counterfactual=cut(p.counterfactual),
                                base_pos=p.base_pos[: self.n], source_pos=p.source_pos[: self.n],
                                source_values=p.source_values[: self.n])
        T = torch.from_numpy
        return p, PairTensors(T(p.base.ids), T(p.counterfactual.ids), T(p.counterfactual.scored),
                              T(p.base_pos), T(p.source.ids), T(p.source_pos))


def check_gate(model: NumbenchModel, task, n: int = GATE_PAIRS) -> None:
    """The fidelity gate (``gate.run_gate``) on the task's first ``n`` test pairs."""
    from ..gate import run_gate

    g = run_gate(model, _FirstPairs(task, n))
    _require(g["passed"], f"max |Δlogit| {g['max_abs_logit_diff']:.3g} (tolerance "
                          f"{g['tolerance']:g}); base-only IIA {g['base_only_iia']} vs task "
                          f"accuracy {g['task_accuracy_on_bases']:.3f} on {n} pairs")


class NotApplicable(Exception):
    """The check does not apply to this model; the message says why."""


def run_checks(model: NumbenchModel, task) -> list[dict]:
    """Every check in order, each {"check", "result" (pass | fail | n/a), "detail", and
    "fix" on failure}. An exception from the model's own code fails its check."""
    ids, long = sample(task), lambda p: torch.tensor(p)
    oracle = step_oracle if has_step_oracle(model) else None
    no_oracle = "no by-hand oracle for a non-recurrent model"

    def single():
        check_single_edit(model, ids, long(SINGLE_POS), oracle)
        return "" if oracle else f"causality and the edit's inputs only ({no_oracle})"

    def prefix():
        try:
            check_noop(model, ids, long(PREFIX_POS), "prefix")
        except NotImplementedError:
            raise NotApplicable("the model does not support prefix mode") from None
        if oracle is None:
            return f"identity edits only ({no_oracle})"
        check_prefix_edit(model, ids, long(PREFIX_POS), oracle)

    def resume():
        if not isinstance(model, Resumable):
            raise NotApplicable("not Resumable")
        check_resume(model, ids, long(RESUME_POS))

    steps = [
        ("shapes", lambda: check_shapes(model, ids)),
        ("no-op fidelity", lambda: check_noop(model, ids, long(SINGLE_POS), "single")),
        ("hook oracle", single),
        ("prefix mode", prefix),
        ("resume", resume),
        ("fidelity gate", lambda: check_gate(model, task)),
    ]
    out = []
    for name, step in steps:
        try:
            out.append({"check": name, "result": "pass", "detail": step() or ""})
        except NotApplicable as e:
            out.append({"check": name, "result": "n/a", "detail": str(e)})
        except Exception as e:  # a violation, or the model's own code raised
            detail = str(e) if isinstance(e, ContractViolation) else \
                f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}"
            out.append({"check": name, "result": "fail", "detail": detail, "fix": FIXES[name]})
    return out
