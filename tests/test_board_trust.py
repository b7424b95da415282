"""The board trusts only what it can recompute (#27): a summary the cells do not give, a
malformed or duplicate-keyed result is skipped with one line naming the file and field;
text from a result is escaped; ✓ needs a passing verify.json of this result and model.

Results here are tiny hand-made documents, sealed like real ones, on the real task files."""

import json
import re

import pytest
from click.testing import CliRunner

from numbench.cli import main
from numbench.errors import NumbenchError
from numbench.evaluate import Settings
from numbench.leaderboard import render_html, render_markdown
from numbench.protocol import PROTOCOL_DIGEST, PROTOCOL_VERSION
from numbench.results import load_result, seal, write_json_atomic
from numbench.scores import result_summary
from numbench.submissions import collect
from numbench.tasks import load_task


def cell(variable, alignment, test_iia, control=None):
    """One ranked-k, single-mode fit of up_down at its only site."""
    key = f"up_down/{variable}/{alignment}/k2/h/single" + (f"/{control}" if control else "")
    return {"key": key, "program": "up_down", "variable": variable, "alignment": alignment,
            "k": 2, "site": "h", "site_index": 0, "mode": "single", "control": control,
            "ranked_k": True, "valid_iia": test_iia, "test_iia": test_iia, "steps": 10,
            "stop_reason": "plateau", "pairs": {}}


def hand_made_result(arch="gru", test_iia=0.75, task=None, pairs=None) -> dict:
    """A sealed, ranked, current-protocol result of up_down on ``task`` (multi_object)
    that records ``pairs`` (none); symbol score = test_iia."""
    task = task or load_task("multi_object")
    cells = [cell(var, align, test_iia) for var in ("count", "phase")
             for align in ("orthogonal", "linear")]
    cells += [cell(var, "orthogonal", 0.25, control="permuted") for var in ("count", "phase")]
    doc = {
        "schema_version": 1, "kind": "numbench-result", "ranked": True,
        "versions": {"numbench": "test", "protocol": PROTOCOL_VERSION,
                     "protocol_sha256": PROTOCOL_DIGEST},
        "settings": Settings().to_json(),
        "task": {"name": task.name, "version": task.version, "split_sha256": task.split_hashes},
        "model": {"file": "tiny.pt", "sha256": "ab" * 32, "arch": arch, "parameters": 123},
        "task_accuracy": {"iid": 1.0, "holdout": 0.9}, "gate": {"passed": True}, "pairs": pairs or {},
        "cells": cells,
        "no_interchange": {"up_down": {v: {"valid": 0.1, "test": 0.1} for v in ("count", "phase")}},
        "wall_seconds": {},
    }
    doc["summary"] = result_summary(doc)
    return seal(doc)


def write(root, name, doc):
    path = root / name / "result.json"
    write_json_atomic(path, doc)
    return path


def _set(doc, dotted, value):
    """doc["a"]["b"][0]["c"] = value for dotted "a.b.0.c"."""
    *parents, last = dotted.split(".")
    for key in parents:
        doc = doc[int(key)] if isinstance(doc, list) else doc[key]
    doc[last] = value


def overall_rows(text: str) -> list[str]:
    return [line for line in text.split("## Overall")[1].split("##")[0].splitlines()
            if line.startswith("|")][2:]


def test_the_hand_made_result_is_admitted_and_ranked(tmp_path):
    write(tmp_path, "honest", hand_made_result())
    subs, problems = collect(tmp_path)
    assert not problems and subs[0].ranked and subs[0].summary["symbol_score"] == 0.75


@pytest.mark.parametrize("field, value, why", [
    ("symbol_score", float("nan"), "must be a finite number, not NaN"),
    ("symbol_score", float("inf"), "must be a finite number, not Infinity"),
    ("symbol_score", 5.0, "is 5.0, but the cells give 0.75"),
    ("symbol_score", "0.75", 'must be a number, not "0.75"'),
    ("programs.up_down.variables.count.orthogonal.selectivity", 0.99, "but the cells give 0.5"),
])
def test_a_summary_the_cells_do_not_give_is_skipped_naming_file_and_field(tmp_path, field, value, why):
    bad = hand_made_result()
    _set(bad, f"summary.{field}", value)
    write(tmp_path, "honest", hand_made_result())
    write(tmp_path, "bad", seal(bad))  # sealed again: the seal alone cannot catch it
    subs, problems = collect(tmp_path)
    assert [s.name for s in subs] == ["honest"]
    [(path, message)] = problems
    assert path.parent.name == "bad" and "\n" not in message
    assert "bad/result.json" in message and f"field 'summary.{field}'" in message and why in message


