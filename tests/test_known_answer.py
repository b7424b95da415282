"""Known answers: hand-wired models (tests/known_answer.py) whose true alignment is known,
trained under the protocol's own budget and its --quick budget.

* count along a direction orthogonal to everything else: orthogonal and linear both align
  it (≥ 0.99 under the budget, ≥ 0.95 under --quick);
* count at 45° to the phase: only an oblique projection moves it without the phase, so
  linear aligns it (≥ 0.95, ≥ 0.9 under --quick) and orthogonal stays clearly lower;
* the same architecture freshly initialised (the random-init control) aligns nothing.
"""

import pytest
import torch

import known_answer
from numbench.accuracy import split_accuracies
from numbench.engine import Engine, FitSpec, run
from numbench.evaluate import Settings, _Pairs
from numbench.models import build_model
from numbench.protocol import ranked_k


def counter(task, encoding: str, wired: bool = True, seed: int = 0):
    torch.manual_seed(seed)  # random parameters first, as the random-init control has them
    model = build_model("counter", {"encoding": encoding}, task.vocabulary).eval()
    return known_answer.hand_wire(model) if wired else model


def count_iia(model, task, quick: bool) -> dict[str, float]:
    """Test IIA of Up-Down's count under each ranked alignment, one process."""
    engine = Settings.make(quick=quick, engine={"workers": 1}).engine
    _, tensors = _Pairs(task).triplet("up_down", "count")
    k = ranked_k(model.sites["hidden"])
    specs = [FitSpec(f"count/{a}", a, k, *tensors, seed=11) for a in ("orthogonal", "linear")]
    results = run(Engine(model, "hidden", "single", engine), specs)
    return {r.alignment: r.test_iia for r in results}


@pytest.mark.parametrize("encoding", known_answer.ENCODINGS)
def test_hand_wired_models_run_the_up_down_program(multi, encoding):
    assert split_accuracies(counter(multi, encoding), multi) == {"iid": 1.0, "holdout": 1.0, "void": 1.0}
    assert split_accuracies(counter(multi, encoding, wired=False), multi)["iid"] < 0.1


@pytest.mark.parametrize("quick", [False, True], ids=["protocol", "quick"])
def test_an_orthogonal_encoding_is_found_by_both_families(multi, quick):
    iia = count_iia(counter(multi, "orthogonal"), multi, quick)
    floor = 0.95 if quick else 0.99
    assert iia["orthogonal"] >= floor and iia["linear"] >= floor, iia


@pytest.mark.parametrize("quick", [False, True], ids=["protocol", "quick"])
def test_an_oblique_encoding_is_found_by_linear_only(multi, quick):
    iia = count_iia(counter(multi, "oblique"), multi, quick)
    assert iia["linear"] >= (0.9 if quick else 0.95), iia
    assert iia["orthogonal"] <= iia["linear"] - 0.1, iia


def test_the_random_init_control_of_a_hand_wired_model_stays_low(multi):
    iia = count_iia(counter(multi, "orthogonal", wired=False, seed=7919), multi, quick=True)
    assert max(iia.values()) <= 0.1, iia


def test_the_no_interchange_baseline_is_the_plain_model_on_the_counterfactual_inputs(multi):
    """Against a per-sequence loop: the hand-wired model run on each counterfactual, right
    at every scored position. Not vacuous: doing nothing gets some phase pairs right."""
    from numbench.evaluate import no_interchange_iia

    model = counter(multi, "orthogonal")
    pairs = _Pairs(multi)
    got = no_interchange_iia(model, pairs, {"up_down": ("count", "phase")})["up_down"]
    for var in ("count", "phase"):
        cf = pairs.get("up_down", var, "test", "single", False)[0].counterfactual
        right = []
        for ids, scored in zip(cf.ids, cf.scored):
            logits = model.run(torch.from_numpy(ids)[None])[0]
            right.append(all(int(logits[t].argmax()) == int(ids[t + 1])
                             for t in range(len(ids) - 1) if scored[t]))
        assert got[var]["test"] == sum(right) / len(right)
    assert got["count"]["test"] < got["phase"]["test"] and 0.2 < got["phase"]["test"] < 1.0
