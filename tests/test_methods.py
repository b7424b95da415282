"""Alignment methods beside the ranked pair (issue 25): a user's method file trained and
scored from the command line, with its controls and sha256; `compare`, `plot` and the
board show it; `verify` needs the very file; `pca` and `probe` against NumPy; every
method leaves h_b alone when the source is the base."""

import dataclasses
import hashlib
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from numbench.alignments import ALIGNMENTS, has_fit_step, make_alignment, registry
from numbench.cli import main
from numbench.engine import Engine, FitSpec, PairTensors
from numbench.errors import NumbenchError
from numbench.evaluate import Settings
from numbench.pairs import make_pairs
from numbench.programs import PROGRAMS
from numbench.protocol import RANKED_ALIGNMENTS
from numbench.results import load_result
from numbench.scores import summarize

from evaluate_helpers import MINE, TINY_ENGINE
from models_helpers import tiny

# the tiny result's engine budget (tests/evaluate_helpers.py), spelled for the command line
TINY = [f"--engine={k}={getattr(TINY_ENGINE, k)}" for k in
        ("max_steps", "eval_every", "fits_per_forward", "eval_chunk", "patience", "fail_after")]
EXTRA = ("mine", "pca", "probe")


@pytest.fixture(scope="module")
def mine_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("methods") / "mine.py"
    path.write_text(MINE)
    return path


@pytest.fixture(scope="module")
def methods_result(tmp_path_factory, tiny_model_file, mine_file):
    """The tiny model evaluated from the command line with a user's method, pca and probe
    (the worker process loads the user's file too)."""
    out = tmp_path_factory.mktemp("sub") / "submissions" / "tiny_methods" / "result.json"
    saved = dict(ALIGNMENTS), dict(registry._SOURCES), dict(registry._loaded_files)
    try:
        res = CliRunner().invoke(main, ["evaluate", str(tiny_model_file), "--quick", *TINY,
                                        "--alignments", "mine", "--alignments", "pca,probe",
                                        "--alignment-module", str(mine_file), "--out", str(out)])
    finally:
        for live, old in zip((ALIGNMENTS, registry._SOURCES, registry._loaded_files), saved):
            live.clear()
            live.update(old)
    assert res.exit_code == 0, res.output
    return out


def test_a_user_method_is_trained_and_scored_with_its_controls(methods_result, mine_file,
                                                               tiny_result, multi):
    doc = load_result(methods_result)  # schema, seal and summary all hold
    sha = hashlib.sha256(mine_file.read_bytes()).hexdigest()
    assert doc["settings"]["alignments"] == [
        {"name": "mine", "module": "mine.py", "sha256": sha}, {"name": "pca"}, {"name": "probe"}]
    assert doc["ranked"] is False  # --quick; extra methods alone leave a result ranked
    cells = {c["key"]: c for c in doc["cells"]}
    site, k = "hidden", 4  # the tiny GRU: d = 8
    for program, prog in PROGRAMS.items():
        for var in prog.variables:
            for method in EXTRA:
                key = f"{program}/{var}/{method}/k{k}/{site}/single"
                assert {key, key + "/permuted", key + "/random_init"} <= set(cells)
                trained = cells[key]["stop_reason"] != "untrained"
                assert trained == (method == "mine")
                entry = doc["summary"]["methods"][method][program][var]
                assert entry["test_iia"] == cells[key]["test_iia"]
                assert entry["permuted_iia"] == cells[key + "/permuted"]["test_iia"]
                assert entry["random_init_iia"] == cells[key + "/random_init"]["test_iia"]
                assert "by_source_value" in cells[key]
    # the symbol score is the ranked pair's alone
    ranked = summarize(doc["cells"], {p: v.variables for p, v in PROGRAMS.items()},
                       doc["no_interchange"])
    assert doc["summary"]["programs"] == ranked["programs"]
    assert doc["summary"]["symbol_score"] == ranked["symbol_score"]
    # and the ranked pair's cells are those of a run without extra methods (same budget)
    if Engine(tiny("gru", multi), "hidden", "single", TINY_ENGINE).continuous:
        # a fit computes exactly as it would alone, whichever fits share its forward
        number = lambda c: (c["valid_iia"], c["test_iia"], c["steps"], c["stop_reason"])
        before = {c["key"]: number(c) for c in tiny_result["cells"]}
        assert {key: number(cells[key]) for key in before} == before


