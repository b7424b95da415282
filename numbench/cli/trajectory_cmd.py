"""``numbench trajectory``: task accuracy and IIA over the checkpoints of a training run."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from ..trajectory import fmt, plot_trajectory, summarize, trajectory_plan, trajectory_rows
from . import EXIT_FAILED
from .options import arch_module_option, device_option
from .output import print_json, stdout
from .train_cmd import parse_overrides
from .sweep_cmd import execute, make_backend, with_backend_options


@click.command("trajectory")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--full", is_flag=True,
              help="The full protocol budget per checkpoint (default: the --quick smoke budget).")
@click.option("--seed", default=0, show_default=True)
@click.option("--engine", "engine", multiple=True, metavar="KEY=VALUE",
              help="Override a DAS engine setting, e.g. max_steps=1000 (repeatable; unranked).")
@click.option("--results", type=click.Path(file_okay=False),
              help="Where the checkpoints' result files go (default: RUN_DIR/results).")
@click.option("--plot/--no-plot", default=True, show_default=True,
              help="Write RUN_DIR/trajectory.png (needs numbench[plot]).")
@with_backend_options
@device_option
@arch_module_option
@click.option("--json", "as_json", is_flag=True, help="Print rows and correlation as JSON.")
def command(run_dir, full, seed, engine, results, plot, workers, scheduler, slurm_folder, partition,
            time_min, mem_gb, device, as_json) -> None:
    """Evaluate every checkpoint in RUN_DIR (from `numbench train --save-every N`) and
    report task accuracy and IIA against training step, with their correlation.

    Example: numbench trajectory baselines/runs/gru_multi_object_d32_s0.checkpoints
    """
    p = trajectory_plan(run_dir, results=results, seed=seed, quick=not full,
                        engine=parse_overrides(engine) or None)
    backend = make_backend(workers, scheduler, slurm_folder, partition, time_min, mem_gb)
    outcomes = execute(p, backend, f"trajectory {p.name} ({backend.name})", device)
    doc = summarize(trajectory_rows(p))
    png = plot_trajectory(doc["rows"], Path(run_dir) / "trajectory.png") if plot and doc["rows"] else None
    failed = [o for o in outcomes if not o["ok"]]
    if as_json:
        print_json(doc | {"plot": str(png) if png else None,
                          "failed": [{k: o[k] for k in ("output", "error")} for o in failed]})
    else:
        table = Table(title=f"alignment over training: {run_dir}"
                            + ("" if full else " (quick budget, unranked)"))
        programs = sorted(k for k in (doc["rows"][0] if doc["rows"] else {}) if k.endswith("_score")
                          and k != "symbol_score")
        for col in ["step", "iid", "holdout", "symbol score", "best program"] + programs:
            table.add_column(col.replace("_score", ""), justify="right")
        for r in doc["rows"]:
            table.add_row(str(r["step"]), fmt(r["iid"]), fmt(r["holdout"]), fmt(r["symbol_score"]),
                          r["best_program"] or "–", *[fmt(r[k]) for k in programs])
        c = doc["accuracy_vs_symbol_score"]
        table.caption = (f"iid accuracy vs symbol score over {c['n']} checkpoints: Pearson r "
                         f"{fmt(c['pearson_r'])} (p {fmt(c['pearson_p'])}), Spearman ρ "
                         f"{fmt(c['spearman_rho'])}" + (f"; plot {png}" if png else ""))
        stdout.print(table)
    if failed:
        raise SystemExit(EXIT_FAILED)
