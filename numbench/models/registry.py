"""The architecture registry and the plugin loader.

Built-in architectures register themselves with :func:`register_architecture`. An
architecture defined outside the package is loaded either from a Python file the *user*
names (``--arch-module path.py``) or from an installed package's entry point in the group
``numbench.architectures``. A model file never causes code to be loaded: it only names an
architecture, which must already be registered.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import sys
import typing
from importlib.metadata import entry_points
from pathlib import Path

import torch
from torch.nn.modules.module import register_module_parameter_registration_hook
from torch.overrides import TorchFunctionMode

from ..errors import NumbenchError
from .contract import NumbenchModel

_ARCHITECTURES: dict[str, type[NumbenchModel]] = {}
_entry_points_loaded = False
_plugin_paths: list[str] = []  # architecture modules loaded by path, for worker processes


def register_architecture(cls: type[NumbenchModel]) -> type[NumbenchModel]:
    """Class decorator: make ``cls`` available under ``cls.arch``."""
    if not (isinstance(cls, type) and issubclass(cls, NumbenchModel)):
        raise TypeError("register_architecture expects a NumbenchModel subclass")
    for attr in ("arch", "family", "Config"):
        if not hasattr(cls, attr):
            raise TypeError(f"{cls.__name__} must define '{attr}'")
    if cls.family not in ("recurrent", "transformer"):
        raise TypeError(f"{cls.__name__}.family must be 'recurrent' or 'transformer'")
    _ARCHITECTURES[cls.arch] = cls
    return cls


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group="numbench.architectures"):
        ep.load()  # importing the module registers its architectures


def load_arch_module(path: str | Path) -> list[str]:
    """Import a user's architecture file; returns the architectures it registered."""
    path = Path(path)
    if not path.is_file() or path.suffix != ".py":
        raise NumbenchError("no such architecture module (expected a .py file)", path=path)
    before = set(_ARCHITECTURES)
    name = f"numbench_plugin_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # a broken plugin is the user's input: say so in one line
        raise NumbenchError(f"importing the architecture module failed: {type(e).__name__}: {e}",
                            path=path) from None
    added = sorted(set(_ARCHITECTURES) - before)
    if not added and not any(getattr(c, "__module__", "") == name for c in _ARCHITECTURES.values()):
        raise NumbenchError("registers no architecture (decorate a NumbenchModel subclass "
                            "with @register_architecture)", path=path)
    if str(path.resolve()) not in _plugin_paths:
        _plugin_paths.append(str(path.resolve()))
    return added


def plugin_paths() -> list[str]:
    """The architecture modules loaded by path so far (absolute), in loading order."""
    return list(_plugin_paths)


def architectures() -> dict[str, type[NumbenchModel]]:
    from . import gru, lstm, transformer  # noqa: F401  (built-ins register on import)

    _load_entry_points()
    return dict(_ARCHITECTURES)


def get_architecture(name: str) -> type[NumbenchModel]:
    archs = architectures()
    if name not in archs:
        raise NumbenchError(f"architecture '{name}' is not registered (known: "
                            f"{', '.join(sorted(archs))}); a plugin architecture needs "
                            f"--arch-module PATH.py")
    return archs[name]


#: config floats that must also be > 0: bounds no constructor checks (a RoPE base <= 0 turns
#: every rotation angle into NaN, and the model loads, then answers NaN)
_POSITIVE = {("transformer", "rope_base")}


