"""``numbench accuracy``: sequence-level task accuracy on the frozen splits."""

from __future__ import annotations

import click
from rich.table import Table

from ..accuracy import split_accuracies
from ..models.files import check_task, load_model
from ..tasks import load_task
from .options import arch_module_option, device_option, json_option
from .output import print_json, stdout


@click.command("accuracy")
@click.argument("model_file", type=click.Path(dir_okay=False))
@click.option("--task", "task_name", help="Task to score on (default: the model file's task).")
@device_option
@arch_module_option
@json_option
def command(model_file: str, task_name: str | None, device: str, as_json: bool) -> None:
    """Task accuracy of MODEL_FILE on the frozen iid, holdout and void splits.

    A sequence counts only if every scored prediction (each response and E) is right.

    Example: numbench accuracy baselines/gru_multi_object_s0.pt
    """
    from ..device import resolve_device  # torch: only once the command runs

    where = resolve_device(device)
    model, meta = load_model(model_file)
    model = model.to(where)
    task = load_task(task_name or meta.task_name)
    check_task(meta, task, model_file)
    acc = split_accuracies(model, task)
    if as_json:
        print_json({"model": model_file, "task": task.name, "task_version": task.version,
                    "split_sha256": task.split_hashes, "accuracy": acc})
        return
    table = Table(title=f"{model_file} — {task.name} v{task.version}")
    for col in ("split", "accuracy", "sequences"):
        table.add_column(col, justify="right" if col != "split" else "left")
    for name, value in acc.items():
        table.add_row(name, f"{value:.3f}", str(task.splits[name].size))
    stdout.print(table)
