"""The published result schema (numbench/schemas/result.schema.json): every committed result
satisfies it, its keys are the documented ones, and a bad document gets one line naming the
field at fault."""

import copy
import json
import re
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from numbench.errors import NumbenchError
from numbench.results import result_schema_validator, validate_result

ROOT = Path(__file__).resolve().parents[1]
RESULTS = sorted((ROOT / "submissions").glob("*/result.json"))
DOC = (ROOT / "docs" / "result-schema.md").read_text(encoding="utf-8")


def table_first_column(heading: str | None) -> list[list[str]]:
    """The backticked names in the first column of each row of the first table after
    ``heading`` (None: the document's first table)."""
    text = DOC if heading is None else DOC.split(heading, 1)[1]
    rows = re.search(r"^\|.*\|\n\|[-| ]+\|\n((?:\|.*\|\n)+)", text, re.M).group(1)
    return [re.findall(r"`([^`]+)`", row.split("|")[1]) for row in rows.splitlines()]


def head(name: str) -> str:
    """"settings.engine" → "settings"; "pairs.{train,valid,test}" → "pairs"."""
    return name.split(".")[0]


def test_the_schema_is_valid_draft_2020_12():
    schema = result_schema_validator().schema
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_there_are_committed_results_to_check():
    from numbench.protocol import PROTOCOL_VERSION

    protocols = {json.loads(p.read_text())["versions"]["protocol"] for p in RESULTS}
    assert len(RESULTS) >= 14 and PROTOCOL_VERSION in protocols


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: p.parent.name)
def test_every_committed_result_satisfies_the_schema(path):
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert list(result_schema_validator().iter_errors(doc)) == []
    validate_result(doc, path)


def test_the_schema_keys_are_the_documented_keys():
    schema = result_schema_validator().schema
    # top table: a row's later names continue its first one (`model.arch`, `config`, ...)
    top = {head(names[0]) for names in table_first_column(None)}
    assert set(schema["properties"]) == top
    assert set(schema["required"]) == top - {"no_interchange"}  # absent in protocol 1
    # cell table: every name is a cell key (`program`, `variable`, ...)
    cell = {head(n) for names in table_first_column("## A cell") for n in names}
    assert set(schema["$defs"]["cell"]["properties"]) == cell


@pytest.fixture(scope="module")
def good() -> dict:
    """A committed protocol-2 result (it has ``no_interchange``)."""
    for path in RESULTS:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if "no_interchange" in doc:
            return doc
    pytest.skip("no committed protocol-2 result")


def _pop(key):
    return lambda d: d.pop(key)


BAD = [  # (what is wrong, the field the line names, what it says)
    (_pop("gate"), "gate", "missing field"),
    (lambda d: d["cells"][3].pop("stop_reason"), "cells[3].stop_reason", "missing field"),
    (lambda d: d["model"].update(parameters="123"), "model.parameters", 'must be int, not "123"'),
    (lambda d: d.update(ranked="yes"), "ranked", 'must be bool, not "yes"'),
    (lambda d: d["cells"][3].update(test_iia=1.5), "cells[3].test_iia", "must be a number in [0, 1]"),
    (lambda d: d["task_accuracy"].update(iid=-0.1), "task_accuracy.iid", "must be a number in [0, 1]"),
    (lambda d: d["cells"][3].update(valid_iia=float("nan")), "cells[3].valid_iia",
     "must be a number in [0, 1]"),  # the schema lets NaN through; the hand-written check does not
    (lambda d: d.update(comment="hi"), "comment", "unknown field"),
    (lambda d: d["cells"][0].update(note=1), "cells[0].note", "unknown field"),
    (lambda d: d["cells"][0].update(control="shuffled"), "cells[0].control", 'not "shuffled"'),
    (lambda d: d.update(schema_version=2), "schema_version", "must be 1, not 2"),
    (lambda d: d.update(digest="x"), "digest", "must match"),
]


@pytest.mark.parametrize("edit, field, why", BAD, ids=[b[1] + ":" + b[2][:12] for b in BAD])
def test_a_bad_document_gets_one_line_naming_the_field(good, edit, field, why):
    bad = copy.deepcopy(good)
    edit(bad)
    with pytest.raises(NumbenchError) as caught:
        validate_result(bad, "r.json")
    message = str(caught.value)
    assert "\n" not in message and caught.value.field == field
    assert message.startswith(f"r.json: field '{field}': ") and why in message
