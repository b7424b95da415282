"""Task files: validation, frozen split hashes, one-line errors naming file and field."""

import json
import shutil

import pytest

from numbench.errors import NumbenchError
from numbench.tasks import list_tasks, load_task, read_task_file, tasks_dir

TASKS = ["multi_object", "single_object", "same_object", "multi_object_mod4",
         "multi_object_round3"]


def test_all_five_tasks_load_and_verify():
    assert [t.name for t in list_tasks()] == sorted(TASKS)
    for t in list_tasks():
        assert t.count_range == (1, 20)
        assert t.held_out_counts == (4, 9, 14, 17)
        assert "U" in t.vocabulary
        assert set(t.splits) == {"iid", "holdout", "void"}
        assert all(s.size == 1000 for s in t.splits.values())


def test_response_rules():
    assert [load_task("multi_object_mod4").f(n) for n in (1, 4, 7, 20)] == [1, 0, 3, 0]
    assert [load_task("multi_object_round3").f(n) for n in (1, 2, 4, 5, 20)] == [0, 3, 3, 6, 21]
    assert load_task("multi_object_round3").max_count_value == 21


@pytest.fixture
def task_copy(tmp_path):
    def copy(mutate):
        raw = json.loads((tasks_dir() / "multi_object.json").read_text())
        mutate(raw)
        path = tmp_path / "multi_object.json"
        path.write_text(json.dumps(raw))
        return path
    return copy


@pytest.mark.parametrize("mutate, field, message", [
    (lambda r: r.pop("vocabulary"), "vocabulary", "missing field"),
    (lambda r: r.update(colour="red"), "colour", "unknown field"),
    (lambda r: r.update(version="1"), "version", "integer"),
    (lambda r: r.update(count_range=[5, 2]), "count_range", "min <= max"),
    (lambda r: r.update(response_rule="cube"), "response_rule", "must be one of"),
    (lambda r: r["splits"]["iid"].update(void_p=1.5), "splits.iid.void_p", "probability"),
    (lambda r: r["splits"]["void"].pop("seed"), "splits.void.seed", "missing field"),
    (lambda r: r.update(demo_tokens=["D0", "Q"]), "demo_tokens", "'Q'"),
    (lambda r: r["vocabulary"].remove("U"), "vocabulary", "'U'"),
])
def test_bad_task_file_is_one_line_error_naming_file_and_field(task_copy, mutate, field,
                                                               message):
    path = task_copy(mutate)
    with pytest.raises(NumbenchError) as err:
        read_task_file(path)
    text = str(err.value)
    assert "\n" not in text
    assert str(path) in text and f"'{field}'" in text and message in text


def test_tampered_split_hash_fails_loudly(task_copy):
    path = task_copy(lambda r: r["splits"]["holdout"].update(sha256="ab" * 32))
    with pytest.raises(NumbenchError, match=r"splits\.holdout\.sha256.*does not match"):
        read_task_file(path)


def test_changing_what_a_task_generates_needs_new_hashes(task_copy):
    # Same version, different generator input: every split hash must now mismatch.
    path = task_copy(lambda r: r["splits"]["iid"].update(seed=r["splits"]["iid"]["seed"] + 1))
    with pytest.raises(NumbenchError, match=r"splits\.iid\.sha256"):
        read_task_file(path)
    path = task_copy(lambda r: r.update(response_rule="mod4"))
    with pytest.raises(NumbenchError, match=r"sha256.*new version"):
        read_task_file(path)


def test_invalid_json_and_missing_file(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    with pytest.raises(NumbenchError, match="not valid JSON"):
        read_task_file(bad)
    with pytest.raises(NumbenchError, match="unknown task 'nope'"):
        load_task("nope")


def test_tasks_dir_override(tmp_path, monkeypatch):
    shutil.copy(tasks_dir() / "single_object.json", tmp_path / "single_object.json")
    monkeypatch.setenv("NUMBENCH_TASKS_DIR", str(tmp_path))
    assert [t.name for t in list_tasks()] == ["single_object"]
