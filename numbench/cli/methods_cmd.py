"""``numbench methods``: alignment methods ranked across the results, with their controls."""

from __future__ import annotations

import click
from rich.markup import escape
from rich.table import Table

from ..errors import NumbenchError
from ..protocol import PROTOCOL_VERSION
from .output import stderr, stdout


@click.command("methods")
@click.option("--submissions", "root", default="submissions", show_default=True,
              type=click.Path(file_okay=False), help="Folder searched for result.json files.")
@click.option("--task", help="Only results of this task.")
@click.option("--arch", help="Only results of this architecture.")
@click.option("--quick", is_flag=True,
              help="Score the unranked --quick runs instead of the ranked ones (never both: "
                   "a model would count twice, at two budgets).")
@click.option("--shared", is_flag=True,
              help="Only the results that hold every method the others hold, so every row "
                   "covers the same models.")
@click.option("--format", "fmt", default="table", show_default=True,
              type=click.Choice(["table", "md", "csv", "json"]), help="Output format.")
def command(root, task, arch, quick, shared, fmt) -> None:
    """Rank alignment methods across every result under submissions/: test IIA,
    selectivity, controls and control gap.

    One row per method (orthogonal, linear, sd_linear where present, and every method
    from `evaluate --alignments`) over the results the leaderboard admits, of the current
    protocol, ranked runs only unless --quick. Each number is a mean over the method's
    (result, program, variable) entries, at its ranked-k cell on the site best on valid:
    test IIA, selectivity, the permuted and random-init controls, the random subspace at
    the same site and k, and the control gap (IIA less the larger of random-init and
    permuted). Ranked by mean control gap, ties by mean selectivity, then mean test IIA.

    Each method's means cover the results that hold it; --shared keeps only the results
    that hold every method, so the rows compare like with like.

    Example: numbench methods --task multi_object --shared --format md
    """
    import pandas as pd

    from ..leaderboard import markdown_text
    from ..methods import FIELDS, display_rows, holding_every_method, method_rows, select
    from ..submissions import collect

    subs, problems = collect(root)
    for _, msg in problems:
        stderr.print(f"[yellow]skipped[/] {escape(msg)}", highlight=False)
    if not subs:
        raise NumbenchError("no result files", path=root)
    chosen = select(subs, task=task, arch=arch, quick=quick)
    if not chosen:
        runs = "--quick" if quick else "ranked"
        raise NumbenchError(f"no {runs} result of protocol {PROTOCOL_VERSION} matches the filters")
    if shared:
        chosen = holding_every_method(chosen)
        if not chosen:
            raise NumbenchError("--shared: no result holds every method the others hold "
                                "(narrow them with --task or --arch)")
    rows = method_rows(chosen)
    if not rows:
        raise NumbenchError("no method has a ranked-k cell in the results that match")
    if fmt == "md":
        shown = pd.DataFrame(display_rows(rows))
        shown = shown.apply(lambda column: column.map(markdown_text))
        click.echo(shown.to_markdown(index=False, disable_numparse=True))
    elif fmt == "csv":
        click.echo(pd.DataFrame(rows, columns=list(FIELDS))
                   .to_csv(index=False, float_format="%.4f"), nl=False)
    elif fmt == "json":
        click.echo(pd.DataFrame(rows, columns=list(FIELDS)).round(4)
                   .to_json(orient="records", indent=1))
    else:
        runs = "--quick runs" if quick else "ranked results"
        table = Table(title=f"alignment methods over {len(chosen)} {runs} "
                            "(means; ranked by control gap)")
        shown = display_rows(rows)
        for col in shown[0]:
            table.add_column(col.replace(" ", "\n"), justify="left" if col == "method" else "right")
        for row in shown:
            table.add_row(*(escape(v) for v in row.values()))
        stdout.print(table)