def test_compare_and_plot_show_every_method_a_result_holds(methods_result, tmp_path):
    from numbench.compare import compare_frame
    from numbench.submissions import Submission

    doc = load_result(methods_result)
    frame = compare_frame([Submission(methods_result, doc, False)])
    for method in EXTRA:
        for col in (method, f"{method} permuted", f"{method} selectivity", f"{method} random-init"):
            assert col in frame.columns
    for r in frame.to_dict("records"):
        for method in EXTRA:
            entry = doc["summary"]["methods"][method][r["program"]][r["variable"]]
            assert r[method] == entry["test_iia"]
            assert r[f"{method} random-init"] == entry["random_init_iia"]
    md = CliRunner().invoke(main, ["compare", str(methods_result), "--format", "md"])
    assert md.exit_code == 0 and "mine selectivity" in md.output.splitlines()[0]

    from numbench.plots import colors, methods, site_grid

    assert methods(doc) == ["orthogonal", "linear", "mine", "pca", "probe"]
    assert len(set(colors(doc).values())) == len(colors(doc))
    _, cols, grid = site_grid(doc)
    assert ("up_down", "count", "probe") in cols
    assert grid[0][cols.index(("up_down", "count", "probe"))] == \
        doc["summary"]["methods"]["probe"]["up_down"]["count"]["test_iia"]
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from numbench import plots

    drawn = []
    saved = plots._save
    plots._save = lambda fig, path: drawn.append(fig) or path
    try:
        plots.plot_gradience(doc, tmp_path / "g.png")
    finally:
        plots._save = saved
    legend = next(ax.get_legend() for ax in drawn[0].axes if ax.get_legend())
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels[:5] == ["orthogonal", "linear", "mine", "pca", "probe"]
    plt.close(drawn[0])
    res = CliRunner().invoke(main, ["plot", str(methods_result), "--kind", "sites",
                                    "--out", str(tmp_path / "png")])
    assert res.exit_code == 0, res.output


def test_the_board_shows_other_methods_without_ranking_by_them(methods_result, tiny_result,
                                                               tmp_path):
    from numbench.leaderboard import render_markdown, summary_row
    from numbench.submissions import Submission

    doc = load_result(methods_result)
    sub = Submission(methods_result, doc, False)
    row = summary_row(sub)
    best = doc["summary"]["best_program"]
    want = np.mean([e["test_iia"] for e in doc["summary"]["methods"]["pca"][best].values()])
    assert row["methods"]["pca"] == pytest.approx(want)
    assert row["symbol_score"] == doc["summary"]["symbol_score"]
    md = render_markdown([sub], [])
    assert "other methods" in md and "mine " in md and "probe " in md
    plain = render_markdown([Submission(methods_result, tiny_result, False)], [])
    assert "other methods" not in plain  # a result without them: the board as before


def test_verify_needs_the_very_method_file(methods_result, tiny_model_file, mine_file,
                                           tmp_path, registry_kept):
    ALIGNMENTS.pop("mine", None)  # as in a fresh process: a result never loads code
    registry._SOURCES.pop("mine", None)
    registry._loaded_files.pop(str(mine_file.resolve()), None)
    missing = CliRunner().invoke(main, ["verify", str(methods_result), str(tiny_model_file)])
    assert missing.exit_code == 2
    line, = missing.stderr.strip().splitlines()
    assert "settings.alignments[0]" in line and "'mine' is not registered" in line
    assert "--alignment-module" in line and "mine.py" in line

    changed = tmp_path / "mine.py"
    changed.write_text(MINE + "# edited\n")
    res = CliRunner().invoke(main, ["verify", str(methods_result), str(tiny_model_file),
                                    "--alignment-module", str(changed)])
    assert res.exit_code == 2
    line, = res.stderr.strip().splitlines()
    assert "'mine' was recorded from mine.py with sha256" in line
    assert not (methods_result.parent / "verify.json").exists()


