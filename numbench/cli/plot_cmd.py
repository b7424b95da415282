"""``numbench plot``: PNG pictures of result files."""

from __future__ import annotations

from pathlib import Path

import click

from ..plots import KINDS, plot_result
from ..results import load_result
from .output import print_json, stdout


@click.command("plot")
@click.argument("results", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Folder for the PNGs (default: a plots/ folder beside each result).")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(KINDS),
              help="Which plots (repeatable; default all): k = IIA vs subspace size, "
                   "sites = IIA per site heatmap, gradience = IIA by source value and base count.")
@click.option("--json", "as_json", is_flag=True, help="Print the written paths as JSON.")
def command(results, out_dir, kinds, as_json) -> None:
    """Plot RESULT files: IIA vs k per alignment, IIA per site, and gradience.

    Needs matplotlib: pip install 'numbench[plot]'.

    Example: numbench plot submissions/gru_multi_object_s0/result.json
    """
    written = []
    for path in results:
        doc = load_result(path)
        folder = Path(out_dir) if out_dir else Path(path).parent / "plots"
        written += plot_result(doc, folder, kinds or KINDS)
    if as_json:
        print_json({"plots": [str(p) for p in written]})
        return
    for p in written:
        stdout.print(str(p), highlight=False)
