"""``numbench leaderboard``: rebuild leaderboard.md, or write a static page."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click
from rich.markup import escape

from ..leaderboard import rank, render_html, render_markdown, summary_row
from ..methods import board_rows
from ..results import check_writable, write_text_atomic
from ..submissions import collect
from .output import print_json, stderr, stdout


def _page_plots(subs) -> dict[str, list[bytes]]:
    """Per task: the symbol-score overview and the plots of its top-ranked model (the k plot
    only for a --sweep result)."""
    from ..plots import plot_overview, plot_result

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        stderr.print(escape("no plots on the page: pip install 'numbench[plot]'"),
                     highlight=False)
        return {}
    rows = rank([summary_row(s) for s in subs if s.ranked and s.current_protocol])
    out: dict[str, list[bytes]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for task in sorted({r["task"] for r in rows}):
            top = next(r for r in rows if r["task"] == task)
            sub = next(s for s in subs if s.name == top["model"] and s.doc["task"]["name"] == task)
            images = [plot_overview(rows, task)]
            paths, _ = plot_result(sub.doc, Path(tmp) / task, name=sub.name)
            images += [p.read_bytes() for p in paths]
            out[f"{task}: symbol scores, and plots of the top model ({top['model']})"] = images
    return out


@click.command("leaderboard")
@click.option("--submissions", "root", default="submissions", show_default=True,
              type=click.Path(file_okay=False), help="Folder searched for result.json files.")
@click.option("--out", type=click.Path(dir_okay=False),
              help="Markdown file to write [default: leaderboard.md, unless --html is given].")
@click.option("--html", "html_path", type=click.Path(dir_okay=False),
              help="Write a self-contained HTML page (sortable tables, plots inlined) "
                   "instead of the Markdown; add --out to write both.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the rows as JSON; writes a file only with --out or --html.")
def command(root: str, out: str | None, html_path: str | None, as_json: bool) -> None:
    """Rebuild leaderboard.md from every result file under submissions/.

    Rows are ranked by symbol score, ties by holdout accuracy (PROTOCOL §7). Invalid or
    tampered result files are reported and skipped. The same files give the same bytes.
    With --html only the page is written, and leaderboard.md is left as it is; give --out
    as well to write both.

    Example: numbench leaderboard --html leaderboard.html
    """
    for path in (out, html_path):
        if path:
            check_writable(path)  # before reading every result
    subs, problems = collect(root)
    for _, msg in problems:
        stderr.print(f"[yellow]skipped[/] {escape(msg)}", highlight=False)
    if out is None and html_path is None and not as_json:
        out = "leaderboard.md"
    if out:
        write_text_atomic(out, render_markdown(subs, problems))
    if html_path:
        write_text_atomic(html_path, render_html(subs, problems, _page_plots(subs)))
    if as_json:
        print_json({"rows": rank([summary_row(s) for s in subs]),
                    "methods": board_rows(subs),
                    "skipped": [{"path": str(p), "problem": m} for p, m in problems]})
        return
    written = " and ".join(p for p in (out, html_path) if p)
    stdout.print(f"{written}: {len(subs)} result(s), {len(problems)} skipped", highlight=False)
