"""Pictures of a result (matplotlib, the optional extra ``numbench[plot]``).

Three kinds per result file: IIA against subspace size k per alignment (only a ``--sweep``
result has more than one k); IIA per site as a heatmap (site × variable·alignment, prefix
mode in rows of its own); gradience — test IIA by the source's variable value and by the
base's count, with the number of test pairs behind each point. Files are named
``NAME-KIND.png`` after the result (its folder under submissions/), so the plots of two
results never overwrite each other in one folder.

Which methods are drawn comes from the result's cells: the ranked pair and every method
evaluated beside it with its controls (``evaluate --alignments``; :func:`methods`), each
in a colour of its own.
"""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

from .errors import NumbenchError
from .protocol import BASELINE_ALIGNMENTS, RANKED_ALIGNMENTS, ranked_k
from .scores import method_entries

KINDS = ("k", "sites", "gradience")
COLORS = {"orthogonal": "tab:blue", "linear": "tab:orange", "sd_linear": "tab:green",
          "full": "tab:gray", "random": "tab:red"}
#: colours of the other methods, in the order :func:`colors` meets them
PALETTE = ("tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "navy", "teal",
           "gold", "black", "lime")
KNOWN = ("orthogonal", "linear", "sd_linear", *BASELINE_ALIGNMENTS)
NO_K_SWEEP = "no k-sweep in this result: evaluate with --sweep"
#: a gradience point resting on fewer test pairs than this is drawn hollow: at IIA 0.5 its
#: standard error is above 0.11
SMALL_GROUP = 20


def _plt():
    try:
        import matplotlib
    except ImportError:
        raise NumbenchError("plots need matplotlib: pip install 'numbench[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _variables(doc: dict) -> list[tuple[str, str]]:
    return [(p, v) for p, prog in doc["summary"]["programs"].items() for v in prog["variables"]]


def methods(doc: dict) -> list[str]:
    """The methods a result evaluated with controls: the ranked pair, then every other
    alignment with control cells (the extra methods), by name."""
    controlled = {c["alignment"] for c in doc["cells"] if c["control"] is not None}
    return [*RANKED_ALIGNMENTS, *sorted(controlled - set(RANKED_ALIGNMENTS))]


def alignments(doc: dict) -> list[str]:
    """Every alignment in the result's single-mode cells: the protocol's kinds in their
    order, then the others by name."""
    present = {c["alignment"] for c in _main_cells(doc)}
    return [a for a in KNOWN if a in present] + sorted(present - set(KNOWN))


def colors(doc: dict) -> dict[str, str]:
    """A colour per alignment of the result: the protocol's kinds' own, then the palette."""
    out = dict(COLORS)
    others = [a for a in alignments(doc) + methods(doc) if a not in out]
    for i, a in enumerate(dict.fromkeys(others)):
        out[a] = PALETTE[i % len(PALETTE)]
    return out


def _main_cells(doc: dict, **want) -> list[dict]:
    return [c for c in doc["cells"] if c["control"] is None and c["mode"] == "single"
            and all(c.get(k) == v for k, v in want.items())]


def _grid(plt, n: int, rows: int = 1, size=(3.2, 2.8)):
    fig, axes = plt.subplots(rows, n, figsize=(size[0] * n, size[1] * rows), squeeze=False)
    return fig, axes


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=90, metadata={"Software": None})
    _plt().close(fig)
    return path


def has_k_sweep(doc: dict) -> bool:
    """Whether some alignment was fitted at more than one k at one site (``--sweep``)."""
    ks: dict[tuple, set] = {}
    for c in _main_cells(doc):
        if c["alignment"] != "full":
            ks.setdefault((c["program"], c["variable"], c["alignment"], c["site"]),
                          set()).add(c["k"])
    return any(len(k) > 1 for k in ks.values())


