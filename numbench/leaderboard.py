"""The leaderboard: result files → ranked tables (PROTOCOL §7), as Markdown or a static page.

Ranking rule: symbol score, highest first; ties broken by holdout accuracy, then by model
name (so the order never depends on the file system). Only ranked (non-``--quick``) results
of the current protocol version are ranked; others are listed apart. The output has no
timestamps: the same result files give a byte-identical ``leaderboard.md``. Scores are what
each result's cells give (:attr:`Submission.summary`), and every text from a result file is
escaped, so a name can neither inject HTML nor break a table. A last section, *Methods*,
ranks the alignment methods across the ranked results (:mod:`numbench.methods`).
"""

from __future__ import annotations

import html
import re
from statistics import mean

import pandas as pd

from . import methods as method_board
from .protocol import PROTOCOL_VERSION, RANKED_ALIGNMENTS
from .submissions import Submission

IID_FLOOR = 0.9  # below this iid task accuracy a model is listed but marked (PROTOCOL §7)
LOW_MARK, VERIFIED_MARK = "†", "✓"

RULE = (
    "**Ranking rule (PROTOCOL §7).** Rows are sorted by *symbol score* — the best program's "
    "alignment score, i.e. the mean test IIA of its variables under orthogonal and linear "
    "alignment at the ranked k, each at the site that is best on `valid` — highest first; "
    "ties are broken by holdout task accuracy. "
    f"{LOW_MARK} marks a model whose iid task accuracy is below {IID_FLOOR}: it is listed, but "
    f"its IIA says little. {VERIFIED_MARK} marks a result reproduced by `numbench verify`."
)
COLUMNS_NOTE = (
    "*variables* gives each variable of the best program as orthogonal / linear test IIA; "
    "*selectivity* is the mean over those cells of IIA less the larger of two floors — the "
    "permuted-variable control and the no-interchange baseline (the plain model on the "
    "counterfactual inputs) — *random-init* "
    "the mean IIA of the same alignments on a freshly initialised model, *no-interchange* the "
    "mean of what the plain model scores on those variables' counterfactual inputs "
    "(– for a protocol-1 result, which has none) (PROTOCOL §6)."
)
METHODS_NOTE = (
    " *other methods* (shown when a result holds any, from `evaluate --alignments`) gives "
    "each method scored beside the ranked pair as its mean test IIA over the best program's "
    "variables, each at its own best site; it never changes a rank."
)


_MARKDOWN_ESCAPES = str.maketrans({"\\": "\\\\", "|": "\\|", "`": "\\`", "&": "&amp;",
                                   "<": "&lt;", ">": "&gt;"})


