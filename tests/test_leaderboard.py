"""The leaderboard from a real (tiny) result: ranking rule, marks, separation of protocol
versions and quick runs, bad files skipped by name, byte-identical rebuilds, the CLI."""

import copy
import json

from dataclasses import asdict

import pytest
from click.testing import CliRunner

from numbench.cli import main
from numbench.protocol import engine_config
from numbench.leaderboard import markdown_html, rank, render_html, render_markdown, summary_row
from numbench.results import seal, write_json_atomic
from numbench.scores import result_summary
from numbench.submissions import collect


def variant(doc, *, symbol=None, holdout=None, iid=None, protocol=None, quick=False, arch=None):
    """A resealed copy of a real result with some headline numbers set; its summary is what
    its cells give, as the board checks."""
    d = copy.deepcopy(doc)
    # the tiny budget is not the protocol's; these stand in for real runs
    d["ranked"], d["settings"]["engine"] = True, asdict(engine_config())
    if symbol is not None:  # every cell scoring `symbol` makes it every program's score
        for cell in d["cells"]:
            cell["test_iia"] = symbol
    if holdout is not None:
        d["task_accuracy"]["holdout"] = holdout
    if iid is not None:
        d["task_accuracy"]["iid"] = iid
    if protocol is not None:
        d["versions"]["protocol"] = protocol
    if quick:
        d["ranked"], d["settings"]["quick"] = False, True
    if arch:
        d["model"]["arch"] = arch
    d["summary"] = result_summary(d)
    return seal(d)


@pytest.fixture
def board(tmp_path, tiny_result):
    root = tmp_path / "submissions"
    docs = {
        "alpha": variant(tiny_result, symbol=0.50, holdout=0.90, iid=1.0),
        "beta": variant(tiny_result, symbol=0.80, holdout=0.70, iid=1.0),
        "gamma": variant(tiny_result, symbol=0.50, holdout=0.95, iid=0.5, arch="lstm"),
        "old": variant(tiny_result, symbol=0.99, protocol="0"),
        "smoke": variant(tiny_result, symbol=0.99, quick=True),
    }
    for name, doc in docs.items():
        write_json_atomic(root / name / "result.json", doc)
    edited = copy.deepcopy(docs["alpha"])
    edited["summary"]["symbol_score"] = 0.999  # edited after sealing
    write_json_atomic(root / "tampered" / "result.json", edited)
    (root / "broken").mkdir()
    (root / "broken" / "result.json").write_text("{not json")
    wrong_split = copy.deepcopy(tiny_result)
    wrong_split["task"]["split_sha256"]["iid"] = "0" * 64
    write_json_atomic(root / "resplit" / "result.json", seal(wrong_split))
    return root


def test_bad_files_are_skipped_by_name_and_the_rest_admitted(board):
    subs, problems = collect(board)
    assert sorted(s.name for s in subs) == ["alpha", "beta", "gamma", "old", "smoke"]
    why = {p.parent.name: msg for p, msg in problems}
    assert set(why) == {"tampered", "broken", "resplit"}
    assert "digest mismatch" in why["tampered"] and "tampered/result.json" in why["tampered"]
    assert "not valid JSON" in why["broken"]
    assert "split hashes" in why["resplit"]


def test_ranking_rule_symbol_score_then_holdout(board):
    subs, _ = collect(board)
    ranked = rank([summary_row(s) for s in subs if s.current_protocol and s.ranked])
    assert [r["model"] for r in ranked] == ["beta", "gamma", "alpha"]  # gamma wins the tie
    assert [r["low_accuracy"] for r in ranked] == [False, True, False]