def plot_k(doc: dict, path: Path) -> Path:
    """Test IIA against k, one panel per variable, one line per alignment (at its best site).
    An alignment fitted at one k only (sd_linear, random, an extra method) is one marker,
    named so."""
    if not has_k_sweep(doc):
        raise NumbenchError(NO_K_SWEEP)
    plt = _plt()
    variables = _variables(doc)
    color = colors(doc)
    fig, axes = _grid(plt, len(variables))
    for ax, (program, var) in zip(axes[0], variables):
        best = method_entries(doc["summary"], program, var)
        site = best.get("orthogonal", {}).get("site")
        ks = set()
        for align in [a for a in alignments(doc) if a != "full"]:
            at = best.get(align, {}).get("site", site)
            pts = sorted((c["k"], c["test_iia"]) for c in _main_cells(
                doc, program=program, variable=var, alignment=align, site=at))
            if pts:
                label = align if len(pts) > 1 else f"{align} (k={pts[0][0]} only)"
                ax.plot(*zip(*pts), marker="o", label=label, color=color[align])
                ks |= {k for k, _ in pts}
        full = _main_cells(doc, program=program, variable=var, alignment="full", site=site)
        if full:
            ax.axhline(full[0]["test_iia"], ls="--", color=COLORS["full"], label="full")
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(ks), [str(k) for k in sorted(ks)])
        ax.minorticks_off()
        ax.set(title=f"{program}: {var}", xlabel="k", ylim=(-0.02, 1.02))
    axes[0][0].set_ylabel("test IIA")
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.suptitle(f"{doc['model']['file']}: test IIA vs subspace size k "
                 f"(each alignment at its best site, single mode)")
    return _save(fig, path)


def site_grid(doc: dict) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]],
                                  list[list[float]]]:
    """Test IIA at the ranked k per (site, mode) row and (program, variable, alignment)
    column, the alignment one of :func:`methods`: every site in single mode, then, in a
    ``--sweep`` result, every site in prefix mode (the interchange at every position up to
    i). NaN where a cell is missing."""
    sites = doc["model"]["sites"]
    modes = ["single"] + (["prefix"] if any(c["mode"] == "prefix" for c in doc["cells"]) else [])
    rows = [(site, mode) for mode in modes for site in sites]
    cols = [(p, v, a) for p, v in _variables(doc) for a in methods(doc)]
    grid = [[float("nan")] * len(cols) for _ in rows]
    for c in doc["cells"]:
        key = (c["program"], c["variable"], c["alignment"])
        # k, not the cell's ranked_k flag: prefix cells are unranked, so it is False there
        if (c["control"] is None and key in cols and (c["site"], c["mode"]) in rows
                and c["k"] == ranked_k(sites[c["site"]])):
            grid[rows.index((c["site"], c["mode"]))][cols.index(key)] = c["test_iia"]
    return rows, cols, grid


