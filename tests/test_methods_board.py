"""The method board (`numbench methods`, the leaderboard's *Methods* section): every number
is what the result files' cells give, computed here the plain way; filters; formats; the
ranking rule; text from a result escaped."""

import copy
import csv
import io
import json
from pathlib import Path
from statistics import mean

import pytest
from click.testing import CliRunner

from numbench.cli import main
from numbench.leaderboard import render_html, render_markdown
from numbench.methods import (FIELDS, board_rows, display_rows, holding_every_method,
                              method_rows, rank, select)
from numbench.results import seal, write_json_atomic
from numbench.scores import result_summary
from numbench.submissions import collect
from numbench.tasks import load_task
from test_board_trust import hand_made_result
from test_leaderboard import variant

#: an extra method's name as a user might write it: rich markup, HTML, a table bar
ODD = "my[b]<i>|x"


def with_method(doc, name=ODD, *, arch="lstm"):
    """A resealed copy of a ranked result with an extra method ``name``: orthogonal's
    cells (main, permuted, random-init) under that name, each test IIA moved so the
    numbers differ from orthogonal's, recorded in settings.alignments and summary.methods."""
    d = copy.deepcopy(doc)
    extra = []
    for c in d["cells"]:
        if c["alignment"] == "orthogonal":
            e = dict(c, alignment=name, key=c["key"].replace("/orthogonal/", f"/{name}/"))
            e["test_iia"] = round(0.2 + 0.7 * c["test_iia"] + 0.01 * c["site_index"], 6)
            extra.append(e)
    d["cells"] += extra
    d["settings"]["alignments"] = [{"name": name}]
    d["model"]["arch"] = arch
    d["summary"] = result_summary(d)
    assert name in d["summary"]["methods"]
    return seal(d)


def with_sweep_sd_linear(doc):
    """A resealed copy with what a --sweep run adds for sd_linear: one cell per variable at
    orthogonal's best site and the ranked k, flagged ranked_k false, no controls."""
    d = copy.deepcopy(doc)
    for c in [c for c in d["cells"] if c["alignment"] == "orthogonal" and c["control"] is None
              and c["ranked_k"] and c["mode"] == "single"]:
        d["cells"].append(dict(c, alignment="sd_linear", ranked_k=False,
                               key=c["key"].replace("/orthogonal/", "/sd_linear/"),
                               test_iia=0.5))
    d["settings"]["sweep"] = True
    d["summary"] = result_summary(d)
    return seal(d)


@pytest.fixture
def zoo(tmp_path, tiny_result):
    """submissions/ with: plain (gru, multi_object), extra (lstm, with ODD), swept (gru,
    with a sweep's sd_linear), hand (gru, single_object, hand-made: no random-init, no
    random subspace), smoke (a --quick run with a method of its own), old (protocol 0)."""
    root = tmp_path / "submissions"
    plain = variant(tiny_result, iid=1.0)
    docs = {
        "plain": plain,
        "extra": with_method(plain),
        "swept": with_sweep_sd_linear(plain),
        "hand": hand_made_result(task=load_task("single_object"), test_iia=0.6),
        "smoke": variant(with_method(plain, "quickonly", arch="gru"), quick=True),
        "old": variant(with_method(plain, "oldonly", arch="gru"), protocol="0"),
    }
    for name, doc in docs.items():
        write_json_atomic(root / name / "result.json", doc)
    return root


# -- the plain computation ---------------------------------------------------------------

def plain_entries(doc, method):
    """(test, permuted, random-init, random subspace, selectivity, control gap) per program
    variable, from the cells by their keys: no code of numbench.methods."""
    by_key = {c["key"]: c for c in doc["cells"]}
    ranked_k = {c["site"]: c["k"] for c in doc["cells"]
                if c["ranked_k"] and c["alignment"] == "random"}
    groups = {}
    for c in doc["cells"]:
        if (c["alignment"] == method and c["control"] is None and c["mode"] == "single"
                and c["k"] == ranked_k.get(c["site"])):
            groups.setdefault((c["program"], c["variable"]), []).append(c)
    if not ranked_k:  # a hand-made result without the random baseline: every cell is ranked k
        for c in doc["cells"]:
            if c["alignment"] == method and c["control"] is None and c["ranked_k"]:
                groups.setdefault((c["program"], c["variable"]), []).append(c)
    out = []
    for (program, var), cands in groups.items():
        best = sorted(cands, key=lambda c: (-c["valid_iia"], c["site_index"]))[0]
        get = lambda key: by_key[key]["test_iia"] if key in by_key else None
        perm, rinit = get(best["key"] + "/permuted"), get(best["key"] + "/random_init")
        rsub = get(f"{program}/{var}/random/k{best['k']}/{best['site']}/single")
        none = doc["no_interchange"][program][var]["test"]
        sel = best["test_iia"] - max(x for x in (perm, none) if x is not None)
        gap = (best["test_iia"] - max(perm, rinit)
               if perm is not None and rinit is not None else None)
        out.append((best["test_iia"], perm, rinit, rsub, sel, gap))
    return out


