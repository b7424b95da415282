"""``numbench plot``: PNG pictures of result files."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from ..errors import NumbenchError
from ..plots import KINDS, plot_result
from ..results import check_writable, load_result
from .output import print_json, stderr, stdout


def result_name(path: Path) -> str:
    """What a result's files are named after: its folder (submissions/NAME/result.json), or
    the file's own name when it is not called result.json."""
    return path.parent.name if path.name == "result.json" else path.stem


def _say_skipped(skipped: list[tuple[Path, str, str]]) -> None:
    for path, kind, reason in skipped:
        stderr.print(f"{escape(str(path))}: {kind} plot skipped: {escape(reason)}",
                     highlight=False, soft_wrap=True)


@click.command("plot")
@click.argument("results", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Folder for the PNGs (default: a plots/ folder beside each result).")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(KINDS),
              help="Which plots (repeatable; default all): k = IIA vs subspace size (a "
                   "--sweep result only), sites = IIA per site heatmap, gradience = IIA by "
                   "source value and base count.")
@click.option("--json", "as_json", is_flag=True, help="Print the written paths as JSON.")
def command(results, out_dir, kinds, as_json) -> None:
    """Plot RESULT files: IIA vs k per alignment, IIA per site, and gradience.

    Files are named NAME-KIND.png after the result's folder (NAME/result.json), so the
    plots of several results can share one --out folder. The k plot needs a result
    evaluated with --sweep; for another it is skipped with a note, and asking for
    --kind k alone then exits 2.

    Needs matplotlib: pip install 'numbench[plot]'.

    Example: numbench plot submissions/gru_multi_object_s0/result.json
    """
    todo, names = [], {}
    for path in map(Path, results):  # every file read and checked before any is drawn
        folder = Path(out_dir) if out_dir else path.parent / "plots"
        name = result_name(path)
        other = names.setdefault((folder.resolve(), name), path)
        if other.resolve() != path.resolve():
            raise NumbenchError(f"{other} and {path} would both write {folder / name}-*.png: "
                                "plot them to different --out folders")
        todo.append((path, load_result(path), folder, name))
    for _, _, folder, name in todo:  # every folder writable before any is drawn
        check_writable(folder / f"{name}-k.png")
    written, skipped = [], []
    for path, doc, folder, name in todo:
        paths, why = plot_result(doc, folder, kinds or KINDS, name=name)
        written += paths
        skipped += [(path, kind, reason) for kind, reason in why.items()]
    if kinds and not written:  # nothing of what was asked for can be drawn: an error
        (path, _, reason), *rest = skipped
        _say_skipped(rest)
        raise NumbenchError(reason, path=path)
    if as_json:
        print_json({"plots": [str(p) for p in written],
                    "skipped": [{"result": str(p), "kind": k, "reason": r}
                                for p, k, r in skipped]})
        return
    _say_skipped(skipped)
    for p in written:
        stdout.print(str(p), highlight=False)