def test_unknown_or_protocol_names_and_redefined_kinds_are_refused(tiny_model_file, tmp_path,
                                                                   registry_kept):
    for names, says in ((["nope"], "alignment 'nope' is not registered"),
                        (["pca,linear"], "alignment 'linear' is fitted by the protocol")):
        res = CliRunner().invoke(main, ["evaluate", str(tiny_model_file), "--quick",
                                        "--alignments", *names, "--out", str(tmp_path / "r.json")])
        assert res.exit_code == 2 and says in res.stderr and len(res.stderr.splitlines()) == 1
    bad = tmp_path / "bad.py"
    bad.write_text(MINE.replace('name = "mine"', 'name = "orthogonal"'))
    with pytest.raises(NumbenchError, match="redefines the built-in alignment 'orthogonal'"):
        registry.load_alignment_module(bad)
    assert ALIGNMENTS["orthogonal"].__module__ == "numbench.alignments.orthogonal"
    assert Settings().to_json().keys() == {"seed", "quick", "sweep", "engine"}  # as before


@pytest.mark.parametrize("name", [n for n in ALIGNMENTS] + ["mine"])
def test_every_method_returns_the_base_when_the_source_is_the_base(name, mine_file,
                                                                   registry_kept):
    if name == "mine":
        registry.load_alignment_module(mine_file)
    d, k, count = 8, 3, 2
    al = make_alignment(name, d, k, count=count, seed=5)
    g = torch.Generator().manual_seed(1)
    hb = torch.randn(count, 40, d, generator=g)
    if has_fit_step(type(al)):
        for a in range(count):
            values = torch.randint(0, 6, (40, 1), generator=g)
            al.fit(a, hb[a], torch.randn(40, d, generator=g), values)
    assert torch.equal(al(hb, hb), hb)


def test_only_the_new_methods_have_a_fit_step():
    fitted = {n for n, cls in ALIGNMENTS.items() if has_fit_step(cls)}
    assert {"pca", "probe"} <= fitted
    assert not fitted & {"orthogonal", "linear", "sd_linear", "full", "random"}
    assert not (ALIGNMENTS["pca"].trainable or ALIGNMENTS["probe"].trainable)


def _tensors(p, n):
    T = torch.from_numpy
    return PairTensors(T(p.base.ids[:n]), T(p.counterfactual.ids[:n]),
                       T(p.counterfactual.scored[:n]), T(p.base_pos[:n]), T(p.source.ids[:n]),
                       T(p.source_pos[:n]), T(p.source_values[:n]))


def _numpy_pca(x, k):
    xc = x - x.mean(0)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    return vt[:k].T


def _numpy_probe(x, values, k):
    xc = x - x.mean(0)
    y = np.concatenate([(v[:, None] == np.unique(v)[None, :]).astype(float) for v in values.T], 1)
    w = np.linalg.pinv(xc, rcond=1e-6) @ (y - y.mean(0))
    u, s, _ = np.linalg.svd(w, full_matrices=False)
    q = u[:, : min(k, int((s > s[0] * 1e-8).sum()))]
    rest = xc - xc @ q @ q.T  # what the probe's subspace leaves, top directions of it
    _, _, vt = np.linalg.svd(rest, full_matrices=False)
    return np.concatenate([q, vt[: k - q.shape[1]].T], 1)


@pytest.mark.parametrize("mode,variable", [("single", "count"), ("single", "phase"),
                                           ("prefix", "count")])
