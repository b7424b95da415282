"""Symbolic programs (PROTOCOL §2): step rules over tokens and their typed variables.

A program reads one token at a time; its variables are read *after* a token is processed
and determine the next token. N, the episode's target count, is a constant and is never
interchanged. ``phase`` is 0 (demo) or 1 (respond).

* ``up_down``: ``count`` counts up on demo tokens; ``T`` flips the phase and applies f;
  each response counts down; ``E`` when count = 0.
* ``up_up``: ``demo_count`` counts up on demo tokens, ``resp_count`` up on responses;
  respond while resp_count < f(demo_count), then ``E``.

In the demo phase both programs emit a demo token while their count is below N, else ``T``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .errors import NumbenchError

if TYPE_CHECKING:  # pragma: no cover
    from .tasks import Task

DEMO, RESPOND = 0, 1
State = dict  # variable name -> int


class Program(ABC):
    """A symbolic algorithm for the count tasks. Subclasses give the step and emit rules."""

    name: str
    variables: tuple[str, ...]

    def variable_set(self, name: str) -> tuple[str, ...]:
        """A variable set by name: one variable, or ``full`` for all of them."""
        if name == "full":
            return self.variables
        if name not in self.variables:
            raise NumbenchError(f"program '{self.name}' has no variable '{name}' "
                                f"(choose from {', '.join(self.variables)}, full)")
        return (name,)

    def values(self, task: "Task", variable: str) -> tuple[int, ...]:
        """Every value ``variable`` can take on ``task``: phase 0/1, counts 0..max."""
        if variable == "phase":
            return (DEMO, RESPOND)
        return tuple(range(task.max_count_value + 1))

    def start(self) -> State:
        """The state after ``B``."""
        return {v: 0 for v in self.variables}

    def step(self, task: "Task", state: State, token: int) -> State:
        """The state after reading ``token``; raises on a token the grammar forbids."""
        s = dict(state)
        if token == task.void_id:
            if s["phase"] != DEMO:
                raise NumbenchError("void token in the respond phase")
        elif token == task.begin_id:
            return self.start()
        elif s["phase"] == DEMO:
            if token in task.demo_ids:
                self.on_demo(s)
            elif token == task.trigger_id:
                s["phase"] = RESPOND
                self.on_trigger(task, s)
            else:
                raise NumbenchError(f"token '{task.vocabulary[token]}' in the demo phase")
        else:
            if token == task.response_id:
                self.on_response(s)
            elif token != task.end_id:
                raise NumbenchError(f"token '{task.vocabulary[token]}' in the respond phase")
        return s

    def next_kind(self, task: "Task", n: int, state: State) -> str:
        """What comes next: 'demo' (any demo token), 'T', 'R' (a response) or 'E'."""
        if state["phase"] == DEMO:
            return "demo" if self.demo_seen(state) < n else "T"
        return "R" if self.responses_left(task, state) > 0 else "E"

    @abstractmethod
    def on_demo(self, s: State) -> None: ...

    @abstractmethod
    def on_trigger(self, task: "Task", s: State) -> None: ...

    @abstractmethod
    def on_response(self, s: State) -> None: ...

    @abstractmethod
    def demo_seen(self, s: State) -> int: ...

    @abstractmethod
    def responses_left(self, task: "Task", s: State) -> int: ...

    # --- running ---------------------------------------------------------------------
    def trace(self, task: "Task", tokens: Sequence[int]) -> list[State]:
        """States after each token of a sequence that starts with ``B``."""
        states, s = [], self.start()
        for tok in tokens:
            s = self.step(task, s, tok)
            states.append(s)
        return states

    def generate(self, task: "Task", n: int, state: State, rng: np.random.Generator,
                 max_len: int = 200) -> tuple[list[int], list[State]]:
        """Tokens the program emits from ``state`` through ``E``, and the state after each.

        Demo tokens are drawn uniformly from the task's demo tokens.
        """
        tokens, states, s = [], [], state
        for _ in range(max_len):
            kind = self.next_kind(task, n, s)
            if kind == "demo":
                tok = task.demo_ids[int(rng.integers(len(task.demo_ids)))]
            else:
                tok = {"T": task.trigger_id, "R": task.response_id, "E": task.end_id}[kind]
            tokens.append(tok)
            if kind == "E":
                return tokens, states + [s]
            s = self.step(task, s, tok)
            states.append(s)
        raise RuntimeError("program did not reach E")  # pragma: no cover - a program bug

    def emissions(self, task: "Task", n: int, state: State) -> tuple[int, int]:
        """How many demo tokens and responses ``generate`` emits from ``state`` before
        ``E`` (with a ``T`` between them if ``state`` is in the demo phase), without
        stepping through tokens or drawing them. Relies on what both programs do: a demo
        token raises ``demo_seen`` by one and a response lowers ``responses_left`` by one
        (``tests/test_programs.py`` holds this to ``generate``)."""
        s, demos = dict(state), 0
        if s["phase"] == DEMO:
            demos = max(0, n - self.demo_seen(s))
            for _ in range(demos):
                self.on_demo(s)
            s["phase"] = RESPOND
            self.on_trigger(task, s)
        return demos, max(0, self.responses_left(task, s))


class UpDown(Program):
    name = "up_down"
    variables = ("count", "phase")

    def on_demo(self, s):
        s["count"] += 1

    def on_trigger(self, task, s):
        s["count"] = task.f(s["count"])

    def on_response(self, s):
        s["count"] -= 1

    def demo_seen(self, s):
        return s["count"]

    def responses_left(self, task, s):
        return s["count"]


class UpUp(Program):
    name = "up_up"
    variables = ("demo_count", "resp_count", "phase")

    def on_demo(self, s):
        s["demo_count"] += 1

    def on_trigger(self, task, s):
        pass

    def on_response(self, s):
        s["resp_count"] += 1

    def demo_seen(self, s):
        return s["demo_count"]

    def responses_left(self, task, s):
        return task.f(s["demo_count"]) - s["resp_count"]


PROGRAMS: dict[str, Program] = {p.name: p for p in (UpDown(), UpUp())}


def get_program(name: str) -> Program:
    if name not in PROGRAMS:
        raise NumbenchError(f"unknown program '{name}' (choose from {', '.join(PROGRAMS)})")
    return PROGRAMS[name]
