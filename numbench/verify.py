"""Re-run the evaluation behind a result file and compare every number (``numbench verify``).

The result records its protocol, task, seed and engine settings, so the same model file
must reproduce it exactly on CPU (evaluation is deterministic). Compared: every key of the
document except those that describe the run rather than the numbers (``IGNORED``). A
digest that does not match the file's content is reported as a mismatch too, and the
re-run still names the fields that were changed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .device import device_name, recorded_kind, resolve_device
from .errors import NumbenchError
from .evaluate import evaluate
from .machine import bf16_products, cpu_description, other_cpu_note
from .models.files import model_sha256
from .protocol import PROTOCOL_VERSION
from .results import read_json, result_digest, validate_result, write_json_atomic
from .settings import Settings, check_alignment_sources
from .submissions import VERIFY_NAME
from .version import __version__

#: run facts, not results: they may differ between machines without making numbers differ
IGNORED = {"wall_seconds", "digest", "versions.python", "versions.torch", "versions.threads",
           "versions.numbench", "versions.cpu", "versions.device_name", "model.file"}


@dataclass
class Mismatch:
    field: str
    recorded: object
    reproduced: object

    def __str__(self) -> str:
        short = lambda x: (json.dumps(x) if not isinstance(x, (dict, list)) else type(x).__name__)[:60]
        return f"{self.field}: recorded {short(self.recorded)}, reproduced {short(self.reproduced)}"


def _keyed(cells: list) -> dict:
    return {c.get("key", str(i)) if isinstance(c, dict) else str(i): c for i, c in enumerate(cells)}


def diff(recorded: object, reproduced: object, path: str = "") -> list[Mismatch]:
    """Every leaf where the two documents differ; cells are matched by their key."""
    if path in IGNORED:
        return []
    if isinstance(recorded, dict) and isinstance(reproduced, dict):
        out = []
        for k in sorted(set(recorded) | set(reproduced), key=str):
            sub = f"{path}.{k}" if path else str(k)
            if k not in recorded or k not in reproduced:
                if sub not in IGNORED:
                    out.append(Mismatch(sub, recorded.get(k), reproduced.get(k)))
            else:
                out += diff(recorded[k], reproduced[k], sub)
        return out
    if path == "cells" and isinstance(recorded, list) and isinstance(reproduced, list):
        a, b = _keyed(recorded), _keyed(reproduced)
        return [m for k in sorted(set(a) | set(b))
                for m in (diff(a[k], b[k], f"cells[{k}]") if k in a and k in b
                          else [Mismatch(f"cells[{k}]", a.get(k), b.get(k))])]
    if isinstance(recorded, list) and isinstance(reproduced, list) and len(recorded) == len(reproduced):
        return [m for i, (x, y) in enumerate(zip(recorded, reproduced)) for m in diff(x, y, f"{path}[{i}]")]
    same = recorded == reproduced and type(recorded) is type(reproduced) or (
        isinstance(recorded, (int, float)) and isinstance(reproduced, (int, float))
        and not isinstance(recorded, bool) and float(recorded) == float(reproduced))
    return [] if same else [Mismatch(path, recorded, reproduced)]


@dataclass
class Verification:
    result_path: Path
    mismatches: list[Mismatch]
    record: dict

    @property
    def note(self) -> str | None:
        """Why the mismatches may come from the machine (another CPU kind), if they may."""
        return self.record.get("note")

    @property
    def passed(self) -> bool:
        return not self.mismatches


def slow_replay_note(result_path: str | Path) -> str | None:
    """A warning, before a re-run, when the result trained with bf16 products on a CPU with
    bf16 dot products and this one has none: torch emulates them, ~30× slower (None when
    not, or when the file cannot be read: ``verify`` then says why)."""
    try:
        engine = read_json(result_path)["settings"]["engine"]
    except (NumbenchError, KeyError, TypeError):
        return None
    if not isinstance(engine, dict) or engine.get("train_precision") != "bf16" or bf16_products():
        return None
    return (f"the result trained with bf16 products, and this CPU ({cpu_description()}) has no "
            "bf16 dot products: torch emulates them, ~30x slower than float32, so the re-run "
            "takes that much longer; a CPU with AVX512-BF16 or AMX replays it at speed")


def replay_device(versions: dict, device: str = "auto") -> torch.device:
    """Where to replay a result: a device of the kind it was computed on (``device``
    may pick which one, e.g. ``cuda:1``). Another kind is refused: its kernels differ,
    so its numbers would differ in their last bits and, over thousands of steps, more."""
    kind = recorded_kind(versions)
    name = versions.get("device_name") or kind
    if device == "auto":
        device = kind
    if device.split(":")[0] != kind:
        raise NumbenchError(f"computed on {kind} ({name}): replay it on a device of that kind, "
                            f"not --device {device}")
    try:
        return resolve_device(device)
    except NumbenchError as e:
        raise NumbenchError(f"computed on {kind} ({name}), which this machine cannot replay it "
                            f"on: {e}") from None


def verify(result_path: str | Path, model_path: str | Path, progress=None,
           device: str = "auto") -> Verification:
    """Re-run the recorded evaluation of ``model_path`` on a device of the recorded kind;
    record the outcome beside the result."""
    result_path = Path(result_path)
    doc = validate_result(read_json(result_path), result_path)  # one line if unreadable
    try:
        where = replay_device(doc["versions"], device)
    except NumbenchError as e:
        raise NumbenchError(str(e), path=result_path, field="versions.device") from None
    if doc["versions"]["protocol"] != PROTOCOL_VERSION:
        raise NumbenchError(f"made under protocol {doc['versions']['protocol']}; this numbench "
                            f"runs protocol {PROTOCOL_VERSION}", path=result_path,
                            field="versions.protocol")
    # every extra method from where it was recorded: a user's file (named with
    # --alignment-module, never loaded from the result) with the recorded sha256
    check_alignment_sources(doc["settings"].get("alignments", []), result_path)
    mismatches, differs = [], False
    if doc["digest"] != result_digest(doc):
        mismatches.append(Mismatch("digest", doc["digest"], result_digest(doc)))
    sha = model_sha256(model_path)
    if sha != doc["model"]["sha256"]:
        mismatches.append(Mismatch("model.sha256", doc["model"]["sha256"], sha))
    else:
        threads = doc["versions"].get("threads")
        before = torch.get_num_threads()
        if isinstance(threads, int) and threads > 0:
            torch.set_num_threads(threads)  # float sums can depend on the thread count
        settings = Settings.from_json(doc["settings"])
        try:
            again = evaluate(model_path, task_name=doc["task"]["name"], settings=settings,
                             progress=progress, device=where)
        finally:
            torch.set_num_threads(before)
        # settings added since the result was written are replayed at their old values
        rerun = diff(dict(doc, settings=settings.to_json()), again)
        mismatches, differs = mismatches + rerun, bool(rerun)
    record = {"kind": "numbench-verification", "result_digest": doc["digest"],
              "model_sha256": sha, "passed": not mismatches, "mismatches": len(mismatches),
              "first_mismatches": [str(m) for m in mismatches[:20]],
              "numbench": __version__, "torch": torch.__version__,
              "cpu_recorded": doc["versions"].get("cpu"), "cpu": cpu_description(),
              "device": where.type, "device_name": device_name(where)}
    # numbers that did not reproduce may come from another CPU kind's kernels: say so
    note = other_cpu_note(record["cpu_recorded"], record["cpu"]) if differs else None
    if note:
        record["note"] = note
    write_json_atomic(result_path.with_name(VERIFY_NAME), record)
    return Verification(result_path, mismatches, record)
