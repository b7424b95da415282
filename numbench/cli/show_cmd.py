"""``numbench show``: example sequences from a task's frozen split."""

from __future__ import annotations

import click
from rich.table import Table
from rich.text import Text

from ..sequences import decode
from ..tasks import SPLIT_NAMES, load_task
from .output import print_json, stdout


def styled(tokens: list[str], scored: list[bool], mark: int | None = None) -> Text:
    """Tokens with the scored targets bold and the position ``mark`` highlighted."""
    text = Text()
    for t, tok in enumerate(tokens):
        style = "bold" if t > 0 and scored[t - 1] else "dim" if tok == "P" else ""
        if t == mark:
            style = "black on yellow"
        text.append(tok, style=style)
        text.append(" ")
    return text


@click.command("show")
@click.argument("task")
@click.option("-n", "count", default=5, show_default=True, type=click.IntRange(min=0),
              help="How many sequences.")
@click.option("--split", type=click.Choice(SPLIT_NAMES), default="iid", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of a table.")
def command(task: str, count: int, split: str, as_json: bool) -> None:
    """Show example sequences of TASK's frozen SPLIT (scored targets in bold).

    Example: numbench show multi_object -n 3 --split void
    """
    t = load_task(task)
    batch = t.split(split)
    rows = batch.rows()[:count]
    if as_json:
        print_json({"task": t.name, "version": t.version, "split": split,
                    "sha256": t.splits[split].sha256,
                    "sequences": [{"N": int(batch.counts[b]), "tokens": decode(t, r),
                                   "scored_targets": [int(x) + 1 for x in
                                                      batch.scored[b].nonzero()[0]]}
                                  for b, r in enumerate(rows)]})
        return
    table = Table(title=f"{t.name} v{t.version} — split {split}")
    table.add_column("N", justify="right")
    table.add_column("sequence")
    for b, r in enumerate(rows):
        table.add_row(str(batch.counts[b]), styled(decode(t, r), batch.scored[b].tolist()))
    stdout.print(table)