def test_pca_and_probe_subspaces_match_numpy(multi, mode, variable):
    """Fitted by the engine's fit step from a tiny real model's activations; compared as
    projectors (a basis is one of many)."""
    model = tiny("gru", multi, seed=3)
    site, k, n = "hidden", 5, 600
    pairs = [_tensors(make_pairs(multi, "up_down", variable, s, mode=mode), m)
             for s, m in (("train", n), ("valid", 50), ("test", 50))]
    engine = Engine(model, site, mode, TINY_ENGINE)
    fits = engine.make_fits([FitSpec("p", "pca", k, *pairs), FitSpec("q", "probe", k, *pairs)])
    train = pairs[0]
    with torch.no_grad():
        rows = torch.arange(n)
        h_b = model.activations(train.base_ids, site)[rows, train.base_pos].double().numpy()
        src_pos = train.base_pos if mode == "prefix" else train.src_pos
        h_s = model.activations(train.src_ids, site)[rows, src_pos].double().numpy()
    want = {"pca": _numpy_pca(np.concatenate([h_b, h_s]), k),
            "probe": _numpy_probe(h_s, train.values.numpy(), k)}
    for f in fits:
        q = f.module.basis[f.slot].double().numpy()
        np.testing.assert_allclose(q.T @ q, np.eye(k), atol=1e-5)
        np.testing.assert_allclose(q @ q.T, want[f.spec.alignment] @ want[f.spec.alignment].T,
                                   atol=1e-4)
    if variable == "phase":  # two values: the probe reads one direction, PCA completes it
        fit = next(f for f in fits if f.spec.alignment == "probe")
        w_dir = want["probe"][:, :1]
        q = fit.module.basis[fit.slot].double().numpy()
        np.testing.assert_allclose(np.abs(q[:, :1].T @ w_dir), [[1.0]], atol=1e-5)


def test_the_probe_subspace_does_not_move_when_the_values_are_permuted():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(300, 10, generator=g)
    values = torch.randint(0, 7, (300, 1), generator=g)
    perm = torch.tensor([3, 5, 0, 6, 1, 2, 4])
    a = make_alignment("probe", 10, 4, count=2)
    for slot, v in ((0, values), (1, perm[values])):
        a.fit(slot, x, x, v)
    torch.testing.assert_close(a.projector()[0], a.projector()[1], atol=1e-5, rtol=0)


def test_a_result_with_methods_replays_its_settings():
    doc = {"seed": 0, "quick": True, "sweep": False,
           "engine": json.loads(json.dumps(Settings().to_json()["engine"])),
           "alignments": [{"name": "pca"}, {"name": "probe"}]}
    s = Settings.from_json(doc)
    assert s.alignments == ("pca", "probe") and s.to_json() == doc
    assert Settings.from_json({k: v for k, v in doc.items() if k != "alignments"}).alignments == ()
    assert RANKED_ALIGNMENTS == ("orthogonal", "linear")


