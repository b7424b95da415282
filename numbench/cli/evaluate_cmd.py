"""``numbench evaluate``: the fixed protocol on one model file; writes its result file."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import click
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..device import resolve_device
from ..evaluate import GateFailed, evaluate
from ..errors import NumbenchError
from ..protocol import engine_config
from ..results import check_writable, write_json_atomic
from ..settings import Settings, extra_alignments
from . import EXIT_FAILED, Terminated
from .options import alignment_module_option, arch_module_option, device_option, json_option
from .output import PlainProgress, print_json, stderr, stdout


def result_table(doc: dict) -> Table:
    s, acc = doc["summary"], doc["task_accuracy"]
    title = (f"{doc['model']['file']} — {doc['task']['name']} · "
             f"iid {acc['iid']:.3f} · holdout {acc['holdout']:.3f} · void {acc['void']:.3f}")
    if not doc["ranked"]:
        title += (" · QUICK RUN (unranked)" if doc["settings"]["quick"]
                  else " · UNRANKED (engine settings differ from the protocol's)")
    table = Table(title=title)
    for col in ("program", "variable", "alignment", "site", "IIA", "permuted", "no-interchange",
                "selectivity", "random-init", "full"):
        table.add_column(col, justify="right" if col not in ("program", "variable", "alignment", "site") else "left")
    fmt = lambda x: "-" if x is None else f"{x:.3f}"
    for program, p in s["programs"].items():
        for var, per in p["variables"].items():
            for align, e in per.items():
                table.add_row(program, var, align, e["site"], fmt(e["test_iia"]),
                              fmt(e["permuted_iia"]), fmt(e.get("no_interchange_iia")),
                              fmt(e["selectivity"]),
                              fmt(e["random_init_iia"]), fmt(e["full_iia"]))
        table.add_row(program, "[bold]alignment score[/]", "", "", f"[bold]{fmt(p['alignment_score'])}[/]",
                      "", "", "", "", "", end_section=True)
    for method, per_program in (s.get("methods") or {}).items():  # beside, never scored
        for program, per in per_program.items():
            for var, e in per.items():
                table.add_row(program, var, f"{method} (extra)", e["site"], fmt(e["test_iia"]),
                              fmt(e["permuted_iia"]), fmt(e.get("no_interchange_iia")),
                              fmt(e["selectivity"]), fmt(e["random_init_iia"]), fmt(e["full_iia"]))
        table.add_section()
    table.caption = (f"symbol score {fmt(s['symbol_score'])} ({s['best_program']}); "
                     f"test IIA at the best site on valid; {doc['wall_seconds']['total']:.0f} s")
    return table


def parse_engine(items: tuple[str, ...]) -> dict:
    """``KEY=VALUE`` items as engine overrides, each VALUE typed by the setting's default."""
    defaults, out = asdict(engine_config()), {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in defaults:
            raise click.BadParameter(f"'{item}': expected KEY=VALUE with KEY one of "
                                     f"{', '.join(defaults)}", param_hint="--engine")
        kind = type(defaults[key])
        try:
            out[key] = kind(value)
        except ValueError:
            raise click.BadParameter(f"'{item}': {key} must be {kind.__name__}",
                                     param_hint="--engine") from None
    return out


class ProgressLog(PlainProgress):
    """evaluate's progress as plain lines off a terminal: a line when a stage starts (the
    gate, the fits, the controls), one a minute within it."""

    def describe(self, stage: str, d: dict) -> str:
        if "fits" not in d:
            return ""
        best = f"{d['best_iia']:.3f}" if "best_iia" in d else "-"
        return (f"step {d.get('step', 0)} · {d.get('active', 0)}/{d['fits']} fits training"
                f" · best valid IIA {best}")


@contextmanager
def evaluation_progress(max_steps: int, notes: Callable[[str, dict], bool] = lambda *_: False):
    """An evaluation's progress on stderr, as a ``progress(stage, details)`` function: rich's
    live bar on a terminal, plain timestamped lines (:class:`ProgressLog`) elsewhere.
    ``notes`` prints a stage of its own (resume, reuse) and returns True when it did."""
    columns = (TextColumn("[bold]{task.description}"), BarColumn(),
               TextColumn("step {task.fields[step]} · {task.fields[active]}/{task.fields[fits]} fits "
                          "training · best valid IIA {task.fields[best]}"), TimeElapsedColumn())
    log = None if stderr.is_terminal else ProgressLog()
    with Progress(*columns, console=stderr, transient=True) as bar:
        row = bar.add_task("loading", total=max_steps, step=0, active=0, fits=0, best="-")

        def progress(stage: str, d: dict) -> None:
            if notes(stage, d):
                return
            bar.update(row, description=stage, completed=d.get("step", 0), step=d.get("step", "-"),
                       active=d.get("active", 0), fits=d.get("fits", 0),
                       best=f"{d['best_iia']:.3f}" if "best_iia" in d else "-")
            if log:
                log(stage, d)

        yield progress


@click.command("evaluate")
@click.argument("model_file", type=click.Path(dir_okay=False))
@click.option("--task", "task_name", help="Task to evaluate on (default: the model file's task).")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Seed of the alignment fits and the random-init control's model.")
@click.option("--quick", is_flag=True, help="Small-budget smoke run, labelled unranked.")
@click.option("--sweep", is_flag=True, help="Also the k-sweep, prefix mode and sd_linear.")
@click.option("--out", type=click.Path(dir_okay=False),
              help="Result file (default: submissions/<model name>[_quick][_sweep][_engine]"
                   "/result.json).")
@click.option("--resume", is_flag=True, help="Reuse the completed fits of an interrupted run.")
@click.option("--reuse", type=click.Path(dir_okay=False), metavar="RESULT",
              help="Copy the fits a finished RESULT of the same model, seed and budget holds "
                   "instead of training them again, e.g. to add --alignments to it (speed "
                   "only: a copied fit is the fit a new one would give; refused where fits "
                   "step in lockstep, as on a GPU or for a transformer).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Processes that train the fits side by side, one core each "
                   "(this one and N-1 workers; speed only; recorded). [default: 2 on a CPU, "
                   "1 on a GPU]")
@device_option
@click.option("--engine", "engine_settings", multiple=True, metavar="KEY=VALUE",
              help="Override an engine setting, e.g. --engine lr=0.001 (repeatable). A result "
                   "whose budget differs from the protocol's is unranked.")
@click.option("--alignments", "extra", multiple=True, metavar="NAME[,NAME...]",
              help="Also train and score these alignment methods beside the ranked pair, "
                   "with the same controls (repeatable, or comma-separated), e.g. pca,probe. "
                   "They never change the symbol score.")
@alignment_module_option
@arch_module_option
@json_option
def command(model_file, task_name, seed, quick, sweep, out, resume, reuse, workers, device,
            engine_settings, extra, as_json) -> None:
    """Evaluate MODEL_FILE under the fixed protocol: task accuracy, fidelity gate, IIA of
    every program variable under orthogonal and linear alignment with controls.

    With --alignments, other methods (built in, from --alignment-module FILE, or from an
    installed package's `numbench.alignments` entry point) get the same fits and
    controls, scored beside the ranked pair.

    Example: numbench evaluate baselines/gru_multi_object_s0.pt --alignments pca,probe
    """
    names = extra_alignments(n.strip() for item in extra for n in item.split(",") if n.strip())
    name = (Path(model_file).stem + ("_quick" if quick else "") + ("_sweep" if sweep else "")
            + ("_engine" if engine_settings else ""))  # never in place of a protocol run
    out = Path(out) if out else Path("submissions") / name / "result.json"
    partial = out.with_name(out.name + ".partial")
    check_writable(out)  # before the fits, not after
    if not resume:
        partial.unlink(missing_ok=True)
    elif not partial.exists():
        stderr.print(f"resume: no {partial}, nothing to reuse: starting from the beginning",
                     highlight=False, soft_wrap=True)
    device = resolve_device(device)
    engine = ({"workers": workers} if workers else {}) | parse_engine(engine_settings)
    settings = Settings.make(seed=seed, quick=quick, sweep=sweep, engine=engine, device=device,
                             alignments=names)

    def notes(stage: str, d: dict) -> bool:
        if stage == "resume":
            stderr.print(f"resume: {d['reused']} completed stage(s) reused from {partial}"
                         if d["reused"] else f"resume: nothing in {partial} matches this "
                         "run (another model, settings or protocol): starting from the "
                         "beginning", highlight=False, soft_wrap=True)
        elif stage == "reuse":
            stderr.print(f"reuse: {d['copied']} of {d['cells']} fits copied from {reuse}",
                         highlight=False, soft_wrap=True)
        return stage in ("resume", "reuse")

    with evaluation_progress(settings.engine.max_steps, notes) as progress:
        try:
            doc = evaluate(model_file, task_name=task_name, settings=settings,
                           progress=progress, partial_path=partial, device=device,
                           reuse=Path(reuse) if reuse else None)
        except GateFailed as e:
            click.echo(f"error: {e}", err=True)  # one line, never wrapped
            raise SystemExit(EXIT_FAILED)
        except (KeyboardInterrupt, Terminated):
            if partial.exists():
                stderr.print(f"completed stages kept in {partial}: the same command with "
                             "--resume reuses them", highlight=False, soft_wrap=True)
            raise
    try:
        write_json_atomic(out, doc)
    except NumbenchError as e:
        if partial.exists():  # every finished stage is there
            raise NumbenchError(f"{e}; the finished fits are kept in {partial}: the same "
                                "command with --resume writes the result") from None
        raise
    partial.unlink(missing_ok=True)
    if as_json:
        print_json(doc)
        return
    stdout.print(result_table(doc))
    stdout.print(f"result written to {out}")