def make_config(cls: type[NumbenchModel], overrides: dict | None = None):
    """``cls.Config`` from a dict: unknown keys rejected, types checked, loudly. A float
    must be finite (NaN, inf or an int too large for a float are refused)."""
    overrides = dict(overrides or {})
    fields = {f.name: f for f in dataclasses.fields(cls.Config)}
    hints = typing.get_type_hints(cls.Config)
    for key, value in overrides.items():
        if key not in fields:
            raise NumbenchError(f"unknown config key '{key}' for {cls.arch} "
                                f"(keys: {', '.join(fields)})")
        want = hints[key]
        ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            try:
                value, ok = float(value), True
            except OverflowError:
                ok = False
        if not ok:
            raise NumbenchError(f"config key '{key}' of {cls.arch} must be {want.__name__}, "
                                f"got {value!r:.60}")
        if want is float and not math.isfinite(value):
            raise NumbenchError(f"config key '{key}' of {cls.arch} must be a finite number, "
                                f"got {value!r}")
        if (cls.arch, key) in _POSITIVE and value <= 0:
            raise NumbenchError(f"config key '{key}' of {cls.arch} must be > 0, got {value!r}")
        overrides[key] = value
    return cls.Config(**overrides)


def build_model(arch: str, config: dict | None, vocabulary: tuple[str, ...]) -> NumbenchModel:
    cls = get_architecture(arch)
    return cls(make_config(cls, config), tuple(vocabulary))


class _ShapesOnly(TorchFunctionMode):
    """Inside ``torch.device("meta")``: skip initialisation (``torch.nn.init``, a bare
    ``normal_``). Meta tensors hold no values anyway, and ``normal_`` has no meta kernel:
    its fallback imports torch's compiler, ~2 s."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.Tensor.normal_ or getattr(func, "__module__", "") == "torch.nn.init":
            return args[0] if args else kwargs["tensor"]  # nn.init's first parameter
        return func(*args, **(kwargs or {}))


class TooLarge(Exception):
    """A model built on the meta device outgrew its budget (see :func:`meta_model`)."""


def meta_model(arch: str, config: dict | None, vocabulary: tuple[str, ...], *,
               max_values: float | None = None, max_tensors: int | None = None
               ) -> NumbenchModel | None:
    """The model ``build_model`` would make, built on torch's meta device: shapes only,
    nothing allocated, nothing initialised. Building stops with :class:`TooLarge` as soon
    as more than ``max_values`` parameter values or ``max_tensors`` parameters are
    registered, or a tensor is too large for its size in bytes to fit 64 bits: a config
    of 200,000 layers is refused after a few, not after minutes of building modules. None
    when the architecture cannot be built on the meta device (a plugin that reads its
    weights while building; a config the real build refuses, such as a width of 0)."""
    cls = get_architecture(arch)
    cfg = make_config(cls, config)
    values, tensors = 0, 0

    def budget(_module, _name, param):
        nonlocal values, tensors
        if param is not None and param.device.type == "meta":
            values, tensors = values + param.numel(), tensors + 1
            if max_values is not None and values > max_values:
                raise TooLarge(f"more than {max_values:,} parameter values")
            if max_tensors is not None and tensors > max_tensors:
                raise TooLarge(f"more than {max_tensors:,} parameters")

    hook = register_module_parameter_registration_hook(budget)
    try:
        with torch.device("meta"), _ShapesOnly():
            return cls(cfg, tuple(vocabulary))
    except TooLarge:
        raise
    except Exception as e:
        # torch: "Storage size calculation overflowed with sizes=[...]"
        if "overflow" in str(e):
            raise TooLarge("tensors too large for their size in bytes to fit 64 bits") from None
        return None
    finally:
        hook.remove()


def count_parameters(arch: str, config: dict | None, vocabulary: tuple[str, ...], *,
                     limit: float | None = None) -> float | None:
    """How many parameters ``build_model`` would make, counted on torch's meta device
    (:func:`meta_model`: nothing allocated, nothing initialised). ``math.inf`` when a
    tensor is too large for its size in bytes to fit 64 bits, or (given ``limit``) as
    soon as more than ``limit`` are counted; None when the architecture cannot be built
    on the meta device."""
    try:
        model = meta_model(arch, config, vocabulary, max_values=limit)
    except TooLarge:
        return math.inf
    return None if model is None else sum(p.numel() for p in model.parameters())
