"""compare (alignment functions side by side) and plot, on a real tiny result."""

import copy
import io
import json
import sys

import pandas as pd
import pytest
from click.testing import CliRunner

from numbench.cli import main
from numbench.compare import compare_frame
from numbench.submissions import Submission


def test_compare_picks_the_best_valid_cell_and_its_controls(tiny_result, submitted_result):
    frame = compare_frame([Submission(submitted_result, tiny_result, False)])
    assert len(frame) == 5  # up_down: count, phase; up_up: demo_count, resp_count, phase
    cells = tiny_result["cells"]
    for r in frame.to_dict("records"):
        for align in ("orthogonal", "linear"):
            main_cells = [c for c in cells if c["program"] == r["program"] and c["variable"] == r["variable"]
                          and c["alignment"] == align and c["control"] is None and c["ranked_k"]]
            best = max(main_cells, key=lambda c: c["valid_iia"])
            assert r[align] == best["test_iia"]
            perm = next(c for c in cells if c["key"] == best["key"] + "/permuted")
            assert r[f"{align} permuted"] == perm["test_iia"]
            assert r[f"{align} selectivity"] == pytest.approx(best["test_iia"] - perm["test_iia"])
        full = next(c for c in cells if c["program"] == r["program"] and c["variable"] == r["variable"]
                    and c["alignment"] == "full")
        assert r["full"] == full["test_iia"]
        assert pd.isna(r["sd_linear"])  # only in --sweep runs


def test_compare_filters_and_formats(submitted_result):
    runner = CliRunner()
    md = runner.invoke(main, ["compare", str(submitted_result), "--format", "md"])
    assert md.exit_code == 0, md.output
    header = md.output.splitlines()[0]
    for col in ("orthogonal", "linear", "sd_linear", "full", "random", "linear selectivity"):
        assert col in header
    csv = runner.invoke(main, ["compare", str(submitted_result), "--format", "csv"])
    assert len(pd.read_csv(io.StringIO(csv.output))) == 5
    js = runner.invoke(main, ["compare", str(submitted_result), "--format", "json", "--task", "multi_object"])
    assert {r["variable"] for r in json.loads(js.output)} == {"count", "phase", "demo_count", "resp_count"}
    none = runner.invoke(main, ["compare", str(submitted_result), "--arch", "transformer"])
    assert none.exit_code == 2 and "no cells match" in none.output
    table = runner.invoke(main, ["compare", "--submissions", str(submitted_result.parent.parent)])
    assert table.exit_code == 0 and "tiny" in table.output


def test_plot_names_files_after_the_result_and_skips_k_without_a_sweep(submitted_result, tmp_path):
    pytest.importorskip("matplotlib")
    res = CliRunner().invoke(main, ["plot", str(submitted_result), "--out", str(tmp_path / "png")])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == ["tiny-gradience.png", "tiny-sites.png"]
    assert res.stdout.split() == [str(tmp_path / "png" / f"tiny-{k}.png") for k in ("sites", "gradience")]
    assert "k plot skipped: no k-sweep in this result: evaluate with --sweep" in res.stderr
    for p in (tmp_path / "png").iterdir():
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_plot_kind_k_without_a_sweep_exits_2_and_draws_nothing(submitted_result, tmp_path):
    res = CliRunner().invoke(main, ["plot", str(submitted_result), "--kind", "k", "--out", str(tmp_path / "png")])
    assert res.exit_code == 2
    assert res.stderr.strip() == f"error: {submitted_result}: no k-sweep in this result: evaluate with --sweep"
    assert not (tmp_path / "png").exists()


