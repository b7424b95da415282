"""Content hashes: how numbench names exactly what generated a number."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np


def sha256_json(obj: object) -> str:
    """sha256 of a canonical JSON encoding (sorted keys, no whitespace)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def sha256_arrays(*arrays: np.ndarray) -> str:
    """sha256 over int64 little-endian bytes and shapes of the arrays, in order."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a, dtype="<i8")
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
