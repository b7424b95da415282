"""Result files: atomic writes, the partial-run file behind --resume, validation, sealing.

Every key of a result is documented in docs/result-schema.md; :func:`validate_result`
checks the structure that the leaderboard and verify rely on. A result is *sealed*: its
``digest`` is the sha256 of the rest of the document, so a number edited by hand
afterwards is caught (re-sealing an edited file is caught by ``numbench verify``). Its
``summary`` must be what its cells give (:func:`check_summary`), so a resealed summary is
caught without a re-run.
"""

from __future__ import annotations

import functools
import json
import math
import os
import stat
import tempfile
from importlib import resources
from pathlib import Path

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from .errors import NumbenchError
from .hashing import sha256_json
from .scores import result_summary

RESULT_SCHEMA_VERSION = 1
_UMASK = os.umask(0o022)
os.umask(_UMASK)

_TOP = {"schema_version": int, "kind": str, "ranked": bool, "versions": dict, "settings": dict,
        "task": dict, "model": dict, "task_accuracy": dict, "gate": dict, "pairs": dict,
        "cells": list, "summary": dict, "wall_seconds": dict, "digest": str}
_NESTED = {"versions": {"protocol": str}, "task": {"name": str},
           "model": {"file": str, "sha256": str, "arch": str, "parameters": int}}
_CELL = {"key": str, "program": str, "variable": str, "alignment": str, "k": int, "site": str,
         "site_index": int, "mode": str, "control": (str, type(None)), "ranked_k": bool,
         "valid_iia": float, "test_iia": float, "steps": int, "stop_reason": str, "pairs": dict}
#: the summary is recomputed with the code that wrote it: only float noise may differ
SUMMARY_TOLERANCE = 1e-9


def result_digest(doc: dict) -> str:
    """sha256 of the document without its ``digest`` key."""
    return sha256_json({k: v for k, v in doc.items() if k != "digest"})


def seal(doc: dict) -> dict:
    """The document with its ``digest`` set (last key)."""
    out = {k: v for k, v in doc.items() if k != "digest"}
    out["digest"] = result_digest(out)
    return out


class _DuplicateKey(ValueError):
    pass


def _object_without_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    out = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


#: the largest JSON file numbench reads (results are well under 1 MB; a sweep's ~10 MB)
MAX_JSON_BYTES = 64 * 2**20


def read_bytes(path: str | Path) -> bytes:
    """A file's bytes; one-line NumbenchError when it is not a regular file of at most
    ``MAX_JSON_BYTES`` (a FIFO or /dev/zero would hang or fill memory) or cannot be read."""
    try:
        info = os.stat(path)  # before opening: opening a FIFO waits for a writer
        if not stat.S_ISREG(info.st_mode):
            raise NumbenchError("not a regular file", path=path)
        if info.st_size > MAX_JSON_BYTES:
            raise NumbenchError(f"{info.st_size:,} bytes, more than the {MAX_JSON_BYTES:,} a "
                                "numbench JSON file may have", path=path)
        with open(path, "rb") as f:
            return f.read(MAX_JSON_BYTES + 1)
    except OSError as e:
        raise NumbenchError(f"cannot read ({e.strerror})", path=path) from None


def read_json(path: str | Path) -> object:
    """A JSON file's content; one-line NumbenchError when it cannot be read (see
    :func:`read_bytes`), is not JSON, nests too deep, or repeats a key in one object
    (readers disagree on which value counts)."""
    data = read_bytes(path)
    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=_object_without_duplicate_keys)
    except RecursionError:
        raise NumbenchError("JSON nested too deep", path=path) from None
    except _DuplicateKey as e:
        raise NumbenchError(f"duplicate key '{e.args[0]}' in one object", path=path) from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, an int of > 4300 digits
        raise NumbenchError(f"not valid JSON ({e})", path=path) from None


def load_result(path: str | Path) -> dict:
    """Read, validate and check the seal and the summary of a result file; one-line
    NumbenchError if bad."""
    doc = validate_result(read_json(path), path)
    if doc["digest"] != result_digest(doc):
        raise NumbenchError("digest mismatch: the file was changed after it was written",
                            path=path, field="digest")
    check_summary(doc, path)
    return doc


