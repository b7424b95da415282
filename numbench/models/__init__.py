"""Models: the contract, the registry, and the reference architectures."""

from .contract import MODES, Edit, NumbenchModel, Resumable, edit_positions, left_align
from .recurrent import RecurrentRunner
from .speed import FusedResume, TailRunnable
from .registry import (architectures, build_model, get_architecture, load_arch_module,
                       make_config, register_architecture)

__all__ = [
    "MODES", "Edit", "NumbenchModel", "Resumable", "FusedResume", "TailRunnable", "edit_positions", "RecurrentRunner",
    "left_align", "architectures", "build_model", "get_architecture", "load_arch_module",
    "make_config", "register_architecture",
]
