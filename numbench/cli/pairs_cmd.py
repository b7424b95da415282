"""``numbench pairs``: interchange pairs with their counterfactuals."""

from __future__ import annotations

import click
from rich.table import Table

from ..pairs import MODES, PAIR_SPLITS, make_pairs
from ..programs import PROGRAMS
from ..sequences import decode
from ..tasks import load_task
from .output import print_json, stdout
from .show_cmd import styled


@click.command("pairs")
@click.argument("task")
@click.option("--program", type=click.Choice(list(PROGRAMS)), default="up_down", show_default=True)
@click.option("--variable", default="count", show_default=True,
              help="A variable of the program, or 'full' for all of them.")
@click.option("--split", type=click.Choice(list(PAIR_SPLITS)), default="test", show_default=True)
@click.option("--mode", type=click.Choice(MODES), default="single", show_default=True)
@click.option("--permuted", is_flag=True, help="The permuted-variable control (PROTOCOL §6).")
@click.option("-n", "count", default=5, show_default=True, type=click.IntRange(min=0),
              help="How many pairs.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of a table.")
def command(task, program, variable, split, mode, permuted, count, as_json) -> None:
    """Show interchange pairs: base, source, swap positions and counterfactual.

    The swap point is highlighted; scored targets of the counterfactual are bold.

    Example: numbench pairs multi_object --program up_down --variable count -n 3
    """
    t = load_task(task)
    p = make_pairs(t, program, variable, split, mode=mode, permuted=permuted)
    base, src, cf = p.base.rows(), p.source.rows(), p.counterfactual.rows()
    items = []
    for b in range(min(count, len(p))):
        items.append({
            "base": decode(t, base[b]), "base_N": int(p.base.counts[b]),
            "base_pos": int(p.base_pos[b]),
            "source": decode(t, src[b]), "source_N": int(p.source.counts[b]),
            "source_pos": int(p.source_pos[b]),
            "values": dict(zip(p.variables, map(int, p.source_values[b]))),
            "counterfactual": decode(t, cf[b]),
            "scored_targets": [int(x) + 1 for x in p.counterfactual.scored[b].nonzero()[0]],
        })
    if as_json:
        print_json({"task": t.name, "task_version": t.version, "program": p.program,
                    "variables": list(p.variables), "split": split, "mode": mode,
                    "permuted": permuted, "size": len(p), "sha256": p.sha256, "pairs": items})
        return
    table = Table(title=f"{t.name} · {p.program} · {'+'.join(p.variables)} · {split} · {mode}"
                  + (" · permuted" if permuted else ""), show_lines=True)
    for col in ("role", "pos", "sequence"):
        table.add_column(col)
    for b, it in enumerate(items):
        table.add_row("base", str(it["base_pos"]),
                      styled(it["base"], p.base.scored[b].tolist(), it["base_pos"]))
        table.add_row("source", str(it["source_pos"]),
                      styled(it["source"], p.source.scored[b].tolist(), it["source_pos"]))
        vals = ", ".join(f"{k}={v}" for k, v in it["values"].items())
        table.add_row(f"counterfactual\n{vals}", str(it["base_pos"]),
                      styled(it["counterfactual"], p.counterfactual.scored[b].tolist(),
                             it["base_pos"]))
    stdout.print(table)
    stdout.print(f"{len(p)} pairs, sha256 {p.sha256[:16]}…")
