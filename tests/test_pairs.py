"""Interchange pairs and counterfactuals (PROTOCOL §3), the permuted control (§6)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from numbench.pairs import counterfactual, make_pairs, permutations_for, read_lock
from numbench.programs import DEMO, RESPOND, get_program
from numbench.tasks import load_task


def ids(task, text):
    return [task.token_id(x) for x in text.split()]


BASE = "B D0 D2 D2 D2 D2 D0 T R R R R R R E"  # N = 6


def test_hand_checked_full_swap_into_respond_phase(multi):
    # Base position 9 is the second R: up_down has count = 4, phase = respond there.
    # Overwrite both variables with the source's (phase = demo, count = 2): the program is
    # back in the demo phase with 2 of N = 6 demo tokens seen, so it emits 4 demo tokens,
    # then T (count = f(6) = 6), six responses, E.
    base = ids(multi, BASE)
    assert get_program("up_down").trace(multi, base)[9] == {"count": 4, "phase": RESPOND}
    toks, scored = counterfactual(multi, get_program("up_down"), ("count", "phase"), base, 6, 9,
                                  {"count": 2, "phase": DEMO}, np.random.default_rng(0))
    cont = [multi.vocabulary[t] for t in toks[10:]]
    assert toks[:10] == base[:10]
    assert all(tok in ("D0", "D1", "D2") for tok in cont[:4])
    assert cont[4:] == ["T"] + ["R"] * 6 + ["E"]
    # Scored: predictions at the base's T and R inputs before the swap (positions 7, 8), none
    # at the swap (the program is in the demo phase after it) nor on the new demo tokens;
    # then the new T and each response (predicting R... and E).
    assert [t for t, s in enumerate(scored) if s] == [7, 8] + list(range(14, 21))


def test_hand_checked_count_swap_in_demo_phase(multi):
    # Base position 3 is the third demo token: count = 3, phase = demo. Writing count = 9
    # (>= N = 6) leaves no demo tokens to emit: T, then f(9) = 9 responses, then E.
    base = ids(multi, BASE)
    toks, scored = counterfactual(multi, get_program("up_down"), ("count",), base, 6, 3,
                                  {"count": 9, "phase": DEMO}, np.random.default_rng(0))
    assert [multi.vocabulary[t] for t in toks[4:]] == ["T"] + ["R"] * 9 + ["E"]
    assert [t for t, s in enumerate(scored) if s] == list(range(4, 14))


def test_identity_swap_reproduces_base_and_its_scored_mask(multi):
    base = ids(multi, BASE)
    prog = get_program("up_up")
    for i in range(1, len(base) - 1):
        state = prog.trace(multi, base)[i]
        toks, scored = counterfactual(multi, prog, prog.variables, base, 6, i, state,
                                      np.random.default_rng(0))
        assert toks[i + 1:] == base[i + 1:] or i < 7  # demo tokens are redrawn before T
        assert len(toks) == len(base)
        assert [t for t, s in enumerate(scored) if s] == list(range(7, 14))


def up_down_oracle(task, n, i_state):
    """Closed form of what up_down emits after the swap: (#demo tokens, #responses)."""
    c, phase = i_state
    if phase == RESPOND:
        return 0, max(c, 0)
    if c >= n:
        return 0, task.f(c)
    return n - c, task.f(n)


@pytest.mark.parametrize("variable", ["count", "phase", "full"])
@pytest.mark.parametrize("task_name", ["multi_object", "same_object", "multi_object_mod4"])
def test_pairs_against_closed_form_oracle(task_name, variable):
    task = load_task(task_name)
    p = make_pairs(task, "up_down", variable, "valid")
    bases, sources, cfs = p.base.rows(), p.source.rows(), p.counterfactual.rows()
    for b in range(len(p)):
        base, src = bases[b], sources[b]
        i, j = int(p.base_pos[b]), int(p.source_pos[b])
        allowed = set(task.demo_ids) | {task.response_id}
        assert base[i] in allowed and src[j] in allowed
        # up_down state after position t of a void-free sequence, in closed form
        def state(row, t, n):
            tp = row.index(task.trigger_id)
            return (t, DEMO) if t < tp else (task.f(n) - (t - tp), RESPOND)
        bs, ss = state(base, i, p.base.counts[b]), state(src, j, p.source.counts[b])
        new = {"count": (ss[0], bs[1]), "phase": (bs[0], ss[1]), "full": ss}[variable]
        # (a phase swap demo -> respond reads the demo count as responses left: f is
        # applied only when T is processed)
        demos, resps = up_down_oracle(task, int(p.base.counts[b]), new)
        cf = cfs[b]
        assert cf[: i + 1] == base[: i + 1]
        cont = cf[i + 1:]
        expect_tail = ([task.trigger_id] if new[1] == DEMO else []) + [task.response_id] * resps
        assert cont[demos:] == expect_tail + [task.end_id]
        assert all(t in task.demo_ids for t in cont[:demos])


def test_pair_sizes_counts_and_position_modes(multi):
    train = make_pairs(multi, "up_down", "count", "train")
    assert len(train) == 10_000
    assert not set(train.base.counts.tolist()) & set(multi.held_out_counts)
    assert not set(train.source.counts.tolist()) & set(multi.held_out_counts)
    test = make_pairs(multi, "up_down", "count", "test")
    assert len(test) == 1_000 and set(test.base.counts.tolist()) == set(multi.all_counts)
    prefix = make_pairs(multi, "up_down", "count", "test", mode="prefix")
    assert (prefix.base_pos == prefix.source_pos).all()
    assert (test.base_pos != test.source_pos).any()


def test_same_sequences_for_every_variable_set(multi):
    a = make_pairs(multi, "up_down", "count", "valid")
    b = make_pairs(multi, "up_up", "full", "valid")
    assert (a.base.ids == b.base.ids).all() and (a.source_pos == b.source_pos).all()
    assert a.sha256 != b.sha256


def test_permuted_control_applies_a_derangement(multi):
    plain = make_pairs(multi, "up_down", "count", "test")
    perm = make_pairs(multi, "up_down", "count", "test", permuted=True)
    pi = permutations_for(multi, get_program("up_down"))
    assert all(pi["count"][v] != v for v in range(21)) and sorted(pi["count"].values()) == list(range(21))
    assert pi["phase"] == {0: 1, 1: 0}
    assert [pi["count"][v] for v in plain.source_values[:, 0]] == perm.source_values[:, 0].tolist()
    assert (plain.base.ids == perm.base.ids).all()
    assert plain.sha256 != perm.sha256


def test_pairs_are_deterministic_across_processes(multi):
    here = make_pairs(multi, "up_up", "resp_count", "test").sha256
    code = ("from numbench.tasks import load_task; from numbench.pairs import make_pairs;"
            "print(make_pairs(load_task('multi_object'), 'up_up', 'resp_count', 'test').sha256)")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == here


def test_lock_file_records_standard_test_pairs(multi):
    lock = read_lock()
    p = make_pairs(multi, "up_down", "full", "test")
    assert lock[p.key] == p.sha256


def test_tampered_lock_is_a_loud_error(multi, tmp_path, monkeypatch):
    import shutil

    from numbench import pairs as pairs_mod
    from numbench.tasks import tasks_dir

    for f in [*tasks_dir().glob("*.json"), tasks_dir() / "pairs.lock"]:
        shutil.copy(f, tmp_path / f.name)
    key = make_pairs(multi, "up_down", "phase", "valid").key
    lock = json.loads((tmp_path / "pairs.lock").read_text())
    lock[key] = "0" * 64
    (tmp_path / "pairs.lock").write_text(json.dumps(lock))
    monkeypatch.setenv("NUMBENCH_TASKS_DIR", str(tmp_path))
    pairs_mod._make_pairs.cache_clear()
    with pytest.raises(Exception, match="does not match its recorded hash"):
        make_pairs(multi, "up_down", "phase", "valid")
    pairs_mod._make_pairs.cache_clear()


def _stepped_counterfactual(task, program, variables, base, n, i, source_state, rng):
    """The plain reference: trace the base through i, overwrite, step ``generate`` token by
    token; a position is scored when the state after it is in the respond phase."""
    states = program.trace(task, base[: i + 1])
    s = dict(states[i], **{v: source_state[v] for v in variables})
    cont, cont_states = program.generate(task, n, s, rng)
    phases = [st["phase"] for st in states[:i]] + [s["phase"]] + [st["phase"] for st in cont_states]
    tokens = list(base[: i + 1]) + cont
    return tokens, [ph == RESPOND for ph in phases[: len(tokens) - 1]] + [False]


@pytest.mark.parametrize("program", ["up_down", "up_up"])
def test_counterfactual_is_what_stepping_the_program_gives(multi, program):
    """``counterfactual`` counts the continuation (``Program.emissions``) instead of stepping
    through it: same tokens, same scored mask, same draws from the generator, for every
    interchanged value of every variable set at every position of a base."""
    prog = get_program(program)
    base = ids(multi, BASE)
    sets = [(v,) for v in prog.variables] + [prog.variables]
    checked = demos = 0
    for i in range(1, len(base) - 1):
        for variables in sets:
            for value in range(multi.max_count_value + 1):
                source = {v: (value % 2 if v == "phase" else value) for v in prog.variables}
                fast, slow = np.random.default_rng(i), np.random.default_rng(i)
                got = counterfactual(multi, prog, variables, base, 6, i, source, fast)
                want = _stepped_counterfactual(multi, prog, variables, base, 6, i, source, slow)
                assert got == want, (i, variables, source)
                assert fast.integers(1 << 30) == slow.integers(1 << 30)  # the same draws
                checked += 1
                demos += sum(t in multi.demo_ids for t in got[0][i + 1:])
    assert checked > 100 and demos > 100  # continuations with drawn demo tokens among them


@pytest.mark.slow
def test_every_locked_pair_set_regenerates():
    from numbench.pairs import standard_pair_keys
    from numbench.tasks import list_tasks

    lock = read_lock()
    for task in list_tasks():
        for program, variables, split, mode, permuted in standard_pair_keys(task):
            p = make_pairs(task, program, variables, split, mode=mode, permuted=permuted,
                           verify=False)
            assert lock[p.key] == p.sha256, p.key