def plot_sites(doc: dict, path: Path) -> Path:
    """Heatmap of test IIA at the ranked k: rows sites (and each site in prefix mode, in a
    --sweep result), columns variable·alignment. The title states k (each row's label too,
    where sites differ in width) and the modes."""
    plt = _plt()
    rows, cols, grid = site_grid(doc)
    ks = {site: ranked_k(d) for site, d in doc["model"]["sites"].items()}
    one_k = len(set(ks.values())) == 1
    fig, ax = plt.subplots(figsize=(1.6 + 0.6 * len(cols), 2.4 + 0.5 * len(rows)))
    im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    for i in range(len(rows)):
        for j in range(len(cols)):
            if grid[i][j] == grid[i][j]:
                ax.text(j, i, f"{grid[i][j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if grid[i][j] < 0.6 else "black")
    short = {"orthogonal": "orth", "linear": "lin"}
    ax.set_xticks(range(len(cols)), [f"{p} {v} · {short.get(a, a)}" for p, v, a in cols],
                  fontsize=7, rotation=40, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(len(rows)), [
        (site if mode == "single" else f"{site} · prefix") + ("" if one_k else f" (k={ks[site]})")
        for site, mode in rows])
    ax.set_xlabel("program variable · alignment (orth = orthogonal, lin = linear)", fontsize=8)
    ax.set_ylabel("site" + ("" if len(rows) == len(ks) else " · mode"))
    fig.colorbar(im, ax=ax, label="test IIA")
    k = f"k = {next(iter(ks.values()))}" if one_k else "each site's k"
    modes = "single mode" + (", and prefix mode below" if len(rows) > len(ks) else "")
    ax.set_title(f"{doc['model']['file']}: test IIA per site\nat {k} (ranked: min(16, d/2)), "
                 f"{modes}", fontsize=10)
    return _save(fig, path)


def gradience_counts(doc: dict, program: str, variable: str,
                     test_sha256: str) -> tuple[dict[str, int], dict[str, int]] | None:
    """How many test pairs stand behind each gradience point: ({source value: n}, {base
    count: n}), keyed as the cell's ``by_source_value`` and ``by_base_count``. A result keeps
    only the IIA of each group, so the counts are taken from the frozen test pairs, made
    again, and only when they are the very set the cell records (same sha256); else None."""
    from .pairs import make_pairs
    from .tasks import load_task, task_names

    if doc["task"]["name"] not in task_names():  # a name, never a path to some other file
        return None
    try:
        pairs = make_pairs(load_task(doc["task"]["name"]), program, variable, "test")
    except NumbenchError:
        return None
    if pairs.sha256 != test_sha256:
        return None
    by_value = (Counter(str(v) for v in pairs.source_values[:, 0])  # as evaluate keys them
                if len(pairs.variables) == 1 else {})
    return dict(by_value), dict(Counter(str(n) for n in pairs.base.counts))


def _gradience_lines(ax, series: dict[str, dict[str, float]], n: dict[str, int] | None,
                     color: dict[str, str]) -> None:
    """IIA against an ordered value, one line per alignment; the test pairs per value as
    grey bars on a right-hand axis, and points on fewer than SMALL_GROUP pairs hollow."""
    if n:
        xs = sorted(n, key=int)
        counts = ax.twinx()
        counts.bar([int(x) for x in xs], [n[x] for x in xs], width=0.8, color="0.88", zorder=0)
        counts.set_ylim(0, 3 * max(n.values()))  # bars in the lower third, under the lines
        counts.tick_params(axis="y", labelsize=6, colors="0.45")
        counts.set_ylabel("test pairs", fontsize=7, color="0.45")
        ax.set_zorder(counts.get_zorder() + 1)
        ax.patch.set_visible(False)
    for align, data in series.items():
        xs = sorted(data, key=int)
        ax.plot([int(x) for x in xs], [data[x] for x in xs], color=color[align], label=align,
                lw=1.2)
        small = [x for x in xs if n and n.get(x, 0) < SMALL_GROUP]
        big = [x for x in xs if x not in small]
        ax.plot([int(x) for x in big], [data[x] for x in big], ls="", marker="o", ms=3.5,
                color=color[align])
        ax.plot([int(x) for x in small], [data[x] for x in small], ls="", marker="o", ms=3.5,
                mfc="white", color=color[align])


def _gradience_bars(ax, series: dict[str, dict[str, float]], n: dict[str, int] | None,
                    color: dict[str, str]) -> None:
    """IIA per value of a variable with two values (a phase): grouped bars, one per
    alignment, each value's test pairs under its tick."""
    values = sorted({x for data in series.values() for x in data}, key=int)
    width = 0.8 / max(1, len(series))
    for i, (align, data) in enumerate(series.items()):
        pos = [j + (i - (len(series) - 1) / 2) * width for j in range(len(values))]
        bars = ax.bar(pos, [data.get(x, float("nan")) for x in values], width,
                      color=color[align], label=align)
        ax.bar_label(bars, fmt="%.2f", fontsize=6, padding=1)
    ax.set_xticks(range(len(values)), [x + (f"\n{n[x]} pairs" if n and x in n else "")
                                      for x in values])
    ax.set_xlim(-0.6, len(values) - 0.4)


def _gradience_legend(counted: bool, drawn: list[str], color: dict[str, str]) -> list:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Line2D([], [], color=color[a], marker="o", ms=3.5, label=a) for a in drawn]
    if counted:
        handles += [Line2D([], [], color="0.3", marker="o", ms=3.5, mfc="white", ls="",
                           label=f"under {SMALL_GROUP} pairs"),
                    Patch(color="0.88", label="test pairs")]
    return handles


