"""The numbench model file: one documented format (docs/model-files.md), read safely.

``.pt`` is ``torch.save`` of a plain dict, read back with ``weights_only=True``;
``.safetensors`` holds the state_dict as tensors and every other key as JSON under the
metadata key ``numbench``. Loading checks the metadata, builds the architecture the file
names from the registry (a file never brings code) and checks every tensor before
``load_state_dict``. Every problem is one :class:`NumbenchError` line naming the file.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import struct
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes

from ..errors import NumbenchError
from ..hashing import sha256_file
from ..tasks import Task
from ..training import MAX_PARAMETERS
from .contract import NumbenchModel
from .registry import TooLarge, build_model, meta_model

__all__ = ["FORMAT", "FORMAT_VERSION", "SUFFIXES", "ModelMeta", "save_model", "load_model",
           "model_sha256", "check_task"]

FORMAT = "numbench-model"
FORMAT_VERSION = 1
SUFFIXES = (".pt", ".safetensors")

#: every key but "state_dict", with the type its value must have
_META_TYPES = {"format": str, "format_version": int, "arch": str, "config": dict, "task": dict,
               "vocabulary": list, "seed": int, "training": dict}
_KEYS = (*_META_TYPES, "state_dict")

# What a damaged file makes torch.load or safetensors raise (anything else is our bug).
_READ_ERRORS = (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError,
                OSError, KeyError, IndexError, TypeError, AttributeError, AssertionError,
                OverflowError, struct.error, SafetensorError)

#: the most a model file may hold, or unpack to: the largest model numbench trains, in the
#: widest dtype a file may store (float64), and room for metadata. Checked from the zip
#: directory before torch.load, so a small file of deflated zeros never unpacks.
MAX_MODEL_BYTES = MAX_PARAMETERS * 8 + 16 * 2**20
#: the most a ``.pt`` file's pickle (everything but the tensors' bytes) may unpack to
MAX_PICKLE_BYTES = 16 * 2**20
#: how deep ``config`` and ``training`` may nest (what numbench writes: 3 levels)
MAX_DEPTH = 64


@dataclass(frozen=True)
class ModelMeta:
    """Everything a model file holds besides its tensors."""

    arch: str
    config: dict
    task_name: str
    task_version: int
    vocabulary: tuple[str, ...]
    seed: int
    training: dict
    format_version: int = FORMAT_VERSION


# --- saving ------------------------------------------------------------------------------

def save_model(model: NumbenchModel, path: str | Path, *, task: Task, seed: int,
               training: dict | None = None) -> None:
    """Write ``model`` to ``path`` (``.pt`` or ``.safetensors``), atomically."""
    path = Path(path)
    suffix = _suffix(path)
    try:
        # A JSON round trip checks the metadata is plain data and makes both encodings
        # hold identical values (tuples become lists in each).
        meta = json.loads(json.dumps({
            "format": FORMAT, "format_version": FORMAT_VERSION, "arch": model.arch,
            "config": model.config_dict(), "task": {"name": task.name, "version": task.version},
            "vocabulary": list(model.vocabulary), "seed": seed, "training": training or {},
        }))
    except (TypeError, ValueError) as e:
        raise NumbenchError(f"metadata is not plain JSON data ({e})", path=path) from None
    # never write what load_model would refuse
    check_task(_parse({**meta, "state_dict": {}}, path)[0], task, path)
    # clone: each tensor gets its own storage, so torch.save never writes the whole base of
    # a view and safetensors never sees two names sharing memory (tied weights).
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    if suffix == ".pt":
        _write_atomically(path, lambda f: torch.save({**meta, "state_dict": state}, f))
    else:
        blob = safetensors_bytes(state, metadata={"numbench": json.dumps(meta)})
        _write_atomically(path, lambda f: f.write(blob))


def _write_atomically(path: Path, write: Callable) -> None:
    """Write beside ``path``, then rename: no reader or crash ever sees half a file."""
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a model file is meant to be shared
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise NumbenchError(f"cannot write model file ({e.strerror or e})",
                                path=path) from None
        raise


# --- loading -----------------------------------------------------------------------------

def load_model(path: str | Path, *, task: Task | None = None
               ) -> tuple[NumbenchModel, ModelMeta]:
    """The model in ``path``, in eval mode, and its metadata. With ``task``, the file must
    have been trained on that task: same name, version and vocabulary."""
    path = Path(path)
    suffix = _suffix(path)
    if not path.is_file():
        raise NumbenchError("no such model file", path=path)
    _check_size(path)
    raw = _read_pt(path) if suffix == ".pt" else _read_safetensors(path)
    meta, state = _parse(raw, path)
    if task is not None:
        check_task(meta, task, path)
    # The config is checked against the file's tensors on the meta device first: a small
    # file declaring d_hidden=20000 or 200,000 layers is refused before anything is
    # allocated, and in milliseconds (building stops once it outgrows the file).
    values = sum(t.numel() for t in state.values())
    try:
        shapes = meta_model(meta.arch, meta.config, meta.vocabulary,
                            max_values=2 * values + 2**16, max_tensors=2 * len(state) + 64)
    except NumbenchError as e:  # unknown arch or bad config: the file is what is at fault
        raise NumbenchError(str(e), path=path) from None
    except TooLarge:
        raise NumbenchError(f"config {_short(meta.config)} declares a model far larger "
                            f"than the file's {len(state)} tensors of {values:,} values in "
                            f"all (not built)", path=path) from None
    if shapes is not None:  # None: built-ins always build on meta; a plugin may not
        _check_state(shapes, state, path)
    try:
        model = build_model(meta.arch, meta.config, meta.vocabulary)
    except NumbenchError as e:
        raise NumbenchError(str(e), path=path) from None
    except (TypeError, ValueError, RuntimeError, AssertionError, OverflowError) as e:
        raise NumbenchError(f"cannot build {meta.arch} from config {_short(meta.config)}: "
                            f"{type(e).__name__}: {_first_line(str(e))}", path=path) from None
    if shapes is None:
        _check_state(model, state, path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:  # the meta build disagreed with the real one (a plugin's)
        raise NumbenchError(f"state_dict does not fit {meta.arch}: {_first_line(str(e))}",
                            path=path) from None
    return model.eval(), meta


def model_sha256(path: str | Path) -> str:
    """sha256 of the model file's bytes: what names exactly which weights made a number."""
    path = Path(path)
    if not path.is_file():
        raise NumbenchError("no such model file", path=path)
    return sha256_file(path)


