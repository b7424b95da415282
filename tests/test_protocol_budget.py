"""The budget study's comparison (benchmarks/protocol_budget.py) on a committed result:
what it reports as the largest ranked drop and gain, control rise and fall."""

import copy
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("protocol_budget",
                                                  ROOT / "benchmarks" / "protocol_budget.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def result():
    return json.loads((ROOT / "submissions" / "gru_multi_object_s0" / "result.json").read_text())


def _cell(result, *, control, alignment="linear"):
    return next(c for c in result["cells"] if c["control"] == control and c["alignment"] == alignment
                and c["mode"] == "single" and c["ranked_k"])


def test_a_result_against_itself_moves_nothing(study, result):
    cmp = study.compare(result, study.as_reference(result))
    assert cmp["ratio"] == 1.0
    assert cmp["drop"][0] == cmp["gain"][0] == cmp["rise"][0] == cmp["fall"][0] == 0.0


def test_the_largest_changes_are_found_with_their_cells(study, result):
    reference = study.as_reference(result)
    moved = copy.deepcopy(result)
    fit, permuted = _cell(moved, control=None), _cell(moved, control="permuted")
    other = _cell(moved, control=None, alignment="orthogonal")
    fit["test_iia"] -= 0.05
    other["test_iia"] += 0.03
    permuted["test_iia"] += 0.04
    random_init = _cell(moved, control="random_init")
    random_init["test_iia"] -= 0.02
    cmp = study.compare(moved, reference)
    assert cmp["drop"] == (pytest.approx(0.05), fit["key"])
    assert cmp["gain"] == (pytest.approx(0.03), other["key"])
    assert cmp["rise"] == (pytest.approx(0.04), permuted["key"])
    assert cmp["fall"] == (pytest.approx(0.02), random_init["key"])


def test_extra_methods_are_left_out_of_the_steps(study, result):
    extra = {a["name"] for a in result["settings"]["alignments"]}
    assert extra, "the reference GRU's committed result trains extra methods"
    own = sum(c["steps"] for c in result["cells"] if c["alignment"] not in extra)
    assert study.as_reference(result)["steps"] == own < sum(c["steps"] for c in result["cells"])
