"""``numbench sweep``: train and evaluate a grid of models, locally or on a cluster."""

from __future__ import annotations

import click
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..backends import DaskBackend, LocalBackend, SlurmBackend
from ..models.registry import plugin_paths
from ..sweep import plan, read_sweep, run_plan
from . import EXIT_FAILED
from .options import arch_module_option, device_option
from .output import print_json, stderr, stdout

backend_options = [
    click.option("--workers", type=int, help="Local worker processes (default: one per core)."),
    click.option("--scheduler", metavar="tcp://HOST:PORT",
                 help="Run on an existing Dask distributed cluster (numbench[dask])."),
    click.option("--slurm", "slurm_folder", metavar="FOLDER",
                 help="Submit to Slurm with submitit (numbench[slurm]); logs go to FOLDER."),
    click.option("--partition", help="Slurm partition."),
    click.option("--time-min", default=60, show_default=True, help="Slurm time limit per job."),
    click.option("--mem-gb", default=4, show_default=True, help="Slurm memory per job."),
]


def with_backend_options(f):
    for option in reversed(backend_options):
        f = option(f)
    return f


def make_backend(workers, scheduler, slurm_folder, partition, time_min, mem_gb):
    if scheduler:
        return DaskBackend(scheduler)
    if slurm_folder:
        return SlurmBackend(slurm_folder, partition=partition, time_min=time_min, mem_gb=mem_gb)
    return LocalBackend(workers)


def execute(p, backend, label: str, device: str = "auto") -> list[dict]:
    """Run a plan with a progress bar over jobs; failures are printed as they come. Every
    job loads the ``--arch-module`` files this process loaded (not part of its key)."""
    total = len(p.train) + len(p.evaluate)
    columns = (TextColumn(f"[bold]{escape(label)}[/]"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=stderr, transient=True) as bar:
        row = bar.add_task(label, total=total)

        def on_outcome(o):
            bar.advance(row)
            if not o["ok"]:
                stderr.print(f"[red]failed[/] {escape(o['output'])}: {escape(o['error'])}",
                             highlight=False)

        outcomes = run_plan(p, backend, on_outcome, arch_modules=plugin_paths(), device=device)
    if hasattr(backend, "close"):
        backend.close()
    return outcomes


def outcome_table(outcomes: list[dict], title: str) -> Table:
    table = Table(title=title)
    for col in ("job", "status", "seconds", "output"):
        table.add_column(col, justify="right" if col == "seconds" else "left")
    for o in outcomes:
        status = ("[green]done[/]" if not o.get("skipped") else "skipped (done before)") \
            if o["ok"] else f"[red]failed[/]: {escape(o.get('error', ''))}"
        table.add_row(escape(o["label"]), status, f"{o['seconds']:.1f}", escape(o["output"]))
    return table


@click.command("sweep")
@click.argument("spec", type=click.Path(dir_okay=False))
@with_backend_options
@click.option("--dry-run", is_flag=True, help="List the jobs and whether they are done; run nothing.")
@device_option
@arch_module_option
@click.option("--json", "as_json", is_flag=True, help="Print the outcomes as JSON.")
def command(spec, workers, scheduler, slurm_folder, partition, time_min, mem_gb, dry_run,
            device, as_json) -> None:
    """Train and evaluate the grid in SPEC (a TOML or JSON sweep file).

    Each job's output is keyed by the hash of its spec: finished jobs are skipped, so a
    re-run does no work and an interrupted sweep redoes only the missing jobs. Failed jobs
    are reported and do not stop the others (exit code 1 if any failed).

    Example: numbench sweep baselines/sweep.toml --workers 2
    """
    p = plan(read_sweep(spec), spec)
    if dry_run:
        from ..jobs import is_done

        jobs = [dict(j.to_json(), label=j.label, done=is_done(j)) for j in p.train + p.evaluate]
        if as_json:
            print_json({"sweep": p.name, "jobs": jobs})
        else:
            for j in jobs:
                stdout.print(f"{'done' if j['done'] else 'todo'}  {j['label']}  → {j['output']}",
                             highlight=False, markup=False)
        return
    backend = make_backend(workers, scheduler, slurm_folder, partition, time_min, mem_gb)
    outcomes = execute(p, backend, f"sweep {p.name} ({backend.name})", device)
    if as_json:
        print_json({"sweep": p.name, "backend": backend.name,
                    "outcomes": [{k: v for k, v in o.items() if k != "traceback"} for o in outcomes]})
    else:
        stdout.print(outcome_table(outcomes, f"sweep {p.name}: {len(outcomes)} jobs"))
    if not all(o["ok"] for o in outcomes):
        raise SystemExit(EXIT_FAILED)
