"""The alignment registry: built-in kinds register themselves with
:func:`register_alignment`; a user adds one the same way (see docs/alignments.md)."""

from __future__ import annotations

from typing import Sequence

from ..errors import NumbenchError
from .base import Alignment

#: Alignment name -> class. Filled by @register_alignment when a kind's module is imported.
ALIGNMENTS: dict[str, type[Alignment]] = {}


def register_alignment(cls: type[Alignment]) -> type[Alignment]:
    """Class decorator: make ``cls`` available as ``make_alignment(cls.name, …)``."""
    if not (isinstance(cls, type) and issubclass(cls, Alignment)):
        raise TypeError("register_alignment expects an Alignment subclass")
    if not isinstance(getattr(cls, "name", None), str):
        raise TypeError(f"{cls.__name__} must define a string 'name'")
    ALIGNMENTS[cls.name] = cls
    return cls


def make_alignment(name: str, d: int, k: int, count: int = 1,
                   seed: int | Sequence[int] = 0) -> Alignment:
    """A ``name`` alignment of width d and subspace size k, holding ``count`` independent
    alignments; slice a is initialised from ``seed + a`` (or ``seed[a]`` for a list)."""
    if name not in ALIGNMENTS:
        raise NumbenchError(f"alignment '{name}' is not registered "
                            f"(known: {', '.join(sorted(ALIGNMENTS))})")
    return ALIGNMENTS[name](d, k, count=count, seed=seed)
