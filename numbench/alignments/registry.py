"""The alignment registry: built-in kinds register themselves with
:func:`register_alignment`; a user adds one the same way (see docs/alignments.md).

An alignment defined outside the package comes from a Python file the *user* names
(``--alignment-module path.py``, :func:`load_alignment_module`) or from an installed
package's entry point in the group ``numbench.alignments``, loaded when a name is asked
for that is not registered yet (:func:`resolve_alignment`). A result or model file never
causes code to be loaded: it only names alignments. :func:`alignment_record` says where a
registered kind came from (a file's sha256, a package's version), as a result records it.
"""

from __future__ import annotations

import hashlib
import sys
import types
from importlib.metadata import entry_points
from pathlib import Path
from typing import Sequence

from ..errors import NumbenchError
from .base import Alignment

#: Alignment name -> class. Filled by @register_alignment when a kind's module is imported.
ALIGNMENTS: dict[str, type[Alignment]] = {}

#: name -> where a kind not built in came from: {"module": file name, "path", "sha256"} for a
#: user's file, {"package": "dist version"} for an entry point
_SOURCES: dict[str, dict] = {}
_loaded_files: dict[str, tuple[str, list[str]]] = {}  # resolved path -> (sha256, names)
_entry_points_loaded = False
PLUGIN_PREFIX = "numbench_alignment_plugin_"  # module names of files loaded by path


def register_alignment(cls: type[Alignment]) -> type[Alignment]:
    """Class decorator: make ``cls`` available as ``make_alignment(cls.name, …)``."""
    if not (isinstance(cls, type) and issubclass(cls, Alignment)):
        raise TypeError("register_alignment expects an Alignment subclass")
    if not isinstance(getattr(cls, "name", None), str):
        raise TypeError(f"{cls.__name__} must define a string 'name'")
    ALIGNMENTS[cls.name] = cls
    return cls


def _built_in(cls: type[Alignment]) -> bool:
    return cls.__module__.startswith("numbench.alignments.")


def load_alignment_module(path: str | Path, sha256: str | None = None) -> list[str]:
    """Import a user's alignment file; returns the alignments it registered. The file's
    bytes are hashed and those very bytes run, so the recorded sha256 is the code's
    (``sha256``: the content it must have, as a worker process checks the file its parent
    ran). A file loaded before with the same content is not run again. A file may not
    redefine a built-in kind (the ranked pair's numbers must not depend on a user's code)."""
    path = Path(path)
    if not path.is_file() or path.suffix != ".py":
        raise NumbenchError("no such alignment module (expected a .py file)", path=path)
    key = str(path.resolve())
    source = path.read_bytes()
    sha = hashlib.sha256(source).hexdigest()
    if sha256 is not None and sha != sha256:
        raise NumbenchError(f"changed since it was loaded (sha256 {sha256[:12]}…, now "
                            f"{sha[:12]}…)", path=path)
    if key in _loaded_files and _loaded_files[key][0] == sha:
        return list(_loaded_files[key][1])
    before = dict(ALIGNMENTS)
    name = f"{PLUGIN_PREFIX}{path.stem}_{hashlib.sha256(key.encode()).hexdigest()[:8]}"
    module = types.ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module
    try:
        exec(compile(source, str(path), "exec"), module.__dict__)
    except Exception as e:  # a broken plugin is the user's input: say so in one line
        ALIGNMENTS.clear()
        ALIGNMENTS.update(before)
        sys.modules.pop(name, None)
        raise NumbenchError(f"importing the alignment module failed: {type(e).__name__}: {e}",
                            path=path) from None
    mine = sorted(n for n, cls in ALIGNMENTS.items() if cls.__module__ == name)
    clash = [n for n in mine if n in before and _built_in(before[n])]
    if clash or not mine:
        ALIGNMENTS.clear()
        ALIGNMENTS.update(before)
        sys.modules.pop(name, None)
        raise NumbenchError(
            f"redefines the built-in alignment '{clash[0]}': give the method another name"
            if clash else "registers no alignment (decorate an Alignment subclass with "
            "@register_alignment)", path=path)
    for n in mine:
        _SOURCES[n] = {"module": path.name, "path": key, "sha256": sha}
    _loaded_files[key] = (sha, mine)
    return mine


def alignment_paths() -> list[tuple[str, str]]:
    """(absolute path, sha256) of each alignment file loaded by path so far, in loading
    order, for worker processes to load in turn."""
    return [(path, sha) for path, (sha, _) in _loaded_files.items()]


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group="numbench.alignments"):
        before = set(ALIGNMENTS.items())
        try:
            ep.load()  # importing the module registers its alignments
        except Exception as e:
            raise NumbenchError(f"loading the alignment entry point '{ep.name}' "
                                f"({ep.value}) failed: {type(e).__name__}: {e}") from None
        dist = getattr(ep, "dist", None)
        package = f"{dist.name} {dist.version}" if dist is not None else ep.value
        for n, cls in set(ALIGNMENTS.items()) - before:
            if not _built_in(cls):
                _SOURCES[n] = {"package": package}


def resolve_alignment(name: str) -> type[Alignment]:
    """The class registered as ``name``, loading the ``numbench.alignments`` entry points
    first if it is not registered yet; a one-line error naming the known kinds if none."""
    if name not in ALIGNMENTS:
        _load_entry_points()
    if name not in ALIGNMENTS:
        raise NumbenchError(f"alignment '{name}' is not registered (known: "
                            f"{', '.join(sorted(ALIGNMENTS))}); a method of your own needs "
                            "--alignment-module FILE")
    return ALIGNMENTS[name]


def alignment_record(name: str) -> dict:
    """Where alignment ``name`` comes from, as a result records it: ``{"name"}`` for a
    built-in kind, plus ``module`` (the file's name) and ``sha256`` for a user's file, or
    ``package`` ("name version") for an installed package's entry point."""
    resolve_alignment(name)
    source = _SOURCES.get(name, {})
    return {"name": name} | {k: v for k, v in source.items() if k != "path"}


def make_alignment(name: str, d: int, k: int, count: int = 1,
                   seed: int | Sequence[int] = 0) -> Alignment:
    """A ``name`` alignment of width d and subspace size k, holding ``count`` independent
    alignments; slice a is initialised from ``seed + a`` (or ``seed[a]`` for a list)."""
    return resolve_alignment(name)(d, k, count=count, seed=seed)