def check_summary(doc: dict, path: str | Path = "<result>") -> None:
    """Raise unless ``summary`` is what the cells give (:func:`~numbench.scores.result_summary`,
    the code ``evaluate`` uses), number for number. A key the stored summary lacks reads as
    null: protocol-1 summaries have no ``no_interchange_iia``."""
    difference = _first_difference(doc["summary"], result_summary(doc), "summary")
    if difference:
        raise NumbenchError(difference[1], path=path, field=difference[0])


def _first_difference(stored: object, recomputed: object, field: str) -> tuple[str, str] | None:
    """(field, why) of the first place where a stored JSON value is not the recomputed one."""
    short = lambda x: json.dumps(x)[:40]
    if isinstance(recomputed, dict):
        if not isinstance(stored, dict):
            return field, f"must be an object, not {short(stored)}"
        for key, value in recomputed.items():
            found = _first_difference(stored.get(key), value, f"{field}.{key}")
            if found:
                return found
        extra = sorted(set(stored) - set(recomputed), key=str)
        return (f"{field}.{extra[0]}", "is not in the summary the cells give") if extra else None
    if _has_type(recomputed, float):
        if not _has_type(stored, float):
            return field, f"must be a number, not {short(stored)}"
        if not math.isfinite(stored):
            return field, f"must be a finite number, not {short(stored)}"
        if abs(stored - recomputed) > SUMMARY_TOLERANCE:
            return field, f"is {short(stored)}, but the cells give {short(recomputed)}"
        return None
    if stored != recomputed or type(stored) is not type(recomputed):
        return field, f"is {short(stored)}, but the cells give {short(recomputed)}"
    return None


def write_json_atomic(path: str | Path, doc: dict) -> None:
    """Write JSON atomically (see :func:`write_text_atomic`)."""
    write_text_atomic(path, json.dumps(doc, indent=1, sort_keys=False) + "\n")


def check_writable(path: str | Path) -> None:
    """Raise a one-line NumbenchError unless a file could be written at ``path``: checked
    before work whose result would be lost at the end. Creates nothing: it probes the
    nearest folder that exists (where the missing ones would be made)."""
    path = Path(path).absolute()
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        if not folder.is_dir():
            raise NotADirectoryError(20, f"{folder} is not a folder")
        fd, tmp = tempfile.mkstemp(prefix=".numbench-", suffix=".probe", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise NumbenchError(f"cannot write here ({e.strerror})", path=path) from None


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write to a temp file in the same folder, fsync, then rename over ``path``; a failure
    (read-only folder, full disk, a file where a folder should be) is a one-line
    NumbenchError and leaves what was at ``path`` as it was."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; a result is for sharing
        os.replace(tmp, path)
    except BaseException as e:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise NumbenchError(f"cannot write ({e.strerror})", path=path) from None
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


def _has_type(value: object, typ: type | tuple[type, ...]) -> bool:
    """isinstance, where float means any JSON number and only bool is a bool."""
    types = typ if isinstance(typ, tuple) else (typ,)
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, tuple((int, float) if t is float else t for t in types))


def _check_fields(obj: dict, spec: dict, path: str | Path, prefix: str = "") -> None:
    for key, typ in spec.items():
        if key not in obj:
            raise NumbenchError("missing field", path=path, field=prefix + key)
        if not _has_type(obj[key], typ):
            names = " or ".join("null" if t is type(None) else t.__name__
                                for t in (typ if isinstance(typ, tuple) else (typ,)))
            raise NumbenchError(f"must be {names}", path=path, field=prefix + key)


def _check_fraction(value: object, path: str | Path, field: str) -> None:
    if not _has_type(value, float) or not 0.0 <= value <= 1.0:
        raise NumbenchError("must be a number in [0, 1]", path=path, field=field)


