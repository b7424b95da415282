"""``numbench compare``: alignment functions side by side, with controls and selectivity."""

from __future__ import annotations

import click
from rich.markup import escape
from rich.table import Table

from ..compare import ROW, compare_frame
from ..errors import NumbenchError
from ..submissions import Submission, collect
from ..results import load_result
from .output import stderr, stdout


def _load(paths: tuple[str, ...], root: str) -> list[Submission]:
    if not paths:
        subs, problems = collect(root)
        for _, msg in problems:
            stderr.print(f"[yellow]skipped[/] {escape(msg)}", highlight=False)
        return subs
    from pathlib import Path

    return [Submission(Path(p), load_result(p), False) for p in paths]


@click.command("compare")
@click.argument("results", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--submissions", "root", default="submissions", show_default=True,
              type=click.Path(file_okay=False), help="Where to look when no RESULTS are given.")
@click.option("--task", help="Only this task.")
@click.option("--arch", help="Only this architecture.")
@click.option("--k", type=int, help="Subspace size (default: the ranked k; full is always k = d).")
@click.option("--site", help="Only this site (default: each alignment's best site on valid).")
@click.option("--mode", default="single", show_default=True, type=click.Choice(["single", "prefix"]))
@click.option("--format", "fmt", default="table", show_default=True,
              type=click.Choice(["table", "md", "csv", "json"]), help="Output format.")
def command(results, root, task, arch, k, site, mode, fmt) -> None:
    """Compare alignment functions (orthogonal, linear, sd_linear, full, random, and every
    other method a result holds) per model, program and variable: test IIA,
    permuted-variable control, selectivity, random-init.

    RESULTS are result files (default: every result under submissions/). Cells come from
    each alignment's best site on valid, at the ranked k unless --k is given. A method
    evaluated with `evaluate --alignments` gets its own columns and controls.

    Example: numbench compare --task multi_object --format md
    """
    subs = _load(results, root)
    if not subs:
        raise NumbenchError("no result files to compare", path=root)
    frame = compare_frame(subs, task=task, arch=arch, k=k, site=site, mode=mode)
    if frame.empty:
        raise NumbenchError("no cells match the filters")
    if fmt == "md":
        shown = frame.astype(object).where(frame.notna(), None)  # tabulate's "missing" is None
        click.echo(shown.to_markdown(index=False, floatfmt=".3f", missingval="–"))
    elif fmt == "csv":
        click.echo(frame.to_csv(index=False, float_format="%.4f"), nl=False)
    elif fmt == "json":
        click.echo(frame.round(4).to_json(orient="records", indent=1))
    else:
        table = Table(title="test IIA by alignment function (best site on valid)")
        for col in frame.columns:
            table.add_column(col.replace(" ", "\n"), justify="left" if col in ROW else "right")
        for row in frame.itertuples(index=False):
            table.add_row(*[str(v) if c in ROW else ("–" if v != v else f"{v:.3f}")
                            for c, v in zip(frame.columns, row)])
        stdout.print(table)
