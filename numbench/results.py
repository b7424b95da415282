"""Result files: atomic writes, the partial-run file behind --resume, validation, sealing.

Every key of a result is documented in docs/result-schema.md; :func:`validate_result`
checks the structure that the leaderboard and verify rely on. A result is *sealed*: its
``digest`` is the sha256 of the rest of the document, so a number edited by hand
afterwards is caught (re-sealing an edited file is caught by ``numbench verify``).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .errors import NumbenchError
from .hashing import sha256_json

RESULT_SCHEMA_VERSION = 1
_UMASK = os.umask(0o022)
os.umask(_UMASK)

_TOP = {"schema_version": int, "kind": str, "ranked": bool, "versions": dict, "settings": dict,
        "task": dict, "model": dict, "task_accuracy": dict, "gate": dict, "pairs": dict,
        "cells": list, "summary": dict, "wall_seconds": dict, "digest": str}
_CELL = {"key": str, "program": str, "variable": str, "alignment": str, "k": int, "site": str,
         "mode": str, "valid_iia": float, "test_iia": float, "steps": int, "stop_reason": str,
         "pairs": dict}


def result_digest(doc: dict) -> str:
    """sha256 of the document without its ``digest`` key."""
    return sha256_json({k: v for k, v in doc.items() if k != "digest"})


def seal(doc: dict) -> dict:
    """The document with its ``digest`` set (last key)."""
    out = {k: v for k, v in doc.items() if k != "digest"}
    out["digest"] = result_digest(out)
    return out


def load_result(path: str | Path) -> dict:
    """Read, validate and check the seal of a result file; one-line NumbenchError if bad."""
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as e:
        raise NumbenchError(f"cannot read ({e.strerror})", path=path) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise NumbenchError(f"not valid JSON ({e})", path=path) from None
    validate_result(doc, path)
    if doc["digest"] != result_digest(doc):
        raise NumbenchError("digest mismatch: the file was changed after it was written",
                            path=path, field="digest")
    return doc


def write_json_atomic(path: str | Path, doc: dict) -> None:
    """Write JSON atomically (see :func:`write_text_atomic`)."""
    write_text_atomic(path, json.dumps(doc, indent=1, sort_keys=False) + "\n")


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write to a temp file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; a result is for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_partial(path: Path, fingerprint: dict) -> dict:
    """Completed engine runs of an interrupted evaluation with the same fingerprint."""
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, OSError):
        return {}
    return doc.get("runs", {}) if doc.get("fingerprint") == fingerprint else {}


def validate_result(doc: object, path: str | Path = "<result>") -> dict:
    """Check a result document's structure; raise a one-line NumbenchError if wrong."""
    if not isinstance(doc, dict):
        raise NumbenchError("a result must be a JSON object", path=path)
    for key, typ in _TOP.items():
        if key not in doc:
            raise NumbenchError("missing field", path=path, field=key)
        if not isinstance(doc[key], typ) or (typ is int and isinstance(doc[key], bool)):
            raise NumbenchError(f"must be {typ.__name__}", path=path, field=key)
    if doc["kind"] != "numbench-result":
        raise NumbenchError("not a numbench result", path=path, field="kind")
    if doc["schema_version"] != RESULT_SCHEMA_VERSION:
        raise NumbenchError(f"unsupported schema version {doc['schema_version']}", path=path,
                            field="schema_version")
    for i, cell in enumerate(doc["cells"]):
        for key, typ in _CELL.items():
            value = cell.get(key) if isinstance(cell, dict) else None
            ok = isinstance(value, (int, float) if typ is float else typ) and not isinstance(value, bool)
            if not ok:
                raise NumbenchError(f"must be {typ.__name__}", path=path, field=f"cells[{i}].{key}")
        for key in ("valid_iia", "test_iia"):
            if not 0.0 <= cell[key] <= 1.0:
                raise NumbenchError("must be in [0, 1]", path=path, field=f"cells[{i}].{key}")
    for split, value in doc["task_accuracy"].items():
        if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise NumbenchError("must be in [0, 1]", path=path, field=f"task_accuracy.{split}")
    return doc
