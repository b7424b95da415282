"""Symbolic programs: post-token semantics, and they reproduce the predictable tokens."""

import numpy as np
import pytest

from numbench.programs import DEMO, RESPOND, get_program
from numbench.sequences import generate
from numbench.tasks import list_tasks

KIND = {"T": "trigger_id", "R": "response_id", "E": "end_id"}


@pytest.mark.parametrize("task", list_tasks(), ids=lambda t: t.name)
@pytest.mark.parametrize("program", ["up_down", "up_up"])
def test_program_reproduces_every_predictable_token(task, program):
    prog = get_program(program)
    batch = generate(task, 200, seed=3, counts=task.all_counts)
    for b, row in enumerate(batch.rows()):
        states = prog.trace(task, row)
        for t in range(len(row) - 1):
            kind = prog.next_kind(task, int(batch.counts[b]), states[t])
            if batch.scored[b, t]:  # respond phase: the next token is determined
                assert row[t + 1] == getattr(task, KIND[kind])
            else:
                assert states[t]["phase"] == DEMO


def test_up_down_states_by_hand(multi):
    prog = get_program("up_down")
    # B D0 D1 T R R E with N = 2
    ids = [multi.token_id(x) for x in "B D0 D1 T R R E".split()]
    got = [(s["count"], s["phase"]) for s in prog.trace(multi, ids)]
    assert got == [(0, DEMO), (1, DEMO), (2, DEMO), (2, RESPOND), (1, RESPOND), (0, RESPOND),
                   (0, RESPOND)]


def test_up_up_states_by_hand_with_mod4():
    from numbench.tasks import load_task

    task = load_task("multi_object_mod4")
    prog = get_program("up_up")
    ids = [task.token_id(x) for x in "B D0 D1 D2 D0 D1 T R E".split()]  # N = 5, f = 1
    got = [(s["demo_count"], s["resp_count"], s["phase"]) for s in prog.trace(task, ids)]
    assert got[-3:] == [(5, 0, RESPOND), (5, 1, RESPOND), (5, 1, RESPOND)]
    assert prog.next_kind(task, 5, got and prog.trace(task, ids)[-2]) == "E"


def test_up_down_applies_f_at_trigger():
    from numbench.tasks import load_task

    task = load_task("multi_object_round3")
    prog = get_program("up_down")
    ids = [task.token_id(x) for x in "B D0 D1 D2 D0 T".split()]  # N = 4 -> 3
    assert prog.trace(task, ids)[-1] == {"count": 3, "phase": RESPOND}


def test_variable_sets():
    assert get_program("up_down").variable_set("full") == ("count", "phase")
    assert get_program("up_up").variable_set("full") == ("demo_count", "resp_count", "phase")
    with pytest.raises(Exception, match="no variable 'count'"):
        get_program("up_up").variable_set("count")


def test_generate_counts_from_demo_state(multi):
    prog = get_program("up_down")
    toks, states = prog.generate(multi, 3, {"count": 1, "phase": DEMO}, np.random.default_rng(0))
    names = [multi.vocabulary[t] for t in toks]
    assert [n.startswith("D") for n in names[:2]] == [True, True]
    assert names[2:] == ["T", "R", "R", "R", "E"]
    assert len(states) == len(toks)


@pytest.mark.parametrize("task", list_tasks(), ids=lambda t: t.name)
@pytest.mark.parametrize("program", ["up_down", "up_up"])
def test_emissions_count_what_generate_emits(task, program):
    """From any state, even one no sequence reaches (an interchange can write any value),
    ``emissions`` gives the demo tokens and responses ``generate`` emits before E."""
    prog = get_program(program)
    top = task.max_count_value + 2
    grids = {"phase": (DEMO, RESPOND)} | {v: range(top) for v in prog.variables if v != "phase"}
    states = [{}]
    for var, values in grids.items():
        states = [dict(s, **{var: x}) for s in states for x in values]
    for n in (1, 7, max(task.all_counts)):
        for state in states:
            toks, _ = prog.generate(task, n, state, np.random.default_rng(0))
            t = toks.index(task.trigger_id) if task.trigger_id in toks else -1  # demos before T
            assert (t >= 0) == (state["phase"] == DEMO)
            assert prog.emissions(task, n, state) == (max(t, 0), len(toks) - t - 2), (n, state)