def _check_size(path: Path) -> None:
    """Refuse a file larger than ``MAX_MODEL_BYTES``, or a zip (what torch.save writes)
    whose entries unpack to more, before anything is read or unpacked."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise NumbenchError(f"cannot read model file ({e.strerror or e})", path=path) from None
    if size > MAX_MODEL_BYTES:
        raise NumbenchError(f"{size:,} bytes, more than the {MAX_MODEL_BYTES:,} a model file "
                            f"may have", path=path)
    if path.suffix != ".pt" or magic != b"PK\x03\x04":  # how torch.load tells a zip
        return  # safetensors and torch's legacy format are never compressed
    try:
        with zipfile.ZipFile(path) as z:
            entries = z.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError,
            IndexError, KeyError, NotImplementedError) as e:
        raise _corrupt(e, path) from None
    unpacked = sum(e.file_size for e in entries)
    if unpacked > MAX_MODEL_BYTES:
        raise NumbenchError(f"unpacks to {unpacked:,} bytes, more than the "
                            f"{MAX_MODEL_BYTES:,} a model file may hold (not unpacked)",
                            path=path)
    for e in entries:
        if e.filename.endswith("data.pkl") and e.file_size > MAX_PICKLE_BYTES:
            raise NumbenchError(f"its metadata ({e.filename}) unpacks to {e.file_size:,} "
                                f"bytes, more than the {MAX_PICKLE_BYTES:,} allowed (not "
                                f"unpacked)", path=path)


def _read_pt(path: Path) -> object:
    try:
        # weights_only: the unpickler admits tensors and plain containers only, so a file
        # can never name a class or function for us to import or call.
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" not in str(e):
            raise _corrupt(e, path) from None
        # what it refused, without torch's paragraphs of advice on allowlisting it
        what = str(e).partition("WeightsUnpickler error:")[2] or str(e)
        raise NumbenchError(f"unsafe or unsupported content (not loaded): {_first_line(what)}",
                            path=path) from None
    except MemoryError:
        raise NumbenchError("declares more data than fits in memory (not loaded)",
                            path=path) from None
    except _READ_ERRORS as e:
        raise _corrupt(e, path) from None


def _read_safetensors(path: Path) -> dict:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = (f.metadata() or {}).get("numbench")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except _READ_ERRORS as e:
        raise _corrupt(e, path) from None
    if header is None:
        raise NumbenchError("not a numbench model file (no 'numbench' metadata)", path=path)
    try:
        raw = json.loads(header)
    except RecursionError:
        raise NumbenchError("'numbench' metadata nests too deep", path=path) from None
    except ValueError as e:  # JSONDecodeError, or an int of more than 4300 digits
        raise NumbenchError(f"'numbench' metadata is not valid JSON ({_first_line(str(e))})",
                            path=path) from None
    if not isinstance(raw, dict) or "state_dict" in raw:  # tensors are stored as tensors
        raise NumbenchError("'numbench' metadata must be a JSON object without 'state_dict'",
                            path=path)
    return {**raw, "state_dict": tensors}


def _parse(raw: object, path: Path) -> tuple[ModelMeta, dict]:
    """Check the top-level keys and their types; ModelMeta and the state_dict."""
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise NumbenchError(f"not a numbench model file (no \"format\": \"{FORMAT}\")",
                            path=path)
    version = raw.get("format_version")
    if not _is_int(version) or version != FORMAT_VERSION:  # before the keys: they may change
        raise NumbenchError(f"unsupported format_version {version!r} (this numbench reads "
                            f"{FORMAT_VERSION})", path=path)
    for key in _KEYS:
        if key not in raw:
            raise NumbenchError("missing key", path=path, field=key)
    for key in raw:
        if key not in _KEYS:
            raise NumbenchError("unexpected key", path=path, field=str(key))
    for key, want in _META_TYPES.items():
        if not isinstance(raw[key], want) or (want is int and isinstance(raw[key], bool)):
            raise NumbenchError(f"must be {want.__name__}, got {type(raw[key]).__name__}",
                                path=path, field=key)
    t = raw["task"]
    if set(t) != {"name", "version"} or not (isinstance(t["name"], str) and _is_int(t["version"])):
        raise NumbenchError('must be {"name": str, "version": int}', path=path, field="task")
    vocab = raw["vocabulary"]
    if not vocab or not all(isinstance(tok, str) and tok for tok in vocab):
        raise NumbenchError("must be a non-empty list of token strings", path=path,
                            field="vocabulary")
    for key in ("config", "training"):
        problem = _plain_problem(raw[key])
        if problem:
            raise NumbenchError(problem, path=path, field=key)
    state = raw["state_dict"]
    if not (isinstance(state, dict)
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())):
        raise NumbenchError("must map parameter names to tensors", path=path,
                            field="state_dict")
    meta = ModelMeta(raw["arch"], raw["config"], t["name"], t["version"], tuple(vocab),
                     raw["seed"], raw["training"], version)
    return meta, state


def check_task(meta: ModelMeta, task: Task, path: str | Path) -> None:
    """The model file at ``path`` (metadata ``meta``) was trained on ``task``, or an error."""
    for ok, why in [
        (meta.task_name == task.name, f"trained on task '{meta.task_name}', not '{task.name}'"),
        (meta.task_version == task.version, f"trained on {task.name} version "
                                            f"{meta.task_version}, not {task.version}"),
        (meta.vocabulary == task.vocabulary, f"vocabulary {list(meta.vocabulary)} differs "
                                             f"from task {task.name}'s {list(task.vocabulary)}"),
    ]:
        if not ok:
            raise NumbenchError(why, path=path)


#: the float dtypes a model file's tensors may have (each loads into a float32 parameter)
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _check_state(model: NumbenchModel, state: dict, path: Path) -> None:
    """Names, shapes, dtypes and finiteness, each reported by tensor name. ``model`` may
    be built on the meta device: only its tensors' names, shapes and dtypes are read."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    if missing:
        raise NumbenchError(f"state_dict is missing {len(missing)} tensor(s) of {model.arch}: "
                            f"{', '.join(missing[:5])}", path=path)
    extra = [k for k in state if k not in expected]
    if extra:
        raise NumbenchError(f"state_dict has {len(extra)} unexpected tensor(s) for "
                            f"{model.arch}: {', '.join(extra[:5])}", path=path)
    for key, want in expected.items():
        got = state[key]
        if got.is_nested or got.layout != torch.strided:
            raise NumbenchError(f"tensor '{key}' is not a dense tensor", path=path)
        if got.device.type != "cpu":
            raise NumbenchError(f"tensor '{key}' holds no data ({got.device.type} device)",
                                path=path)
        if got.is_floating_point() and got.dtype not in FLOAT_DTYPES:
            raise NumbenchError(f"tensor '{key}' has dtype {got.dtype}, expected one of "
                                f"{', '.join(map(str, FLOAT_DTYPES))}", path=path)
        if got.shape != want.shape:
            raise NumbenchError(f"tensor '{key}' has shape {tuple(got.shape)}, expected "
                                f"{tuple(want.shape)}", path=path)
        # any float width loads into a float parameter; other dtypes must match exactly
        if (got.is_floating_point() != want.is_floating_point()
                or (not want.is_floating_point() and got.dtype != want.dtype)):
            raise NumbenchError(f"tensor '{key}' has dtype {got.dtype}, expected {want.dtype}",
                                path=path)
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            raise NumbenchError(f"tensor '{key}' has NaN or inf values", path=path)