def _check_fractions(tree: object, path: str | Path, field: str, depth: int) -> None:
    """tree: objects nested ``depth`` deep, numbers in [0, 1] at the leaves."""
    if depth == 0:
        return _check_fraction(tree, path, field)
    if not isinstance(tree, dict):
        raise NumbenchError("must be an object", path=path, field=field)
    for key, sub in tree.items():
        _check_fractions(sub, path, f"{field}.{key}", depth - 1)


@functools.cache
def result_schema_validator() -> Draft202012Validator:
    """The published result schema, ``numbench/schemas/result.schema.json`` (package data)."""
    text = resources.files("numbench").joinpath("schemas/result.schema.json").read_text("utf-8")
    return Draft202012Validator(json.loads(text))


#: JSON Schema type → the word the hand-written checks use
_TYPE_WORDS = {"integer": "int", "string": "str", "boolean": "bool", "number": "a number",
               "object": "an object", "array": "a list", "null": "null"}


def _json_path(parts) -> str:
    """cells[3].test_iia for ("cells", 3, "test_iia")."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _schema_problem(error: ValidationError) -> tuple[str, str]:
    """(field, one-line why) of a schema error, in the words of the hand-written checks."""
    short = lambda x: json.dumps(x)[:40]
    parts, schema, kind = list(error.absolute_path), error.schema, error.validator
    if kind == "required":
        parts.append(next(k for k in error.validator_value if k not in error.instance))
        return _json_path(parts), "missing field"
    if kind == "additionalProperties":
        known = set(schema.get("properties", {}))
        parts.append(sorted((k for k in error.instance if k not in known), key=str)[0])
        return _json_path(parts), "unknown field (not in docs/result-schema.md)"
    if schema.get("minimum") == 0 and schema.get("maximum") == 1:
        return _json_path(parts), "must be a number in [0, 1]"
    if kind == "type":
        types = error.validator_value
        types = types if isinstance(types, list) else [types]
        return _json_path(parts), (f"must be {' or '.join(_TYPE_WORDS[t] for t in types)}, "
                                   f"not {short(error.instance)}")
    if kind in ("const", "enum"):
        allowed = [error.validator_value] if kind == "const" else error.validator_value
        return _json_path(parts), (f"must be {' or '.join(map(json.dumps, allowed))}, "
                                   f"not {short(error.instance)}")
    if kind == "pattern":
        return _json_path(parts), f"must match {error.validator_value}, not {short(error.instance)}"
    return _json_path(parts), error.message.splitlines()[0][:100]


def _check_schema(doc: object, path: str | Path) -> None:
    error = best_match(result_schema_validator().iter_errors(doc))
    if error is not None:
        field, why = _schema_problem(error)
        raise NumbenchError(why, path=path, field=field or None)


def validate_result(doc: object, path: str | Path = "<result>") -> dict:
    """Check a result document's structure: the published schema first, then what a schema
    cannot say (NaN is not in [0, 1]); raise a one-line NumbenchError if wrong."""
    if not isinstance(doc, dict):
        raise NumbenchError("a result must be a JSON object", path=path)
    _check_schema(doc, path)
    _check_fields(doc, _TOP, path)
    for key, spec in _NESTED.items():
        _check_fields(doc[key], spec, path, prefix=f"{key}.")
    if doc["kind"] != "numbench-result":
        raise NumbenchError("not a numbench result", path=path, field="kind")
    if doc["schema_version"] != RESULT_SCHEMA_VERSION:
        raise NumbenchError(f"unsupported schema version {doc['schema_version']}", path=path,
                            field="schema_version")
    for i, cell in enumerate(doc["cells"]):
        if not isinstance(cell, dict):
            raise NumbenchError("must be an object", path=path, field=f"cells[{i}]")
        _check_fields(cell, _CELL, path, prefix=f"cells[{i}].")
        for key in ("valid_iia", "test_iia"):
            _check_fraction(cell[key], path, f"cells[{i}].{key}")
    _check_fractions(doc["task_accuracy"], path, "task_accuracy", depth=1)
    if "no_interchange" in doc:  # {program: {variable: {split: IIA}}}; absent in protocol 1
        _check_fractions(doc["no_interchange"], path, "no_interchange", depth=3)
    return doc