def plain_rows(docs):
    """{method: {field: value}} over the given result documents."""
    methods = {m for d in docs for m in {c["alignment"] for c in d["cells"]}} - {"full", "random"}
    out = {}
    for m in methods:
        per_doc = [plain_entries(d, m) for d in docs]
        entries = [e for es in per_doc for e in es]
        if not entries:
            continue
        avg = lambda i: (mean(v) if (v := [e[i] for e in entries if e[i] is not None]) else None)
        out[m] = {"models": sum(1 for es in per_doc if es), "variables": len(entries),
                  "test_iia": avg(0), "permuted_iia": avg(1), "random_init_iia": avg(2),
                  "random_subspace_iia": avg(3), "selectivity": avg(4), "control_gap": avg(5)}
    return out


def assert_rows_match(rows, expected):
    assert {r["method"] for r in rows} == set(expected)
    for r in rows:
        want = expected[r["method"]]
        for key, value in want.items():
            assert r[key] == (pytest.approx(value, abs=1e-12) if value is not None else None), \
                (r["method"], key)


# -- numbers -----------------------------------------------------------------------------

def test_every_number_is_what_the_cells_give(zoo):
    subs, problems = collect(zoo)
    assert not problems
    chosen = select(subs)
    assert sorted(s.name for s in chosen) == ["extra", "hand", "plain", "swept"]
    rows = method_rows(chosen)
    assert_rows_match(rows, plain_rows([s.doc for s in chosen]))
    by = {r["method"]: r for r in rows}
    assert by["orthogonal"]["models"] == 4 and by["orthogonal"]["variables"] == 3 * 5 + 2
    assert by[ODD]["models"] == 1 and by[ODD]["variables"] == 5
    assert by["sd_linear"]["models"] == 1 and by["sd_linear"]["control_gap"] is None
    assert "quickonly" not in by and "oldonly" not in by  # a --quick run, another protocol
    assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    assert set(rows[0]) == set(FIELDS)


def test_the_cells_are_the_ones_the_summary_picks(zoo):
    """For the ranked pair and an extra method, each entry is the summary's entry."""
    from numbench.methods import result_entries

    doc = next(s.doc for s in collect(zoo)[0] if s.name == "extra")
    entries = result_entries(doc)
    for method, rows in entries.items():
        for e in rows:
            stored = (doc["summary"]["programs"][e["program"]]["variables"][e["variable"]][method]
                      if method in ("orthogonal", "linear")
                      else doc["summary"]["methods"][method][e["program"]][e["variable"]])
            for key in ("site", "k", "test_iia", "permuted_iia", "random_init_iia",
                        "selectivity", "random_subspace_iia", "no_interchange_iia"):
                assert e[key] == stored[key], (method, e["program"], e["variable"], key)


def test_the_committed_results_give_the_numbers_the_board_shows():
    """On the committed results (one site and three): every ranked result's cells, the
    plain way, against the rows of the board."""
    root = Path(__file__).resolve().parents[1] / "submissions"
    subs, _ = collect(root)
    chosen = select(subs)
    assert chosen
    assert_rows_match(board_rows(subs), plain_rows([s.doc for s in chosen]))


# -- filters -----------------------------------------------------------------------------

def test_filters_task_arch_and_quick(zoo):
    subs, _ = collect(zoo)
    names = lambda **kw: sorted(s.name for s in select(subs, **kw))
    assert names(task="single_object") == ["hand"]
    assert names(arch="lstm") == ["extra"]
    assert names(arch="gru", task="multi_object") == ["plain", "swept"]
    assert names(quick=True) == ["smoke"]
    assert names(task="nope") == []
    quick = {r["method"]: r for r in method_rows(select(subs, quick=True))}
    assert set(quick) == {"orthogonal", "linear", "quickonly"}
    assert_rows_match(method_rows(select(subs, arch="lstm")),
                      plain_rows([s.doc for s in subs if s.name == "extra"]))


def test_shared_keeps_the_results_that_hold_every_method(zoo):
    subs, _ = collect(zoo)
    names = lambda **kw: sorted(s.name for s in holding_every_method(select(subs, **kw)))
    # plain and hand hold the ranked pair only, extra adds ODD, swept adds sd_linear
    assert names() == []
    assert names(arch="gru", task="multi_object") == ["swept"]
    assert names(arch="lstm") == ["extra"]
    assert names(task="single_object") == ["hand"]
    rows = method_rows(holding_every_method(select(subs, arch="gru", task="multi_object")))
    assert {r["method"]: r["models"] for r in rows} == {"orthogonal": 1, "linear": 1,
                                                       "sd_linear": 1}
    assert_rows_match(rows, plain_rows([s.doc for s in subs if s.name == "swept"]))
    run = lambda *a: CliRunner().invoke(main, ["methods", "--submissions", str(zoo), *a])
    res = run("--shared", "--arch", "lstm", "--format", "json")
    assert res.exit_code == 0, res.output
    assert {r["method"]: r["models"] for r in json.loads(res.stdout)} == {
        "orthogonal": 1, "linear": 1, ODD: 1}
    res = run("--shared")
    assert res.exit_code == 2 and "no result holds every method" in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_cli_filters_and_bad_filters(zoo):
    run = lambda *a: CliRunner().invoke(main, ["methods", "--submissions", str(zoo), *a])
    res = run("--arch", "lstm", "--format", "json")
    assert res.exit_code == 0, res.output
    assert {r["method"]: r["models"] for r in json.loads(res.stdout)} == {
        "orthogonal": 1, "linear": 1, ODD: 1}
    res = run("--task", "single_object", "--format", "json")
    assert {r["method"] for r in json.loads(res.stdout)} == {"orthogonal", "linear"}
    res = run("--quick", "--format", "json")
    assert "quickonly" in {r["method"] for r in json.loads(res.stdout)}
    res = run("--task", "nope")
    assert res.exit_code == 2 and "no ranked result of protocol" in res.output
    assert len(res.output.strip().splitlines()) == 1
    res = CliRunner().invoke(main, ["methods", "--submissions", str(zoo / "none")])
    assert res.exit_code == 2 and "no result files" in res.output