def test_the_board_is_still_written_and_the_command_succeeds_with_a_skipped_result(tmp_path, monkeypatch):
    bad = hand_made_result()
    bad["summary"]["symbol_score"] = float("nan")
    write(tmp_path / "submissions", "bad", seal(bad))
    write(tmp_path / "submissions", "honest", hand_made_result())
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["leaderboard", "--out", "board.md"])
    assert res.exit_code == 0, res.output  # the board was built; skipped files are reported
    said = " ".join(res.stderr.split())  # rich wraps long lines on stderr
    assert "skipped submissions/bad/result.json: field 'summary.symbol_score'" in said
    text = (tmp_path / "board.md").read_text()
    assert [row.split("|")[2].strip() for row in overall_rows(text)] == ["honest"]
    assert "submissions/bad/result.json" in text.split("## Skipped files")[1]


MALFORMED = {  # what is wrong → the field the one-line message names
    "versions.protocol": lambda d: d.update(versions={}),
    "model.arch": lambda d: d["model"].pop("arch"),
    "model.file": lambda d: _set(d, "model.file", 5),
    "model.parameters": lambda d: _set(d, "model.parameters", "123"),
    "summary.symbol_score": lambda d: _set(d, "summary.symbol_score", "0.75"),
    "cells[0].site_index": lambda d: _set(d, "cells.0.site_index", "0"),
    "cells[0].ranked_k": lambda d: d["cells"][0].pop("ranked_k"),
    "no_interchange.up_down.count.test": lambda d: _set(d, "no_interchange.up_down.count.test",
                                                        float("nan")),
    "task.name": lambda d: _set(d, "task.name", "submissions/mine/task.json"),
}


@pytest.mark.parametrize("field", MALFORMED)
def test_a_malformed_result_is_skipped_with_one_line_not_a_traceback(tmp_path, field):
    bad = hand_made_result()
    MALFORMED[field](bad)
    write(tmp_path, "bad", seal(bad))
    write(tmp_path, "honest", hand_made_result())
    subs, problems = collect(tmp_path)
    assert [s.name for s in subs] == ["honest"]
    [(_, message)] = problems
    assert "bad/result.json" in message and f"field '{field}'" in message and "\n" not in message
    assert "bad/result.json" in render_markdown(subs, problems)


def test_compare_on_a_named_malformed_result_says_one_line(tmp_path):
    bad = hand_made_result()
    del bad["model"]["arch"]
    path = write(tmp_path, "bad", seal(bad))
    res = CliRunner().invoke(main, ["compare", str(path)])
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "field 'model.arch'" in " ".join(res.output.split())


def test_unreplayable_settings_make_a_result_unranked_not_a_crash(tmp_path):
    doc = hand_made_result()
    doc["settings"]["engine"] = "ab"  # dict("ab") raises ValueError
    write(tmp_path, "odd", seal(doc))
    subs, _ = collect(tmp_path)
    assert not subs[0].ranked and overall_rows(render_markdown(subs, [])) == []


def test_a_duplicate_key_is_refused_naming_file_and_key(tmp_path):
    honest = hand_made_result()
    text = json.dumps(honest, indent=1)
    assert text.count('"symbol_score": 0.75') == 1
    text = text.replace('"symbol_score": 0.75', '"symbol_score": 0.99, "symbol_score": 0.75')
    assert json.loads(text) == honest  # json keeps the last value: the seal still holds
    path = tmp_path / "dup" / "result.json"
    path.parent.mkdir()
    path.write_text(text)
    with pytest.raises(NumbenchError, match=r"dup/result\.json: duplicate key 'symbol_score'"):
        load_result(path)
    subs, problems = collect(tmp_path)
    assert not subs and "duplicate key 'symbol_score'" in problems[0][1]


EVIL = "<img src=x onerror=alert(1)> | x |\n`code` & \\"


