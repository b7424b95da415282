"""Sequence grammar (PROTOCOL §1) for every task and split, and for training data."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numbench.sequences import generate
from numbench.tasks import list_tasks, load_task

TASKS = [t.name for t in list_tasks()]


def check_grammar(task, batch, void_allowed: bool):
    """B (U|demo)* T r^f(N) E P*, exactly N demo tokens, scored = [pos T, pos E)."""
    demo = set(task.demo_ids)
    for b, row in enumerate(batch.rows()):
        n = int(batch.counts[b])
        assert row[0] == task.begin_id
        t_pos = row.index(task.trigger_id)
        phase = row[1:t_pos]
        assert sum(tok in demo for tok in phase) == n
        assert all(tok in demo or (void_allowed and tok == task.void_id) for tok in phase)
        # the N-th demo token may be followed by voids only, then T
        assert row[t_pos + 1:] == [task.response_id] * task.f(n) + [task.end_id]
        assert (batch.ids[b, len(row):] == task.pad_id).all()
        scored = np.flatnonzero(batch.scored[b])
        assert scored.tolist() == list(range(t_pos, len(row) - 1))


@pytest.mark.parametrize("name", TASKS)
@pytest.mark.parametrize("split", ["iid", "holdout", "void"])
def test_frozen_splits_obey_grammar(name, split):
    task = load_task(name)
    batch = task.split(split)
    assert len(batch) == 1000
    check_grammar(task, batch, void_allowed=split == "void")
    expected = set(task.held_out_counts) if split == "holdout" else set(task.train_counts)
    assert set(batch.counts.tolist()) == expected  # 1000 draws cover every count
    if split == "void":
        assert (batch.ids == task.void_id).any()
    else:
        assert not (batch.ids == task.void_id).any()


@settings(max_examples=25, deadline=None)
@given(name=st.sampled_from(TASKS), seed=st.integers(0, 2**31), void_p=st.sampled_from([0.0, 0.2, 0.5]))
def test_training_data_grammar_and_no_held_out_counts(name, seed, void_p):
    task = load_task(name)
    batch = generate(task, 64, seed=seed, void_p=void_p)
    check_grammar(task, batch, void_allowed=void_p > 0)
    assert not set(batch.counts.tolist()) & set(task.held_out_counts)


def test_generation_is_deterministic_in_seed(multi):
    a, b = generate(multi, 50, seed=7), generate(multi, 50, seed=7)
    assert (a.ids == b.ids).all()
    assert not np.array_equal(generate(multi, 50, seed=8).ids, a.ids)


def test_void_rate_matches_void_p(multi):
    batch = generate(multi, 4000, seed=0, void_p=0.2)
    demo_phase_steps = voids = 0
    for row in batch.rows():
        t = row.index(multi.trigger_id)
        voids += sum(tok == multi.void_id for tok in row[1:t + 1])
        demo_phase_steps += t  # every step from position 1 through T
    assert abs(voids / demo_phase_steps - 0.2) < 0.01