def test_markdown_sections_marks_and_byte_identical_rebuild(board, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "leaderboard.md"
    runner = CliRunner()
    res = runner.invoke(main, ["leaderboard", "--submissions", "submissions", "--out", str(out)])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    overall = text.split("## Overall")[1].split("## Task")[0]
    assert overall.index("beta") < overall.index("gamma †") < overall.index("alpha")
    assert "| old " not in overall and "| smoke " not in overall
    other = text.split("## Other protocol versions")[1].split("##")[0]
    assert "| old" in other
    assert "| smoke" in text.split("## Unranked runs")[1].split("##")[0]
    skipped = text.split("## Skipped files")[1]
    for name in ("tampered", "broken", "resplit"):
        assert f"submissions/{name}/result.json" in skipped
    assert "Ranking rule" in text and "symbol score" in text
    first = out.read_bytes()
    res = runner.invoke(main, ["leaderboard", "--submissions", "submissions", "--out", str(out)])
    assert res.exit_code == 0 and out.read_bytes() == first


def test_verified_mark_needs_a_passing_record_of_this_exact_result(board):
    alpha = json.loads((board / "alpha" / "result.json").read_text())
    (board / "alpha" / "verify.json").write_text(json.dumps(
        {"passed": True, "result_digest": alpha["digest"], "model_sha256": alpha["model"]["sha256"]}))
    (board / "beta" / "verify.json").write_text(json.dumps({"passed": True, "result_digest": "x"}))
    subs, problems = collect(board)
    verified = {s.name: s.verified for s in subs}
    assert verified["alpha"] and not verified["beta"]
    text = render_markdown(subs, problems)
    alpha_row = next(line for line in text.split("## Overall")[1].splitlines() if "| alpha" in line)
    assert "✓" in alpha_row


def test_a_result_claiming_ranked_with_a_small_budget_is_not_ranked(tiny_result, tmp_path):
    claim = copy.deepcopy(tiny_result)
    claim["ranked"] = True  # but settings.engine is the tiny budget
    write_json_atomic(tmp_path / "claim" / "result.json", seal(claim))
    subs, _ = collect(tmp_path)
    assert not subs[0].ranked
    assert "| claim" not in render_markdown(subs, []).split("## Overall")[1].split("##")[0]


def test_empty_submissions_still_give_a_board(tmp_path):
    subs, problems = collect(tmp_path)
    text = render_markdown(subs, problems)
    assert "*(none)*" in text and not problems


def test_page_renders_its_notes_markdown_as_html_and_escapes_result_text(tiny_result, tmp_path):
    write_json_atomic(tmp_path / "*a*<b>`c`" / "result.json", variant(tiny_result, symbol=0.5, iid=1.0))
    subs, problems = collect(tmp_path)
    page = render_html(subs, problems)
    assert "<em>symbol score</em>" in page and "<em>selectivity</em>" in page
    assert "<strong>Ranking rule (PROTOCOL §7).</strong>" in page
    assert "<code>numbench verify</code>" in page and "<h2>Task <code>multi_object</code></h2>" in page
    prose = page.split("<table")[0]
    assert "*" not in prose and "`" not in prose  # no Markdown left as literal text
    assert "*a*&lt;b&gt;`c`" in page  # a name from a result: escaped, never rendered
    assert "<em>a</em>" not in page and "<b>" not in page and "<code>c</code>" not in page


def test_markdown_html_escapes_before_it_marks_up():
    assert markdown_html("a <i> & *b* `*c* <d>` **e** 2 * 3 * 4") == (
        "a &lt;i&gt; &amp; <em>b</em> <code>&#42;c&#42; &lt;d&gt;</code> <strong>e</strong> 2 * 3 * 4")


def test_html_alone_leaves_the_markdown_board_alone(board, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    res = runner.invoke(main, ["leaderboard", "--submissions", "submissions", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["rows"]
    assert not (tmp_path / "leaderboard.md").exists()  # --json prints, writes nothing
    res = runner.invoke(main, ["leaderboard", "--submissions", "submissions", "--html", "page.html"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "page.html").exists() and not (tmp_path / "leaderboard.md").exists()
    res = runner.invoke(main, ["leaderboard", "--submissions", "submissions", "--html", "page.html",
                               "--out", "board.md"])
    assert res.exit_code == 0 and (tmp_path / "board.md").exists()
    res = runner.invoke(main, ["leaderboard", "--submissions", "submissions"])
    assert res.exit_code == 0 and (tmp_path / "leaderboard.md").exists()  # the default


def test_page_install_hint_keeps_the_extra_in_brackets(board, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` fails
    res = CliRunner().invoke(main, ["leaderboard", "--submissions", str(board), "--html",
                                    str(tmp_path / "page.html")])
    assert res.exit_code == 0 and "no plots on the page: pip install 'numbench[plot]'" in res.stderr


def test_committed_leaderboard_is_what_the_committed_results_give(tmp_path, monkeypatch):
    """`numbench leaderboard` on a fresh clone rebuilds leaderboard.md byte for byte. Only
    the committed result files count (a local sweep's results are not in a fresh clone)."""
    import shutil
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    committed = root / "leaderboard.md"
    assert committed.exists(), "leaderboard.md is missing: run `numbench leaderboard`"
    try:
        listed = subprocess.run(["git", "ls-files", "submissions"], cwd=root, check=True,
                                capture_output=True, text=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    for rel in listed:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / rel, tmp_path / rel)
    monkeypatch.chdir(tmp_path)  # the board names files relative to the repository root
    subs, problems = collect("submissions")
    assert render_markdown(subs, problems) == committed.read_text(encoding="utf-8")