def test_text_from_a_result_is_escaped_in_the_markdown_board(tmp_path):
    write(tmp_path, "m<b>|x", hand_made_result(arch=EVIL))
    (tmp_path / "dup").mkdir()
    (tmp_path / "dup" / "result.json").write_text('{"<script>a</script>": 1, "<script>a</script>": 2}')
    subs, problems = collect(tmp_path)
    text = render_markdown(subs, problems)
    assert "<img" not in text and "<b>" not in text and "<script>" not in text
    assert r"&lt;img src=x onerror=alert(1)&gt; \| x \| \`code\` &amp; \\" in text
    assert r"m&lt;b&gt;\|x" in text and "&lt;script&gt;" in text
    for table in re.findall(r"(?:^\|.*\n)+", text, flags=re.M):
        columns = {len(re.findall(r"(?<!\\)\|", line)) for line in table.splitlines()}
        assert len(columns) == 1, table  # no cell breaks its row into more columns


def test_text_from_a_result_is_escaped_in_the_html_page(tmp_path):
    write(tmp_path, "m<b>|x", hand_made_result(arch=EVIL))
    subs, problems = collect(tmp_path)
    page = render_html(subs, problems, plots={})
    assert "<img" not in page and "<b>" not in page
    assert "&lt;img src=x onerror=alert(1)&gt; | x |" in page and "m&lt;b&gt;|x" in page


def _record(doc, **changes):
    return json.dumps({"passed": True, "result_digest": doc["digest"],
                       "model_sha256": doc["model"]["sha256"]} | changes)


@pytest.mark.parametrize("record, shown", [
    (lambda d: _record(d), True),
    (lambda d: _record(d, result_digest="0" * 64), False),
    (lambda d: _record(d, model_sha256="0" * 64), False),
    (lambda d: _record(d, passed="true"), False),
    (lambda d: _record(d, passed=False), False),
    # json alone would keep the last value; a duplicate key is refused
    (lambda d: _record(d).replace('"passed": true', '"passed": false, "passed": true'), False),
])
def test_the_verified_mark_is_bound_to_this_result_and_model(tmp_path, record, shown):
    doc = hand_made_result()
    path = write(tmp_path, "m", doc)
    path.with_name("verify.json").write_text(record(doc))
    subs, problems = collect(tmp_path)
    [row] = overall_rows(render_markdown(subs, problems))
    assert ("✓" in row) is shown and subs[0].verified is shown


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "too-big", "too-deep", "huge-int"])
def test_a_result_that_is_no_regular_small_json_file_is_refused_in_one_line(tmp_path, kind,
                                                                            monkeypatch):
    """A FIFO would hang a reader, /dev/zero fill its memory, deep nesting overflow its stack."""
    import os

    import numbench.results as results

    path = tmp_path / "m" / "result.json"
    path.parent.mkdir()
    if kind == "fifo":
        os.mkfifo(path)
        phrase = "not a regular file"
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
        phrase = "not a regular file"
    elif kind == "too-big":
        monkeypatch.setattr(results, "MAX_JSON_BYTES", 100)
        path.write_text(json.dumps(hand_made_result()))
        phrase = "more than the 100"
    elif kind == "too-deep":
        path.write_text("[" * 200_000 + "]" * 200_000)
        phrase = "nested too deep"
    else:  # Python refuses to parse an int of more than 4300 digits (a ValueError)
        path.write_text(json.dumps(hand_made_result()).replace('"parameters": 123',
                                                              '"parameters": ' + "1" * 5000))
        phrase = "not valid JSON"
    with pytest.raises(NumbenchError, match=phrase) as info:
        load_result(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    subs, problems = collect(tmp_path)  # the board skips it and goes on
    assert not subs and phrase.split()[0] in problems[0][1]


def test_a_folder_whose_name_is_not_utf8_is_skipped_and_the_board_written(tmp_path):
    import os

    write(tmp_path, "honest", hand_made_result())
    bad = os.path.join(os.fsencode(tmp_path), b"caf\xe9")  # Latin-1, not UTF-8
    os.mkdir(bad)
    write_json_atomic(os.path.join(os.fsdecode(bad), "result.json"), hand_made_result())
    board = tmp_path / "board.md"
    res = CliRunner().invoke(main, ["leaderboard", "--submissions", str(tmp_path), "--out",
                                    str(board), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [r["model"] for r in doc["rows"]] == ["honest"]
    assert "folder name is not valid UTF-8" in doc["skipped"][0]["problem"]
    assert "caf\ufffd" in board.read_text(encoding="utf-8")