def plot_gradience(doc: dict, path: Path) -> Path:
    """Test IIA by source value (top) and base count (bottom), per variable, for each ranked
    alignment and each extra method (:func:`methods`) at its best site and k. Grey bars
    count the test pairs behind each point (a variable with two values is drawn as bars,
    its counts under the ticks)."""
    plt = _plt()
    variables = _variables(doc)
    fig, axes = _grid(plt, len(variables), rows=2, size=(3.4, 3.0))
    unknown, legend_x = False, 1.02
    drawn, color = methods(doc), colors(doc)
    for j, (program, var) in enumerate(variables):
        best = method_entries(doc["summary"], program, var)
        series: list[dict] = [{}, {}]
        sha = None
        for align in drawn:
            if align not in best:
                continue
            cells = _main_cells(doc, program=program, variable=var, alignment=align,
                                site=best[align]["site"], k=best[align]["k"])
            for row, key in enumerate(("by_source_value", "by_base_count")):
                if cells and cells[0].get(key):
                    series[row][align] = cells[0][key]
                    sha = cells[0]["pairs"]["test"]
        counts = gradience_counts(doc, program, var, sha) if sha else None
        unknown |= sha is not None and counts is None
        for row in (0, 1):
            n = counts[row] if counts else None
            values = {x for data in series[row].values() for x in data}
            if len(values) > 2:
                _gradience_lines(axes[row][j], series[row], n, color)
                if row == 0 and j == len(variables) - 1 and n:
                    legend_x = 1.25  # clear of the pair counts' axis
            elif values:
                _gradience_bars(axes[row][j], series[row], n, color)
        axes[0][j].set(title=f"{program}: {var}", xlabel="source value", ylim=(-0.02, 1.05))
        axes[1][j].set(xlabel="base count", ylim=(-0.02, 1.02))
    axes[0][0].set_ylabel("test IIA")
    axes[1][0].set_ylabel("test IIA")
    axes[0][-1].legend(handles=_gradience_legend(not unknown, drawn, color), fontsize=7,
                       loc="upper left", bbox_to_anchor=(legend_x, 1))
    fig.suptitle(f"{doc['model']['file']}: gradience (test IIA at the best site, ranked k)"
                 + ("\npairs per point unknown: the test pairs could not be made again"
                    if unknown else ""), fontsize=10)
    return _save(fig, path)


PLOTTERS = {"k": plot_k, "sites": plot_sites, "gradience": plot_gradience}


def why_not(doc: dict, kind: str) -> str | None:
    """Why KIND is not drawn for this result (one line), or None when it is."""
    return NO_K_SWEEP if kind == "k" and not has_k_sweep(doc) else None


def plot_result(doc: dict, out_dir: Path, kinds=KINDS, *,
                name: str) -> tuple[list[Path], dict[str, str]]:
    """Write ``NAME-KIND.png`` under OUT_DIR for each kind that this result can show; NAME
    is the result's (its folder under submissions/). Returns the paths written and, per
    kind left out, why."""
    written, skipped = [], {}
    for kind in kinds:
        if (why := why_not(doc, kind)) is not None:
            skipped[kind] = why
        else:
            written.append(PLOTTERS[kind](doc, Path(out_dir) / f"{name}-{kind}.png"))
    return written, skipped


def plot_overview(rows: list[dict], task: str) -> bytes:
    """PNG bytes: symbol score per model on one task (for the leaderboard page)."""
    plt = _plt()
    rows = [r for r in rows if r["task"] == task and r["symbol_score"] is not None]
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(rows) + 1.2))
    names = [r["model"] for r in rows][::-1]
    ax.barh(names, [r["symbol_score"] for r in rows][::-1], color="tab:blue")
    ax.set(xlim=(0, 1), xlabel="symbol score", title=f"{task}: symbol score")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()
