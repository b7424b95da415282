"""What an evaluation was asked to do, as a result records it (``settings``): the seed,
``--quick``, ``--sweep``, the engine's budget and speed settings, and the methods scored
beside the ranked pair — made from the protocol and the command line (``Settings.make``),
read back for a replay (``Settings.from_json``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import torch

from .alignments import alignment_record, resolve_alignment
from .engine import EngineConfig, speed_defaults
from .errors import NumbenchError
from .protocol import (BASELINE_ALIGNMENTS, BUDGET, CONTROL_CHOICES, CONTROL_RULES,
                       RANKED_ALIGNMENTS, engine_config)


# engine settings that numbench 0.2.0 recorded and that now have one value, the way the
# engine always trains: a result that holds that value replays as recorded
RETIRED = {"train_kernels": "fused", "causal_training": "cached"}


def extra_alignments(names) -> tuple[str, ...]:
    """The extra methods asked for (``--alignments``), in order, once each: registered
    (an installed package's entry point is loaded here), and none the protocol fits already
    (the ranked pair and its baselines)."""
    out: list[str] = []
    for name in names:
        if name in RANKED_ALIGNMENTS or name in BASELINE_ALIGNMENTS:
            raise NumbenchError(f"alignment '{name}' is fitted by the protocol already "
                                f"({', '.join(RANKED_ALIGNMENTS + BASELINE_ALIGNMENTS)}): "
                                "name other methods")
        resolve_alignment(name)
        if name not in out:
            out.append(name)
    return tuple(out)


def control_rules(rules: dict | None, what: str = "controls") -> dict:
    """The protocol's control rules (``CONTROL_RULES``) with ``rules`` over them, each
    checked against ``CONTROL_CHOICES``."""
    out = dict(CONTROL_RULES)
    for key, value in (rules or {}).items():
        if key not in CONTROL_CHOICES:
            raise NumbenchError(f"{what}: unknown rule '{key}' (rules: {', '.join(CONTROL_CHOICES)})")
        choices = CONTROL_CHOICES[key]
        if choices is int:  # a number of the controls' own, or None: the budget's
            if value is not None and (type(value) is not int or value < 1):
                raise NumbenchError(f"{what}.{key}: {value!r} is not a positive integer")
        elif value not in choices:
            raise NumbenchError(f"{what}.{key}: '{value}' is not one of {', '.join(choices)}")
        out[key] = value
    return out


@dataclass
class Settings:
    seed: int = 0
    quick: bool = False
    sweep: bool = False
    engine: EngineConfig = field(default_factory=engine_config)
    # methods scored beside the ranked pair with its treatment (every variable, best site,
    # ranked k, controls); never in the symbol score
    alignments: tuple[str, ...] = ()
    # how the controls train (``protocol.CONTROL_RULES``; others only in the budget study)
    controls: dict | None = None

    def __post_init__(self):
        self.controls = control_rules(self.controls)  # every rule, checked; None: protocol's

    @classmethod
    def make(cls, *, seed: int = 0, quick: bool = False, sweep: bool = False,
             engine: dict | None = None, device: str | torch.device = "cpu",
             alignments=(), controls: dict | None = None) -> "Settings":
        """Protocol settings, or a ``quick`` smoke budget, with the speed settings that suit
        ``device``; ``engine`` overrides any engine setting (a result whose protocol settings
        differ from the protocol's is unranked); ``alignments``: extra methods to score
        beside the ranked pair (:func:`extra_alignments`); ``controls``: control rules
        other than the protocol's (:func:`control_rules`; unranked)."""
        extra = extra_alignments(alignments)
        base = asdict(engine_config(quick, **speed_defaults(device)))
        unknown = set(engine or {}) - set(base)
        if unknown:
            raise NumbenchError(f"unknown engine setting(s): {', '.join(sorted(unknown))}")
        try:
            config = EngineConfig(**(base | (engine or {})))
        except ValueError as e:
            raise NumbenchError(f"engine setting: {e}") from None
        if torch.device(device).type != "cpu" and config.workers > 1:
            raise NumbenchError(f"workers={config.workers}: on {device} the fits train in one "
                                "process (worker processes are for CPUs)")
        return cls(seed=seed, quick=quick, sweep=sweep, engine=config, alignments=extra,
                   controls=controls)

    @classmethod
    def from_json(cls, d: dict) -> "Settings":
        """The settings a result recorded (its ``settings`` key); every engine setting must
        be there, as every result of this protocol records them. ``alignments`` absent:
        no method beside the ranked pair; present, its names are kept (where each came from
        is :func:`check_alignment_sources`'s to check)."""
        engine = dict(d["engine"])
        for key, only in RETIRED.items():
            if engine.pop(key, only) != only:
                raise NumbenchError(f"settings.engine.{key} is retired; only '{only}' can be replayed")
        names = {f.name for f in fields(EngineConfig)}
        for what, keys in (("unknown", set(engine) - names), ("missing", names - set(engine))):
            if keys:
                raise NumbenchError(f"settings.engine: {what} setting(s) {', '.join(sorted(keys))}")
        try:
            config = EngineConfig(**engine)
        except (TypeError, ValueError) as e:
            raise NumbenchError(f"settings.engine: {e}") from None
        extra = tuple(a["name"] for a in d.get("alignments", []))
        return cls(seed=d["seed"], quick=d["quick"], sweep=d["sweep"], engine=config,
                   alignments=extra, controls=control_rules(d.get("controls"), "settings.controls"))

    @property
    def ranked(self) -> bool:
        """Only the protocol's own budget is ranked (speed-only settings may differ). Extra
        methods leave it ranked: they never enter the symbol score and change no ranked
        fit's budget (on the continuous schedule not even its rounding: each fit trains as it
        would alone, from a seed of its own key; in lockstep the fits beside it may change
        its float rounding)."""
        mine = asdict(self.engine)
        return (not self.quick and all(mine[k] == v for k, v in BUDGET.items())
                and self.controls == CONTROL_RULES)

    def fingerprint(self) -> dict:
        """What a resumed run must share with the interrupted one: everything but the
        number of processes (a fit trains exactly as it would alone wherever it runs)."""
        d = self.to_json()
        return d | {"engine": {k: v for k, v in d["engine"].items() if k != "workers"}}

    def to_json(self) -> dict:
        """As a result records them; ``alignments`` (each extra method's name and, for a
        user's file, its sha256: :func:`~numbench.alignments.alignment_record`) only when
        there are any, so a result without them reads as before; ``controls`` only where
        they are not the protocol's."""
        eng = asdict(self.engine)
        out = {"seed": self.seed, "quick": self.quick, "sweep": self.sweep, "engine": eng}
        if self.controls != CONTROL_RULES:
            out["controls"] = {k: v for k, v in self.controls.items() if v is not None}
        if self.alignments:
            out["alignments"] = [alignment_record(name) for name in self.alignments]
        return out


def check_alignment_sources(recorded: list[dict], path=None) -> None:
    """Raise a one-line error unless every extra method a result records is registered
    here from the same source: a user's file with the recorded sha256 (it must be named with
    ``--alignment-module``: a result never loads code), or the recorded package version."""
    for i, rec in enumerate(recorded):
        name, field_ = rec["name"], f"settings.alignments[{i}]"
        try:
            now = alignment_record(name)
        except NumbenchError:
            hint = (f"pass its file ({rec['module']}, sha256 {rec['sha256'][:12]}…) with "
                    "--alignment-module FILE" if "sha256" in rec else
                    f"install {rec['package']}" if "package" in rec else "")
            raise NumbenchError(f"alignment '{name}' is not registered: {hint}".rstrip(": "),
                                path=path, field=field_) from None
        if "sha256" in rec and now.get("sha256") != rec["sha256"]:
            got = f"sha256 {now['sha256'][:12]}…" if "sha256" in now else "no user file"
            raise NumbenchError(f"alignment '{name}' was recorded from {rec['module']} with "
                                f"sha256 {rec['sha256'][:12]}…; the one loaded has {got}: "
                                "pass the very file with --alignment-module",
                                path=path, field=field_)
        if "sha256" not in rec and now != rec:
            raise NumbenchError(f"alignment '{name}' was recorded as {rec}; here it is {now}",
                                path=path, field=field_)


def reusable_cells(doc: dict, path, *, model_sha256: str, protocol_sha256: str, task: str,
                   device: str, cpu: str, settings: Settings) -> dict[str, dict]:
    """The cells of a finished result (``evaluate --reuse``) that this evaluation would
    train exactly as they are, by key: same model file, protocol, task, kind of device and
    CPU, seed and budget (the extra methods may differ; so may ``workers``). A fit trains from a seed
    of its own key and never sees another fit, so a copied cell is the cell a new fit would
    give. Cells of an extra method are copied only where the method comes from the same
    source. One-line NumbenchError where the result cannot lend its fits."""
    theirs = {"model file": doc["model"]["sha256"], "protocol": doc["versions"]["protocol_sha256"],
              "task": doc["task"]["name"], "device": doc["versions"].get("device", "cpu"),
              "kind of CPU": doc["versions"].get("cpu")}
    mine = {"model file": model_sha256, "protocol": protocol_sha256, "task": task,
            "device": device, "kind of CPU": cpu}
    for what in theirs:
        if theirs[what] != mine[what]:
            raise NumbenchError(f"--reuse: the result is of another {what} "
                                f"({str(theirs[what])[:40]}; this run: {str(mine[what])[:40]})",
                                path=path)
    recorded = Settings.from_json(doc["settings"])
    strip = lambda s: {k: v for k, v in s.fingerprint().items() if k != "alignments"}
    if strip(recorded) != strip(settings):
        raise NumbenchError("--reuse: the result was evaluated with another seed, budget or "
                            "speed setting: its fits would not be this run's", path=path)
    same_source = set(RANKED_ALIGNMENTS) | set(BASELINE_ALIGNMENTS) | {"sd_linear"}
    for rec in doc["settings"].get("alignments", []):
        if rec["name"] in settings.alignments and alignment_record(rec["name"]) == rec:
            same_source.add(rec["name"])
    return {c["key"]: {k: v for k, v in c.items() if k != "ranked_k"}
            for c in doc["cells"] if c["alignment"] in same_source}