def _fmt(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def markdown_text(text: object) -> str:
    """Text as one line of literal Markdown: no raw HTML, code span or table-column break."""
    return " ".join(str(text).splitlines()).translate(_MARKDOWN_ESCAPES)


_CODE = re.compile(r"`([^`]+)`")
_STRONG = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_EMPHASIS = re.compile(r"\*(?=\S)(.+?)(?<=\S)\*")


def markdown_html(text: str) -> str:
    """The board's own notes and headings, written in a little Markdown (`code`, **strong**,
    *emphasis*), as HTML. Escaped first, so only the tags made here are markup; an asterisk
    inside a code span stays an asterisk."""
    out = _CODE.sub(lambda m: f"<code>{m[1].replace('*', '&#42;')}</code>", html.escape(text))
    return _EMPHASIS.sub(r"<em>\1</em>", _STRONG.sub(r"<strong>\1</strong>", out))


def summary_row(sub: Submission) -> dict:
    """One leaderboard row of a result: the numbers §7 asks for, unformatted."""
    doc = sub.doc
    s, acc = sub.summary, doc["task_accuracy"]
    best = s.get("best_program")
    entries = []
    per_var, methods = {}, {}
    if best:
        for var, per in s["programs"][best]["variables"].items():
            per_var[var] = {a: per[a]["test_iia"] for a in RANKED_ALIGNMENTS if a in per}
            entries += [per[a] for a in RANKED_ALIGNMENTS if a in per]
        for method, programs in (s.get("methods") or {}).items():
            iias = [e["test_iia"] for e in programs.get(best, {}).values()]
            methods[method] = mean(iias) if iias else None
    avg = lambda key: (mean(e[key] for e in entries)
                       if entries and all(e.get(key) is not None for e in entries) else None)
    return {
        "model": sub.name, "task": doc["task"]["name"], "arch": doc["model"]["arch"],
        "parameters": doc["model"]["parameters"], "iid": acc.get("iid"),
        "holdout": acc.get("holdout"), "symbol_score": s.get("symbol_score"),
        "best_program": best, "variables": per_var, "selectivity": avg("selectivity"),
        "random_init": avg("random_init_iia"), "no_interchange": avg("no_interchange_iia"),
        "methods": methods, "verified": sub.verified,
        "protocol": doc["versions"]["protocol"], "ranked": sub.ranked,
        "low_accuracy": acc.get("iid") is None or acc["iid"] < IID_FLOOR,
    }


def rank(rows: list[dict]) -> list[dict]:
    key = lambda r: (-(r["symbol_score"] or 0.0), -(r["holdout"] or 0.0), r["model"], r["task"])
    return sorted(rows, key=key)


def display_frame(rows: list[dict], *, with_task: bool, numbered: bool = True) -> pd.DataFrame:
    """Formatted strings, one column per leaderboard column (*other methods* only where a
    row has any)."""
    out = []
    with_methods = any(r["methods"] for r in rows)
    for i, r in enumerate(rows, 1):
        variables = " · ".join(f"{v} {'/'.join(_fmt(x, 2) for x in al.values())}"
                               for v, al in r["variables"].items())
        row = {"#": str(i)} if numbered else {}
        row["model"] = r["model"] + (f" {LOW_MARK}" if r["low_accuracy"] else "")
        if with_task:
            row["task"] = r["task"]
        row |= {"arch": r["arch"], "params": f"{r['parameters']:,}", "iid": _fmt(r["iid"]),
                "holdout": _fmt(r["holdout"]), "symbol score": _fmt(r["symbol_score"]),
                "best program": r["best_program"] or "–", "variables (orth / linear)": variables,
                "selectivity": _fmt(r["selectivity"]), "random-init": _fmt(r["random_init"]),
                "no-interchange": _fmt(r["no_interchange"])}
        if with_methods:
            row["other methods"] = " · ".join(f"{m} {_fmt(x, 2)}" for m, x in r["methods"].items())
        row |= {"verified": VERIFIED_MARK if r["verified"] else "",
                "protocol": r["protocol"]}
        out.append(row)
    return pd.DataFrame(out)


def sections(subs: list[Submission]) -> list[tuple[str, str, pd.DataFrame]]:
    """(heading, note, table) in page order: overall, per task, unranked, other protocols,
    then the method board (:mod:`numbench.methods`)."""
    rows = [summary_row(s) for s in subs]
    ranked = rank([r for r in rows if r["protocol"] == PROTOCOL_VERSION and r["ranked"]])
    out = [("Overall", "Every ranked (model, task) result in one ranking.",
            display_frame(ranked, with_task=True))]
    for task in sorted({r["task"] for r in ranked}):
        out.append((f"Task `{task}`", "", display_frame([r for r in ranked if r["task"] == task],
                                                       with_task=False)))
    quick = rank([r for r in rows if r["protocol"] == PROTOCOL_VERSION and not r["ranked"]])
    if quick:
        out.append(("Unranked runs (`--quick`)", "Small-budget smoke runs; never ranked.",
                    display_frame(quick, with_task=True, numbered=False)))
    other = rank([r for r in rows if r["protocol"] != PROTOCOL_VERSION])
    if other:
        out.append(("Other protocol versions",
                    f"Listed apart and never ranked with protocol {PROTOCOL_VERSION}.",
                    display_frame(other, with_task=True, numbered=False)))
    out.append(("Methods", method_board.RULE,
                pd.DataFrame(method_board.display_rows(method_board.board_rows(subs)))))
    return out


def columns_note(subs: list[Submission]) -> str:
    """What the columns mean; the *other methods* sentence only where a result has some."""
    return COLUMNS_NOTE + (METHODS_NOTE if any(s.summary.get("methods") for s in subs) else "")


def render_markdown(subs: list[Submission], problems: list[tuple[str, str]]) -> str:
    lines = ["# numbench leaderboard", "",
             f"Built by `numbench leaderboard` from {len(subs)} result file(s) under "
             f"`submissions/`, protocol version {PROTOCOL_VERSION}. Do not edit by hand.", "",
             RULE, "", columns_note(subs), ""]
    for heading, note, frame in sections(subs):
        lines += [f"## {heading}", ""] + ([note, ""] if note else [])
        escaped = frame.apply(lambda column: column.map(markdown_text))  # pandas 2.0: no .map
        lines += [escaped.to_markdown(index=False, disable_numparse=True) if len(frame)
                  else "*(none)*", ""]
    if problems:
        lines += ["## Skipped files", "", "Invalid or tampered result files, not listed above:", ""]
        lines += [f"- {markdown_text(msg)}" for _, msg in problems] + [""]
    return "\n".join(lines)


_SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('thead th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var body = table.tBodies[0], rows = Array.from(body.rows);
      var asc = th.dataset.dir !== 'asc';
      table.querySelectorAll('thead th').forEach(function (h) { delete h.dataset.dir; });
      th.dataset.dir = asc ? 'asc' : 'desc';
      var key = function (r) {
        var t = r.cells[col].textContent.trim().replace(/,/g, '');
        var x = parseFloat(t);
        return isNaN(x) ? t.toLowerCase() : x;
      };
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (typeof x !== typeof y) { x = String(x); y = String(y); }
        return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""
_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 90em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { padding: 0.3em 0.6em; border-bottom: 1px solid #ddd; text-align: right; }
th { cursor: pointer; background: #f3f3f3; user-select: none; }
th[data-dir=asc]::after { content: ' ▲'; } th[data-dir=desc]::after { content: ' ▼'; }
td:nth-child(2), th:nth-child(2) { text-align: left; }
img { max-width: 100%; margin: 0.5em 0; }
"""


def render_html(subs: list[Submission], problems: list[tuple[str, str]],
                plots: dict[str, list[bytes]] | None = None) -> str:
    """A static, self-contained page: sortable tables and inlined PNG plots (base64)."""
    import base64

    esc, md_inline = html.escape, markdown_html
    parts = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
             "<title>numbench leaderboard</title>", f"<style>{_CSS}</style></head><body>",
             "<h1>numbench leaderboard</h1>",
             f"<p>{md_inline(RULE)}</p>", f"<p>{md_inline(columns_note(subs))}</p>",
             "<p>Click a column header to sort.</p>"]
    for heading, note, frame in sections(subs):
        parts.append(f"<h2>{md_inline(heading)}</h2>")
        if note:
            parts.append(f"<p>{md_inline(note)}</p>")
        parts.append(frame.to_html(index=False, classes="sortable", border=0, escape=True)
                     if len(frame) else "<p>(none)</p>")
    for title, images in (plots or {}).items():
        parts.append(f"<h2>{esc(title)}</h2>")
        parts += [f"<img alt='{esc(title)}' src='data:image/png;base64,"
                  f"{base64.b64encode(png).decode()}'>" for png in images]
    if problems:
        parts.append("<h2>Skipped files</h2><ul>")
        parts += [f"<li>{esc(msg)}</li>" for _, msg in problems]
        parts.append("</ul>")
    parts += [f"<script>{_SORT_JS}</script>", "</body></html>", ""]
    return "\n".join(parts)
