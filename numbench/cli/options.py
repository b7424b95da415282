"""Options shared by the verbs that load models."""

from __future__ import annotations

import click

from ..models.registry import load_arch_module


def _loading(load):
    """A click callback that runs ``load(path)`` on each path given, as the option is read."""
    def callback(_ctx, _param, paths):
        for path in paths:
            load(path)
        return paths
    return callback


def _load_alignment_module(path):
    from ..alignments import load_alignment_module

    load_alignment_module(path)


arch_module_option = click.option(
    "--arch-module", "arch_modules", multiple=True, type=click.Path(dir_okay=False),
    callback=_loading(load_arch_module), expose_value=False, is_eager=True,
    help="A Python file defining a plugin architecture (repeatable). Your own code: a model "
         "file never loads code.")

alignment_module_option = click.option(
    "--alignment-module", "alignment_modules", multiple=True, type=click.Path(dir_okay=False),
    callback=_loading(_load_alignment_module), expose_value=False, is_eager=True,
    help="A Python file defining alignment methods with @register_alignment (repeatable). "
         "Your own code: a result file never loads code; its sha256 is recorded.")

device_option = click.option(
    "--device", default="auto", show_default=True, metavar="auto|cpu|cuda[:N]",
    help="Where to compute: a CUDA GPU when there is one (auto), the CPU, or a given GPU.")

json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print one JSON document on stdout instead of a table.")