def test_two_results_of_one_model_share_an_out_folder(submitted_result, tmp_path):
    pytest.importorskip("matplotlib")
    quick = submitted_result.parent.parent / "tiny_quick" / "result.json"
    quick.parent.mkdir()
    quick.write_bytes(submitted_result.read_bytes())  # the same model file name inside
    out = tmp_path / "png"
    res = CliRunner().invoke(main, ["plot", str(submitted_result), str(quick), "--kind", "sites", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["tiny-sites.png", "tiny_quick-sites.png"]
    twin = tmp_path / "elsewhere" / "tiny" / "result.json"  # same folder name: would collide
    twin.parent.mkdir(parents=True)
    twin.write_bytes(submitted_result.read_bytes())
    res = CliRunner().invoke(main, ["plot", str(submitted_result), str(twin), "--out", str(tmp_path / "png2")])
    assert res.exit_code == 2 and "would both write" in res.stderr
    assert not (tmp_path / "png2").exists()  # checked before anything is drawn


def test_plot_install_hint_keeps_the_extra_in_brackets(submitted_result, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` fails
    res = CliRunner().invoke(main, ["plot", str(submitted_result), "--kind", "sites"])
    assert res.exit_code == 2 and "pip install 'numbench[plot]'" in res.stderr


@pytest.fixture
def figures(monkeypatch):
    """The figures the plot functions draw, kept open instead of saved."""
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from numbench import plots

    drawn = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.append(fig) or path)
    yield drawn
    for fig in drawn:
        plt.close(fig)


def k_swept(doc):
    """The tiny result as if it had been evaluated with --sweep: its orthogonal and linear
    cells also at k = 1 and 2 (IIA k/10)."""
    d = copy.deepcopy(doc)
    for c in list(d["cells"]):
        if c["control"] is None and c["mode"] == "single" and c["alignment"] in ("orthogonal", "linear"):
            d["cells"] += [dict(c, k=k, ranked_k=False, test_iia=k / 10,
                                key=c["key"].replace(f"/k{c['k']}/", f"/k{k}/")) for k in (1, 2)]
    return d


def test_k_plot_draws_a_line_per_swept_alignment(tiny_result, figures, tmp_path):
    from numbench.plots import has_k_sweep, plot_result

    assert not has_k_sweep(tiny_result)
    swept = k_swept(tiny_result)
    assert has_k_sweep(swept)
    written, skipped = plot_result(swept, tmp_path, ["k"], name="swept")
    assert written == [tmp_path / "swept-k.png"] and not skipped
    ax = figures[0].axes[0]  # up_down: count
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["orthogonal"].get_xdata()) == [1, 2, 4]
    assert list(lines["orthogonal"].get_ydata())[:2] == [0.1, 0.2]
    assert "random (k=4 only)" in lines and "full" in lines
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "4"]


def test_site_heatmap_of_a_one_site_model_states_k_and_mode(tiny_result, figures, tmp_path):
    from numbench.plots import plot_sites

    plot_sites(tiny_result, tmp_path / "s.png")
    ax = figures[0].axes[0]
    assert "k = 4" in ax.get_title() and "single mode" in ax.get_title()  # d = 8: min(16, 4)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["hidden"]
    assert "alignment" in ax.get_xlabel()


def test_gradience_counts_are_the_test_pairs_behind_each_point(tiny_result):
    from numbench.pairs import make_pairs
    from numbench.plots import gradience_counts
    from numbench.tasks import load_task

    cell = next(c for c in tiny_result["cells"] if c["key"].startswith("up_down/count/orthogonal/")
                and c["control"] is None)
    by_value, by_count = gradience_counts(tiny_result, "up_down", "count", cell["pairs"]["test"])
    test = make_pairs(load_task("multi_object"), "up_down", "count", "test")
    assert sum(by_value.values()) == sum(by_count.values()) == len(test) == 1000
    assert by_value.keys() == cell["by_source_value"].keys()
    assert by_count.keys() == cell["by_base_count"].keys()
    assert min(by_value.values()) < 20 < max(by_value.values())  # small groups exist
    assert gradience_counts(tiny_result, "up_down", "count", "0" * 64) is None  # not that set


def test_gradience_counts_make_every_stored_iia_a_whole_number_of_pairs():
    """Oracle on a real result with IIAs other than 0 and 1: IIA x pairs is an integer for
    every group, which wrong counts would rarely give."""
    from pathlib import Path

    from numbench.plots import gradience_counts
    from numbench.results import load_result

    path = Path(__file__).resolve().parents[1] / "submissions/gru_multi_object_s0_quick/result.json"
    if not path.exists():
        pytest.skip("no committed quick result")
    doc = load_result(path)
    checked = 0
    for c in doc["cells"]:
        if c["control"] is None and c["mode"] == "single" and c["alignment"] == "orthogonal":
            counts = gradience_counts(doc, c["program"], c["variable"], c["pairs"]["test"])
            for key, n in zip(("by_source_value", "by_base_count"), counts):
                for x, iia in c.get(key, {}).items():
                    assert iia * n[x] == pytest.approx(round(iia * n[x]), abs=1e-6), (c["key"], x)
                    checked += iia not in (0.0, 1.0)
    assert checked > 50


def test_gradience_draws_counts_and_the_binary_phase_as_bars(tiny_result, figures, tmp_path):
    from numbench.plots import SMALL_GROUP, gradience_counts, plot_gradience

    plot_gradience(tiny_result, tmp_path / "g.png")
    fig = figures[0]
    count_top, phase_top = fig.axes[0], fig.axes[1]  # the 2 x 5 grid comes first, row by row
    assert len(phase_top.containers) == 2 and not phase_top.get_lines()  # orth, linear bars
    assert all("pairs" in t.get_text() for t in phase_top.get_xticklabels())
    twins = [a for a in fig.axes if a.get_ylabel() == "test pairs"]
    assert len(twins) == 8  # every line panel: 3 by source value (not the phases), 5 by base count
    assert all(sum(bar.get_height() for bar in a.patches) == 1000 for a in twins)
    cell = next(c for c in tiny_result["cells"] if c["key"].startswith("up_down/count/orthogonal/"))
    by_value, _ = gradience_counts(tiny_result, "up_down", "count", cell["pairs"]["test"])
    hollow = [line for line in count_top.get_lines() if line.get_markerfacecolor() == "white"
              and line.get_color() == "tab:blue"]
    assert sorted(hollow[0].get_xdata()) == sorted(int(x) for x, n in by_value.items() if n < SMALL_GROUP)
    assert "pairs per point unknown" not in fig._suptitle.get_text()


def test_gradience_says_so_when_the_test_pairs_cannot_be_counted(tiny_result, figures, tmp_path):
    from numbench.plots import plot_gradience

    doc = copy.deepcopy(tiny_result)
    for c in doc["cells"]:
        c["pairs"]["test"] = "0" * 64  # not the set the task makes now
    plot_gradience(doc, tmp_path / "g.png")
    fig = figures[0]
    assert "pairs per point unknown" in fig._suptitle.get_text()
    assert not [a for a in fig.axes if a.get_ylabel() == "test pairs"]


def test_plot_rejects_a_tampered_result(submitted_result, tiny_result):
    doc = json.loads(submitted_result.read_text())
    doc["cells"][0]["test_iia"] = 0.123456
    submitted_result.write_text(json.dumps(doc))
    res = CliRunner().invoke(main, ["plot", str(submitted_result)])
    assert res.exit_code == 2 and "digest mismatch" in res.output


@pytest.mark.integration
def test_site_grid_adds_prefix_rows_for_a_sweep(tiny_model_file, tiny_result):
    """The sites heatmap's grid: each ranked single-mode cell in its site's row, and in a
    --sweep result each prefix-mode cell in a row of its own."""
    import dataclasses

    from evaluate_helpers import TINY_ENGINE
    from numbench.evaluate import Settings, evaluate
    from numbench.plots import site_grid

    rows, cols, grid = site_grid(tiny_result)
    assert rows == [("hidden", "single")] and len(cols) == 10
    swept = evaluate(tiny_model_file, settings=Settings(sweep=True, engine=dataclasses.replace(
        TINY_ENGINE, workers=1)))
    for i, c in enumerate(swept["cells"]):  # distinct values: each must land in its place
        c["test_iia"] = i / 1000
    rows, cols, grid = site_grid(swept)
    assert rows == [("hidden", "single"), ("hidden", "prefix")]
    for mode, row in (("single", grid[0]), ("prefix", grid[1])):
        for (program, var, align), value in zip(cols, row):
            cell = next(c for c in swept["cells"] if c["mode"] == mode and c["control"] is None
                        and (c["program"], c["variable"], c["alignment"], c["k"])
                        == (program, var, align, 4))
            assert value == cell["test_iia"]
