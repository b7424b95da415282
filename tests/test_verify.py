"""numbench verify re-runs a recorded evaluation: passes on an honest result, names the
field of an edited one (sealed again or not), refuses another model."""

import json
import shutil

import pytest
from click.testing import CliRunner

from numbench.cli import main
from numbench.results import seal, write_json_atomic
from numbench.submissions import collect
from numbench.verify import diff


def test_verify_passes_on_an_honest_result_and_the_board_marks_it(submitted_result, tiny_model_file):
    res = CliRunner().invoke(main, ["verify", str(submitted_result), str(tiny_model_file)])
    assert res.exit_code == 0, res.output
    assert "verified" in res.output
    # off a terminal the replay says what it does, as evaluate does
    assert "fidelity gate" in res.stderr and "fits training · best valid IIA" in res.stderr
    record = json.loads(submitted_result.with_name("verify.json").read_text())
    assert record["passed"] and record["result_digest"] == json.loads(submitted_result.read_text())["digest"]
    subs, _ = collect(submitted_result.parent.parent)
    assert subs[0].verified


def test_verify_names_an_edited_number_even_when_resealed(submitted_result, tiny_model_file):
    doc = json.loads(submitted_result.read_text())
    cell = doc["cells"][3]
    cell["test_iia"] = round(1.0 - cell["test_iia"], 6) or 0.5
    write_json_atomic(submitted_result, seal(doc))
    res = CliRunner().invoke(main, ["verify", str(submitted_result), str(tiny_model_file)])
    assert res.exit_code == 1
    assert f"cells[{cell['key']}].test_iia" in res.output
    assert not json.loads(submitted_result.with_name("verify.json").read_text())["passed"]
    subs, problems = collect(submitted_result.parent.parent)  # its summary no longer holds
    assert not subs and "field 'summary." in problems[0][1]


def test_verify_reports_a_broken_seal_and_the_edited_field(submitted_result, tiny_model_file):
    doc = json.loads(submitted_result.read_text())
    doc["task_accuracy"]["iid"] = 0.0 if doc["task_accuracy"]["iid"] else 1.0
    submitted_result.write_text(json.dumps(doc))  # edited by hand, digest left as it was
    res = CliRunner().invoke(main, ["verify", str(submitted_result), str(tiny_model_file), "--json"])
    assert res.exit_code == 1
    fields = {m["field"] for m in json.loads(res.stdout)["mismatch_list"]}
    assert {"digest", "task_accuracy.iid"} <= fields


def test_verify_refuses_another_model_file(submitted_result, tiny_model_file, tmp_path):
    other = tmp_path / "other.pt"
    shutil.copy(tiny_model_file, other)
    with open(other, "ab") as f:
        f.write(b"\0")
    res = CliRunner().invoke(main, ["verify", str(submitted_result), str(other)])
    assert res.exit_code == 1 and "model.sha256" in res.output


def test_diff_matches_cells_by_key_and_ignores_run_facts():
    a = {"cells": [{"key": "x", "test_iia": 0.5}, {"key": "y", "test_iia": 0.25}],
         "wall_seconds": {"total": 1.0}, "versions": {"python": "3.11", "protocol": "1"}}
    b = {"cells": [{"key": "y", "test_iia": 0.25}, {"key": "x", "test_iia": 0.75}],
         "wall_seconds": {"total": 9.0}, "versions": {"python": "3.12", "protocol": "1"}}
    assert [m.field for m in diff(a, b)] == ["cells[x].test_iia"]
    assert diff(a, a) == []


@pytest.mark.slow
def test_verify_passes_on_a_committed_baseline_result(tmp_path):
    """A committed quick result of a shipped baseline reproduces exactly (a few minutes)."""
    import pathlib

    root = pathlib.Path(__file__).resolve().parent.parent
    committed = root / "submissions" / "lstm_multi_object_s0_quick" / "result.json"
    if not committed.exists():
        pytest.skip("no committed quick result of lstm_multi_object_s0")
    copy = tmp_path / "gru" / "result.json"
    copy.parent.mkdir()
    shutil.copy(committed, copy)
    res = CliRunner().invoke(main, ["verify", str(copy), str(root / "baselines" / "lstm_multi_object_s0.pt")])
    assert res.exit_code == 0, res.output


@pytest.mark.integration  # a whole replay
def test_a_result_records_its_cpu_and_verify_names_another_cpu_kind(submitted_result, tiny_model_file):
    """A mismatch on a result computed on another CPU kind carries a note saying so (its
    kernels round differently); the same mismatch on this CPU carries none."""
    from numbench.machine import cpu_description

    doc = json.loads(submitted_result.read_text())
    assert doc["versions"]["cpu"] == cpu_description()
    cell = doc["cells"][3]
    cell["test_iia"] = round(1.0 - cell["test_iia"], 6) or 0.5
    write_json_atomic(submitted_result, seal(doc))
    res = CliRunner().invoke(main, ["verify", str(submitted_result), str(tiny_model_file)])
    assert res.exit_code == 1 and "note" not in res.output
    assert "note" not in json.loads(submitted_result.with_name("verify.json").read_text())

    doc["versions"]["cpu"] = "Some Other CPU (AVX2, no bf16 dot products)"
    write_json_atomic(submitted_result, seal(doc))
    res = CliRunner().invoke(main, ["verify", str(submitted_result), str(tiny_model_file)])
    assert res.exit_code == 1 and f"cells[{cell['key']}].test_iia" in res.output
    assert "Some Other CPU" in res.output and "CPU kinds" in res.output
    record = json.loads(submitted_result.with_name("verify.json").read_text())
    assert record["cpu_recorded"].startswith("Some Other CPU") and record["cpu"] == cpu_description()
    assert "re-run on" in record["note"]


def test_verify_warns_before_replaying_bf16_products_on_a_cpu_without_them(submitted_result,
                                                                           monkeypatch):
    """A result trained with bf16 products replays ~30x slower where torch emulates them:
    verify says so before it starts, and only then."""
    from numbench import verify as verify_module

    doc = json.loads(submitted_result.read_text())
    for precision, has_bf16, warned in (("bf16", False, True), ("bf16", True, False),
                                        ("fp32", False, False)):
        doc["settings"]["engine"]["train_precision"] = precision
        write_json_atomic(submitted_result, seal(doc))
        monkeypatch.setattr(verify_module, "bf16_products", lambda: has_bf16)
        note = verify_module.slow_replay_note(submitted_result)
        assert (note is not None) == warned
        if warned:
            assert "emulates" in note and "bf16" in note
    assert verify_module.slow_replay_note(submitted_result.with_name("missing.json")) is None
