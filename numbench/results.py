"""Result files: atomic writes, the partial-run file behind --resume, and validation.

Every key of a result is documented in docs/result-schema.md; :func:`validate_result`
checks the structure that the leaderboard and verify rely on.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .errors import NumbenchError

RESULT_SCHEMA_VERSION = 1

_TOP = {"schema_version": int, "kind": str, "ranked": bool, "versions": dict, "settings": dict,
        "task": dict, "model": dict, "task_accuracy": dict, "gate": dict, "pairs": dict,
        "cells": list, "summary": dict, "wall_seconds": dict}
_CELL = {"key": str, "program": str, "variable": str, "alignment": str, "k": int, "site": str,
         "mode": str, "valid_iia": float, "test_iia": float, "steps": int, "stop_reason": str,
         "pairs": dict}


def write_json_atomic(path: str | Path, doc: dict) -> None:
    """Write JSON to a temp file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=1, sort_keys=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
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
