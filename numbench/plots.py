"""Pictures of a result (matplotlib, the optional extra ``numbench[plot]``).

Three kinds per result file: IIA against subspace size k per alignment; IIA per site as a
heatmap (site × variable·alignment, prefix mode in rows of its own); gradience — test IIA
by the source's variable value and by the base's count. Each function writes a PNG and
returns its path.
"""

from __future__ import annotations

import io
from pathlib import Path

from .errors import NumbenchError
from .protocol import RANKED_ALIGNMENTS, ranked_k

KINDS = ("k", "sites", "gradience")
COLORS = {"orthogonal": "tab:blue", "linear": "tab:orange", "sd_linear": "tab:green",
          "full": "tab:gray", "random": "tab:red"}


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


def plot_k(doc: dict, path: Path) -> Path:
    """Test IIA against k, one panel per variable, one line per alignment (at its best site)."""
    plt = _plt()
    variables = _variables(doc)
    fig, axes = _grid(plt, len(variables))
    for ax, (program, var) in zip(axes[0], variables):
        best = doc["summary"]["programs"][program]["variables"][var]
        site = best.get("orthogonal", {}).get("site")
        for align in ("orthogonal", "linear", "sd_linear", "random"):
            at = best.get(align, {}).get("site", site)
            pts = sorted((c["k"], c["test_iia"]) for c in _main_cells(
                doc, program=program, variable=var, alignment=align, site=at))
            if pts:
                ax.plot(*zip(*pts), marker="o", label=align, color=COLORS[align])
        full = _main_cells(doc, program=program, variable=var, alignment="full", site=site)
        if full:
            ax.axhline(full[0]["test_iia"], ls="--", color=COLORS["full"], label="full")
        ax.set_xscale("log", base=2)
        ax.set(title=f"{program}: {var}", xlabel="k", ylim=(-0.02, 1.02))
    axes[0][0].set_ylabel("test IIA")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"{doc['model']['file']}: IIA vs subspace size k")
    return _save(fig, path)


def site_grid(doc: dict) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]],
                                  list[list[float]]]:
    """Test IIA at the ranked k per (site, mode) row and (program, variable, alignment)
    column: every site in single mode, then, in a ``--sweep`` result, every site in prefix
    mode (the interchange at every position up to i). NaN where a cell is missing."""
    sites = doc["model"]["sites"]
    modes = ["single"] + (["prefix"] if any(c["mode"] == "prefix" for c in doc["cells"]) else [])
    rows = [(site, mode) for mode in modes for site in sites]
    cols = [(p, v, a) for p, v in _variables(doc) for a in RANKED_ALIGNMENTS]
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
    --sweep result), columns variable·alignment."""
    plt = _plt()
    rows, cols, grid = site_grid(doc)
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
    ax.set_yticks(range(len(rows)), [site if mode == "single" else f"{site} · prefix"
                                     for site, mode in rows])
    fig.colorbar(im, ax=ax, label="test IIA")
    ax.set_title(f"{doc['model']['file']}: IIA per site (k = ranked)")
    return _save(fig, path)


def plot_gradience(doc: dict, path: Path) -> Path:
    """Test IIA by source value (top) and base count (bottom), per variable and alignment."""
    plt = _plt()
    variables = _variables(doc)
    fig, axes = _grid(plt, len(variables), rows=2)
    for j, (program, var) in enumerate(variables):
        best = doc["summary"]["programs"][program]["variables"][var]
        for align in RANKED_ALIGNMENTS:
            if align not in best:
                continue
            cells = _main_cells(doc, program=program, variable=var, alignment=align,
                                site=best[align]["site"], k=best[align]["k"])
            for row, key in enumerate(("by_source_value", "by_base_count")):
                data = cells[0].get(key) if cells else None
                if data:
                    xs = sorted(data, key=int)
                    axes[row][j].plot([int(x) for x in xs], [data[x] for x in xs], marker=".",
                                      label=align, color=COLORS[align])
        axes[0][j].set(title=f"{program}: {var}", xlabel="source value", ylim=(-0.02, 1.02))
        axes[1][j].set(xlabel="base count", ylim=(-0.02, 1.02))
    axes[0][0].set_ylabel("test IIA")
    axes[1][0].set_ylabel("test IIA")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"{doc['model']['file']}: gradience")
    return _save(fig, path)


PLOTTERS = {"k": plot_k, "sites": plot_sites, "gradience": plot_gradience}


def plot_result(doc: dict, out_dir: Path, kinds=KINDS) -> list[Path]:
    stem = Path(doc["model"]["file"]).stem
    return [PLOTTERS[kind](doc, Path(out_dir) / f"{stem}_{kind}.png") for kind in kinds]


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
