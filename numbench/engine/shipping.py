"""What travels to a worker process (``parallel``) and what it rebuilds there: a run's
models as architecture, config, vocabulary and weights; the plugin files and modules that
register their architectures and alignments; fit specs and results with their tensors as
numpy arrays (``parallel.Arrays``: one array per tensor object, so shared pair sets stay
shared)."""

from __future__ import annotations

import dataclasses
import importlib
import sys
from typing import Callable

import torch

from ..alignments import ALIGNMENTS, alignment_paths, load_alignment_module
from ..alignments.registry import PLUGIN_PREFIX
from ..models.contract import NumbenchModel
from .config import EngineConfig, FitResult, FitSpec
from .engine import Engine
from .parallel import Arrays


def _payload(model: NumbenchModel) -> tuple:
    """A model as its architecture, config, vocabulary and weights (numpy arrays)."""
    return (model.arch, model.config_dict(), model.vocabulary,
            {k: v.detach().numpy() for k, v in model.state_dict().items()})


def _modules(models: list[NumbenchModel], specs: list[FitSpec]) -> list[str]:
    """Modules that define the models' architectures and the alignments (registering them
    on import), for a child to import; a script's ``__main__`` the child has already run,
    and files loaded by path travel as paths (``Shipment``)."""
    names = {type(m).__module__ for m in models} | {ALIGNMENTS[s.alignment].__module__ for s in specs}
    return sorted(n for n in names if n != "__main__" and not n.startswith("numbench_plugin_")
                  and not n.startswith(PLUGIN_PREFIX))


def pack_specs(specs: list[FitSpec]) -> list[tuple]:
    arrays = Arrays()
    pack = lambda p: (type(p), [arrays(getattr(p, f.name)) for f in dataclasses.fields(p)])
    return [(s.key, s.alignment, s.k, pack(s.train), pack(s.valid), pack(s.test), s.seed,
             s.max_steps, s.patience) for s in specs]


def unpack_specs(packed: list[tuple]) -> list[FitSpec]:
    tensors = Arrays()
    unpack = lambda p: p[0](*[tensors(a) for a in p[1]])
    return [FitSpec(key, kind, k, unpack(tr), unpack(va), unpack(te), seed=seed,
                    max_steps=cap, patience=patience)
            for key, kind, k, tr, va, te, seed, cap, patience in packed]


def states(results: dict[int, FitResult], to) -> dict[int, FitResult]:
    """``results`` with each alignment state converted by ``to`` (tensor ↔ numpy)."""
    for r in results.values():
        r.state = {k: to(v) for k, v in r.state.items()}
    return results


def states_to_tensors(results: dict[int, FitResult]) -> dict[int, FitResult]:
    return states(results, torch.from_numpy)


class Shipment:
    """What a run's worker tasks need, packed once: the models, engines (model, site,
    mode), plugin files (architectures, then alignments) and modules to import, the
    settings; specs packed once a list. ``task(...)`` gives ``(task_fn, its arguments)``
    for ``parallel.farm``."""

    def __init__(self, task_fn: Callable, engines: list[Engine], config: EngineConfig, seed: int,
                 report: bool, stream: bool = False):
        from ..models.registry import plugin_paths

        models = list({id(e.model): e.model for e in engines}.values())
        which = {id(m): i for i, m in enumerate(models)}
        self.task_fn, self.models, self.config = task_fn, models, config
        self.seed, self.report, self.stream = seed, report, stream
        self.keys = [(which[id(e.model)], e.site, e.mode) for e in engines]
        self.payloads, self.plugins = [_payload(m) for m in models], (plugin_paths(),
                                                                       alignment_paths())
        self._packed: dict[int, tuple[list, list[tuple], list[str]]] = {}

    def task(self, run_id: int, p: int, specs: list[FitSpec], owners: list[int]) -> tuple:
        if id(specs) not in self._packed:  # a stream's tasks share one spec list
            self._packed[id(specs)] = (specs, pack_specs(specs), _modules(self.models, specs))
        _, packed, modules = self._packed[id(specs)]
        return self.task_fn, (run_id, p, self.payloads, self.keys, self.plugins, modules,
                              self.config, packed, owners, self.seed, self.report, self.stream)


def rebuild_engines(engines: list[tuple[int, str, str]], models: list[tuple],
             plugins: tuple[list[str], list[tuple[str, str]]], modules: list[str],
             config: EngineConfig) -> list[Engine]:
    """In a worker: the engines, each (model index, site, mode), their models rebuilt."""
    from ..models.registry import build_model, load_arch_module, plugin_paths

    archs, alignments = plugins
    for path in archs:
        if path not in plugin_paths():
            load_arch_module(path)
    for path, sha in alignments:  # the very code the parent ran (a file loaded before with
        load_alignment_module(path, sha256=sha)  # the same content is not run again)
    for name in modules:
        if name not in sys.modules:
            importlib.import_module(name)
    built = []
    for arch, cfg, vocabulary, state in models:
        model = build_model(arch, cfg, vocabulary)
        model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
        built.append(model.eval())
    one = dataclasses.replace(config, workers=1)
    return [Engine(built[m], site, mode, one) for m, site, mode in engines]
