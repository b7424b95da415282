"""compare (alignment functions side by side) and plot, on a real tiny result."""

import io
import json

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


def test_plot_writes_three_pngs(submitted_result, tmp_path):
    pytest.importorskip("matplotlib")
    res = CliRunner().invoke(main, ["plot", str(submitted_result), "--out", str(tmp_path / "png")])
    assert res.exit_code == 0, res.output
    paths = [tmp_path / "png" / p.split("/")[-1] for p in res.output.split()]
    assert sorted(p.name for p in paths) == ["tiny_gru_gradience.png", "tiny_gru_k.png", "tiny_gru_sites.png"]
    for p in paths:
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


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
