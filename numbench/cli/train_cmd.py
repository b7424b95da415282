"""``numbench train``: next-token training of a registered architecture."""

from __future__ import annotations

import json
import math
from pathlib import Path

import click
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..accuracy import split_accuracies
from ..errors import NumbenchError
from ..models.files import save_model
from ..results import check_writable
from ..tasks import load_task
from ..training import TrainConfig, check_model_size, train
from .options import arch_module_option, device_option, json_option
from .output import PlainProgress, print_json, stderr, stdout


def parse_overrides(pairs: tuple[str, ...]) -> dict:
    """KEY=VALUE pairs; VALUE is read as JSON when it parses (numbers), else a string."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise NumbenchError(f"--config expects KEY=VALUE, got '{pair}'")
        key, value = pair.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


class TrainLog(PlainProgress):
    """train's progress as plain lines off a terminal: the first step, then a line a
    minute, then the last step (``[    61 s] train: step 500/8000 · loss 0.4100 ·
    valid acc 0.970``, the accuracy of the last validation)."""

    def describe(self, stage: str, d: dict) -> str:
        acc = "-" if d["acc"] is None else f"{d['acc']:.3f}"
        return f"step {d['step']}/{d['total']} · loss {d['loss']:.4f} · valid acc {acc}"


class FiniteFloatRange(click.FloatRange):
    """click's FloatRange that also refuses nan and ±inf (its comparisons let nan through)."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value} is not a finite number.", param, ctx)
        return number


@click.command("train")
@click.option("--arch", required=True, help="A registered architecture (gru, lstm, transformer, …).")
@click.option("--task", "task_name", required=True, help="Task to train on.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Model file to write (.pt or .safetensors).")
@click.option("--config", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Architecture config override, e.g. --config d_hidden=64 (repeatable).")
@click.option("--max-steps", default=TrainConfig.max_steps, show_default=True,
              type=click.IntRange(min=1))
@click.option("--batch-size", default=TrainConfig.batch_size, show_default=True,
              type=click.IntRange(min=1))
@click.option("--lr", default=TrainConfig.lr, show_default=True,
              type=FiniteFloatRange(min=0, min_open=True))
@click.option("--target-accuracy", default=TrainConfig.target_accuracy, show_default=True,
              type=FiniteFloatRange(0, 1), help="Stop when validation accuracy reaches this.")
@click.option("--void-p", type=FiniteFloatRange(0, 1), default=None,
              help="Void probability of training data (default: the task's reference for "
                   "the architecture family).")
@click.option("--save-every", default=0, show_default=True, type=click.IntRange(min=0),
              help="Also save a checkpoint every N steps to OUT's stem + '.checkpoints/'.")
@device_option
@arch_module_option
@json_option
def command(arch, task_name, seed, out, overrides, max_steps, batch_size, lr, target_accuracy,
            void_p, save_every, device, as_json) -> None:
    """Train ARCH on TASK from SEED and write a model file (deterministic on one device).
    Progress goes to stderr: a live bar on a terminal, else a timestamped line a minute.

    Example: numbench train --arch gru --task multi_object --seed 0 --out runs/gru.pt
    """
    from ..device import resolve_device

    out = Path(out)
    where = resolve_device(device)
    if out.suffix not in (".pt", ".safetensors"):
        raise NumbenchError("model files end in .pt or .safetensors", path=out)
    task = load_task(task_name)
    config = parse_overrides(overrides)
    check_model_size(arch, config, task.vocabulary)  # before any progress bar is drawn
    check_writable(out)  # before training, not after
    tc = TrainConfig(max_steps=max_steps, batch_size=batch_size, lr=lr, void_p=void_p,
                     target_accuracy=target_accuracy, save_every=save_every)
    ckpt_dir = out.with_suffix("").with_name(out.stem + ".checkpoints")

    def save_checkpoint(step, model):
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        save_model(model, ckpt_dir / f"step_{step:06d}{out.suffix}", task=task, seed=seed,
                   training={"step": step, "checkpoint_of": out.name})

    columns = (TextColumn("[bold]train[/] {task.description}"), BarColumn(),
               TextColumn("{task.completed}/{task.total}"), TextColumn("loss {task.fields[loss]}"),
               TextColumn("valid acc {task.fields[acc]}"), TimeElapsedColumn())
    progress = Progress(*columns, console=stderr, transient=False)
    bar = progress.add_task(f"{arch} on {task.name} seed {seed}", total=max_steps,
                            loss="-", acc="-")
    log = None if stderr.is_terminal else TrainLog()  # not a terminal: lines, not a bar
    last_acc = None

    def on_progress(step, loss, acc):
        nonlocal last_acc
        if log:
            last_acc = acc if acc is not None else last_acc
            log("train", {"step": step, "total": max_steps, "loss": loss, "acc": last_acc})
            return
        if not progress.live.is_started:  # drawn from the first step: an error before it
            progress.start()              # (a config torch refuses) stays one line
        fields = {"loss": f"{loss:.4f}"}
        if acc is not None:
            fields["acc"] = f"{acc:.3f}"
        progress.update(bar, completed=step, **fields)

    try:
        result = train(arch, task, seed, config=config, train_config=tc, device=where,
                       on_progress=on_progress, on_checkpoint=save_checkpoint if save_every else None)
    finally:
        if progress.live.is_started:  # stopping it unstarted prints an empty line
            progress.stop()
    if log:
        log.done()
    summary = dict(result.summary, accuracy=split_accuracies(result.model, task),
                   parameters=result.model.parameter_count())
    out.parent.mkdir(parents=True, exist_ok=True)
    save_model(result.model, out, task=task, seed=seed, training=summary)
    doc = {"model": str(out), "arch": arch, "task": task.name, "seed": seed,
           "config": result.model.config_dict(), **summary}
    if as_json:
        print_json(doc)
        return
    table = Table(title=f"trained {arch} on {task.name} (seed {seed}) → {out}")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("parameters", f"{summary['parameters']:,}")
    table.add_row("steps", f"{summary['steps']} ({summary['stop_reason']})")
    table.add_row("wall time", f"{summary['wall_seconds']:.1f} s")
    for split, acc in summary["accuracy"].items():
        table.add_row(f"{split} accuracy", f"{acc:.3f}")
    stdout.print(table)