# -- formats -----------------------------------------------------------------------------

def test_formats_carry_the_same_rows(zoo):
    rows = method_rows(select(collect(zoo)[0]))
    run = lambda fmt: CliRunner().invoke(main, ["methods", "--submissions", str(zoo),
                                                "--format", fmt])
    res = run("json")
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    assert [list(r) for r in got] == [list(FIELDS)] * len(rows)
    for g, r in zip(got, rows):
        for key in FIELDS:
            assert g[key] == (pytest.approx(r[key], abs=5e-5) if r[key] is not None else None)
    res = run("csv")
    got = list(csv.DictReader(io.StringIO(res.stdout)))
    assert list(got[0]) == list(FIELDS)
    assert [g["method"] for g in got] == [r["method"] for r in rows]
    for g, r in zip(got, rows):
        for key in FIELDS[2:]:
            assert (float(g[key]) == pytest.approx(r[key], abs=5e-5)) if r[key] is not None \
                else g[key] == ""
    res = run("md")
    lines = res.stdout.splitlines()
    assert [c.strip() for c in lines[0].strip("|").split("|")][:4] == ["#", "method", "models",
                                                                       "variables"]
    assert "my[b]&lt;i&gt;\\|x" in res.stdout  # escaped as the board does
    assert "<i>" not in res.stdout
    assert len(lines) == 2 + len(rows)
    res = run("table")
    assert res.exit_code == 0 and ODD in res.stdout  # rich markup in a name is printed, not applied
    for r in rows:
        assert r["method"] in res.stdout


# -- ranking rule ------------------------------------------------------------------------

def test_ranking_rule_gap_then_selectivity_then_iia_then_name():
    row = lambda m, gap, sel, iia: {"method": m, "control_gap": gap, "selectivity": sel,
                                    "test_iia": iia, "rank": None}
    rows = rank([
        row("no_gap", None, 0.99, 0.99),      # no controls: after every method with a gap
        row("low", 0.10, 0.90, 0.99),
        row("tie_b", 0.50, 0.40, 0.80),
        row("tie_a", 0.50, 0.40, 0.80),       # full tie: by name
        row("more_sel", 0.50, 0.45, 0.10),    # same gap, more selective
        row("more_iia", 0.50, 0.40, 0.90),    # same gap and selectivity, more IIA
        row("top", 0.60, None, None),
    ])
    assert [r["method"] for r in rows] == ["top", "more_sel", "more_iia", "tie_a", "tie_b",
                                           "low", "no_gap"]
    assert [r["rank"] for r in rows] == list(range(1, 8))


def test_rows_come_ranked_by_the_rule(zoo):
    rows = method_rows(select(collect(zoo)[0]))
    gaps = [r["control_gap"] for r in rows]
    known = [g for g in gaps if g is not None]
    assert known == sorted(known, reverse=True) and gaps[-1] is None  # sd_linear: no controls
    assert rows[-1]["method"] == "sd_linear"


# -- the leaderboard ---------------------------------------------------------------------

def test_board_has_the_methods_section_escaped(zoo, tmp_path, monkeypatch):
    subs, problems = collect(zoo)
    text = render_markdown(subs, problems)
    section = text.split("## Methods")[1]
    assert "Ranking rule" in section and "control gap" in section
    table = [line for line in section.splitlines() if line.startswith("| ")][1:]
    shown = display_rows(board_rows(subs))
    assert len(table) == len(shown)
    for line, r in zip(table, shown):
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        assert cells[0] == r["#"] and cells[2:] == list(r.values())[2:]
    assert "| my[b]&lt;i&gt;\\|x " in section and "quickonly" not in section
    page = render_html(subs, problems)
    methods = page.split("<h2>Methods</h2>")[1]
    assert "my[b]&lt;i&gt;|x" in methods and "<i>" not in page
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["leaderboard", "--submissions", str(zoo), "--json"])
    assert json.loads(res.stdout)["methods"] == json.loads(json.dumps(board_rows(subs)))


def test_an_empty_board_has_an_empty_methods_section(tmp_path):
    subs, problems = collect(tmp_path)
    assert render_markdown(subs, problems).split("## Methods")[1].count("*(none)*") == 1
