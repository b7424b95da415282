"""``numbench check-model``: does a model (file or architecture) meet the model contract?"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from ..errors import NumbenchError
from ..models import build_model, get_architecture
from ..models.checks import run_checks
from ..models.files import check_task, load_model
from ..tasks import load_task
from . import EXIT_FAILED
from .options import arch_module_option, json_option
from .output import print_json, stdout

MODEL_SUFFIXES = (".pt", ".safetensors")
TINY_WIDTH = 16  # every ``d_*`` int of an architecture's Config, when built by name
DEFAULT_TASK = "multi_object"


def tiny_config(cls) -> dict:
    """The architecture's defaults with every width (an int field named ``d_*``) at most
    ``TINY_WIDTH``."""
    return {f.name: min(f.default, TINY_WIDTH) if isinstance(f.default, int) else TINY_WIDTH
            for f in dataclasses.fields(cls.Config)
            if f.name.startswith("d_") and f.type in (int, "int")}


def _model(model_or_arch: str, task_name: str | None):
    if model_or_arch.endswith(MODEL_SUFFIXES):
        model, meta = load_model(model_or_arch)
        task = load_task(task_name or meta.task_name)
        check_task(meta, task, model_or_arch)
        return model, task, f"{model_or_arch} ({meta.arch})"
    if Path(model_or_arch).exists():
        raise NumbenchError(f"not a model file (expected {' or '.join(MODEL_SUFFIXES)}) "
                            f"nor an architecture name", path=model_or_arch)
    cls = get_architecture(model_or_arch)
    config = tiny_config(cls)
    task = load_task(task_name or DEFAULT_TASK)
    try:
        model = build_model(model_or_arch, config, task.vocabulary).eval()
    except NumbenchError:
        raise
    except Exception as e:  # its Config takes no small widths: a trained file will do
        raise NumbenchError(f"cannot build {model_or_arch} with widths {TINY_WIDTH} "
                            f"({type(e).__name__}: {e}); pass a model file of it instead") from None
    shown = ", ".join(f"{k}={v}" for k, v in config.items()) or "its defaults"
    return model, task, f"{model_or_arch} built untrained ({shown})"


@click.command("check-model")
@click.argument("model_or_arch")
@arch_module_option
@click.option("--task", "task_name",
              help=f"Task to check on (default: the model file's task, or {DEFAULT_TASK}).")
@json_option
def command(model_or_arch: str, task_name: str | None, as_json: bool) -> None:
    """Check that MODEL_OR_ARCH meets the model contract, and say how to fix what fails.

    MODEL_OR_ARCH is a model file (.pt or .safetensors) or an architecture name, built
    untrained with its Config's defaults and every width (an int field named d_*) at most
    16. In order: shapes, no-op fidelity, the hook oracle (an edit at position i changes
    nothing before i; for a recurrent model, equals a per-step loop that edits by hand),
    prefix mode, resume (Resumable models) and the fidelity gate on 64 test pairs. A check
    that does not apply reads n/a. Exit 0 when all pass, 1 when any fails.

    Example: numbench check-model --arch-module baselines/architectures/rnn.py rnn
    """
    model, task, what = _model(model_or_arch, task_name)
    checks = run_checks(model, task)
    passed = all(c["result"] != "fail" for c in checks)
    if as_json:
        print_json({"model": model_or_arch, "arch": model.arch, "task": task.name,
                    "passed": passed, "checks": checks})
    else:
        table = Table(title=f"{escape(what)} — the model contract on {task.name}")
        for col in ("check", "result", "detail / how to fix"):
            table.add_column(col)
        style = {"pass": "green", "fail": "red", "n/a": "yellow"}
        for c in checks:
            text = escape(c["detail"])
            if "fix" in c:
                text += f"\n[bold]fix[/]: {escape(c['fix'])}"
            table.add_row(c["check"], f"[{style[c['result']]}]{c['result']}[/]", text)
        stdout.print(table)
    if not passed:
        raise SystemExit(EXIT_FAILED)