@pytest.mark.integration
def test_verify_replays_a_user_method_in_a_fresh_process(tmp_path, tiny_model_file, mine_file):
    """Fresh processes, as a user runs them: nothing registers `mine` unless its file is
    named, and the replay with it reproduces every number."""
    import os
    import subprocess
    import sys

    def numbench(*args):
        return subprocess.run([sys.executable, "-m", "numbench.cli", *map(str, args)],
                              cwd=tmp_path, capture_output=True, text=True, timeout=600,
                              env=dict(os.environ, OMP_NUM_THREADS="1"))

    result = tmp_path / "submissions" / "tiny" / "result.json"
    made = numbench("evaluate", tiny_model_file, "--quick", *TINY, "--alignments", "mine,probe",
                    "--alignment-module", mine_file, "--out", result)
    assert made.returncode == 0, made.stderr
    missing = numbench("verify", result, tiny_model_file)
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    ok = numbench("verify", result, tiny_model_file, "--alignment-module", mine_file)
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_the_documented_method_file_is_shown_verbatim_fits_and_trains(multi, registry_kept):
    """docs/alignments.md's complete example, docs/examples/meandiff.py: a trained method
    with a fit step, loaded as a user's file and run through the engine."""
    from pathlib import Path

    from numbench.engine import run

    root = Path(__file__).resolve().parents[1]
    example = root / "docs" / "examples" / "meandiff.py"
    doc = (root / "docs" / "alignments.md").read_text(encoding="utf-8")
    marker = "<!-- example: docs/examples/meandiff.py -->"
    assert f"{marker}\n```python\n{example.read_text()}```" in doc
    assert registry.load_alignment_module(example) == ["meandiff"]
    model = tiny("gru", multi, seed=1)
    pairs = [_tensors(make_pairs(multi, "up_down", "phase", s), m)
             for s, m in (("train", 256), ("valid", 40), ("test", 40))]
    fit, = Engine(model, "hidden", "single", TINY_ENGINE).make_fits(
        [FitSpec("m", "meandiff", 3, *pairs)])
    with torch.no_grad():  # phase has two values: its first direction is the means' difference
        train = pairs[0]
        h_s = model.activations(train.src_ids, "hidden")[torch.arange(256), train.src_pos]
        v = train.values[:, 0]
        diff = h_s[v == 1].mean(0) - h_s[v == 0].mean(0)
        q = fit.module.factors()[0][0]  # Q_k (d, k) of the fit's slice
    assert abs(float(q[:, 0] @ diff / diff.norm())) == pytest.approx(1.0, abs=1e-5)
    result, = run(Engine(model, "hidden", "single", TINY_ENGINE),
                  [FitSpec("m", "meandiff", 3, *pairs)])
    assert result.steps > 0 and result.state  # trained, its best slice kept


@pytest.mark.integration  # whole evaluations
def test_reuse_copies_a_results_fits_and_trains_only_the_new_methods(tiny_result, tiny_model_file,
                                                                     multi, tmp_path):
    """`evaluate --reuse RESULT` adds methods to a finished result: its fits are copied, the
    new methods' trained, and the result is the one a run from scratch gives, cell for
    cell. Another seed, budget or model is refused in one line."""
    from numbench.evaluate import evaluate
    from numbench.results import write_json_atomic

    old = tmp_path / "result.json"
    write_json_atomic(old, tiny_result)
    with_pca = Settings(engine=TINY_ENGINE, alignments=("pca",))
    if not Engine(tiny("gru", multi), "hidden", "single", TINY_ENGINE).continuous:
        with pytest.raises(NumbenchError, match="lockstep"):  # a copy would round differently
            evaluate(tiny_model_file, settings=with_pca, reuse=old)
        return
    told = []
    copied = evaluate(tiny_model_file, settings=with_pca, reuse=old,
                      progress=lambda stage, d: told.append(d) if stage == "reuse" else None)
    scratch = evaluate(tiny_model_file, settings=with_pca)
    assert told == [{"copied": len(tiny_result["cells"]), "cells": len(scratch["cells"])}]
    assert copied["cells"] == scratch["cells"] and copied["summary"] == scratch["summary"]
    assert len(scratch["cells"]) > len(tiny_result["cells"])
    for settings in (Settings(seed=1, engine=TINY_ENGINE),
                     Settings(engine=dataclasses.replace(TINY_ENGINE, lr=0.5))):
        with pytest.raises(NumbenchError, match="another seed, budget"):
            evaluate(tiny_model_file, settings=settings, reuse=old)
    res = CliRunner().invoke(main, ["evaluate", str(tiny_model_file), "--reuse", str(tmp_path / "nope.json"),
                                    "--out", str(tmp_path / "x.json")])
    assert res.exit_code == 2 and "nope.json" in res.output and "Traceback" not in res.output
