"""``numbench tasks``: the task definitions with versions, vocabularies and split hashes."""

from __future__ import annotations

import click
from rich.table import Table

from ..tasks import list_tasks
from .output import print_json, stdout


@click.command("tasks")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of a table.")
def command(as_json: bool) -> None:
    """List the tasks with versions, vocabularies and frozen split hashes.

    Every task file is validated and each frozen split regenerated and hash-checked.

    Example: numbench tasks --json
    """
    tasks = list_tasks()
    if as_json:
        print_json({"tasks": [t.to_json() for t in tasks]})
        return
    table = Table(title="numbench tasks")
    for col in ("task", "version", "vocabulary", "f(N)", "held out", "iid", "holdout", "void"):
        table.add_column(col)
    for t in tasks:
        h = t.split_hashes
        table.add_row(t.name, str(t.version), " ".join(t.vocabulary), t.response_rule,
                      ",".join(map(str, t.held_out_counts)),
                      h["iid"][:8], h["holdout"][:8], h["void"][:8])
    stdout.print(table)