# --- helpers -----------------------------------------------------------------------------

def _suffix(path: Path) -> str:
    if path.suffix not in SUFFIXES:
        raise NumbenchError(f"unsupported model file suffix '{path.suffix}' (use .pt or "
                            f".safetensors)", path=path)
    return path.suffix


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _plain_problem(x: object) -> str | None:
    """None for JSON data (what survives both encodings unchanged and writes back as
    JSON), else what is wrong. Iterative: a file nesting 50,000 deep is refused, not a
    RecursionError; a pickle may share or loop its containers, which JSON cannot."""
    seen: set[int] = set()
    stack = [(x, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, (dict, list)):
            if depth > MAX_DEPTH:
                return f"nests more than {MAX_DEPTH} deep"
            if id(v) in seen:
                return "must be plain JSON data (an object or list appears twice)"
            seen.add(id(v))
            if isinstance(v, dict):
                if not all(isinstance(k, str) for k in v):
                    return "must be plain JSON data (an object key is not a string)"
                v = v.values()
            stack.extend((item, depth + 1) for item in v)
        elif isinstance(v, float):
            if not math.isfinite(v):
                return f"must be plain JSON data, without NaN or inf (holds {v})"
        elif not (v is None or isinstance(v, (str, int, bool))):
            return f"must be plain JSON data, not {type(v).__name__}"
    return None


def _short(config: dict) -> str:
    """A config for a one-line message: at most 120 characters of it."""
    text = str(config)
    return text if len(text) <= 120 else text[:117] + "..."


def _first_line(text: str) -> str:
    """The first sentence of the first non-empty line: torch's messages run to paragraphs."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # and colour parts of them
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return line.split(". ")[0]


def _corrupt(e: Exception, path: Path) -> NumbenchError:
    why = _first_line(str(e))
    why = f"{type(e).__name__}: {why}" if why else type(e).__name__
    return NumbenchError(f"truncated or corrupt file (not loaded): {why}", path=path)
