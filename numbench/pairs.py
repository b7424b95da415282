"""Interchange pairs and their counterfactuals (PROTOCOL §3), and the permuted control (§6).

A pair is (base, base position i, source, source position j, variable set V). The
counterfactual runs the program on the base through position i, overwrites V with the
source's values after position j, and lets the program generate through ``E``:

    counterfactual = base[0..i] + continuation

Its scored positions are those whose *next* token the program emits in the respond phase
(the responses and ``E``), so with source = base the scored mask is the task's own.

Bases, sources and positions depend only on (task version, split, mode), never on the
program or variables, so every variable is measured on the same sequences.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .errors import NumbenchError
from .hashing import sha256_arrays, sha256_json
from .programs import RESPOND, Program, get_program
from .sequences import SequenceBatch, batch_of, one_sequence, pad_batch
from .tasks import Task, tasks_dir

#: split -> (size, counts pool, seed). Train pairs never use held-out counts.
PAIR_SPLITS = {
    "train": (10_000, "in_distribution", 2001),
    "valid": (1_000, "all", 2002),
    "test": (1_000, "all", 2003),
}
MODES = ("single", "prefix")
PERMUTATION_SEED = 3001
LOCK_FILE = "pairs.lock"  # JSON; not *.json so it is never read as a task
HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class PairSet:
    """A frozen set of interchange pairs.

    base, source:    sequences (void_p = 0)
    base_pos:        (n,) position i in the base (and counterfactual) that is interchanged
    source_pos:      (n,) position j in the source whose activation is taken
    counterfactual:  the expected sequence; ``counts`` are the base's N, ``scored`` marks
                     input positions whose next token is scored
    source_values:   (n, |V|) the value written into each variable (after π if permuted)
    """

    task: str
    task_version: int
    program: str
    variables: tuple[str, ...]
    split: str
    mode: str
    permuted: bool
    seed: int
    base: SequenceBatch
    base_pos: np.ndarray
    source: SequenceBatch
    source_pos: np.ndarray
    counterfactual: SequenceBatch
    source_values: np.ndarray
    permutations: dict[str, list[int]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.base_pos)

    @property
    def key(self) -> str:
        return pair_key(self.task, self.task_version, self.program, self.variables,
                        self.split, self.mode, self.permuted)

    @cached_property  # asked for by every cell that uses the set
    def sha256(self) -> str:
        return _pair_sha256(self)


def pair_key(task: str, version: int, program: str, variables: tuple[str, ...], split: str,
             mode: str, permuted: bool) -> str:
    return f"{task}@v{version}/{program}/{'+'.join(variables)}/{split}/{mode}" + (
        "/permuted" if permuted else "")


def _pair_sha256(p: PairSet) -> str:
    meta = sha256_json({"key": p.key, "seed": p.seed, "permutations": p.permutations})
    body = sha256_arrays(p.base.ids, p.base_pos, p.source.ids, p.source_pos,
                         p.counterfactual.ids, p.counterfactual.scored)
    return sha256_json([meta, body])


def derangement(values: tuple[int, ...], rng: np.random.Generator) -> dict[int, int]:
    """A random permutation of ``values`` with no fixed point (rejection sampling)."""
    if len(values) < 2:
        raise ValueError("a derangement needs at least two values")
    while True:
        perm = rng.permutation(len(values))
        if not np.any(perm == np.arange(len(values))):
            return {values[a]: values[b] for a, b in enumerate(perm)}


def permutations_for(task: Task, program: Program) -> dict[str, dict[int, int]]:
    """The fixed derangement π of each variable's values on ``task`` (PROTOCOL §6)."""
    out = {}
    for k, var in enumerate(program.variables):
        rng = np.random.default_rng(np.random.SeedSequence([PERMUTATION_SEED, task.version, k]))
        out[var] = derangement(program.values(task, var), rng)
    return out


def _eligible(task: Task, row: list[int]) -> np.ndarray:
    """Positions whose input token is a demo or a response token."""
    allowed = set(task.demo_ids) | {task.response_id}
    return np.array([t for t, tok in enumerate(row) if tok in allowed], dtype=np.int64)


def _seed_sequence(task: Task, split: str, mode: str) -> np.random.SeedSequence:
    return np.random.SeedSequence([PAIR_SPLITS[split][2], task.version, MODES.index(mode)])


def _continuation_rng(task: Task, split: str, mode: str) -> np.random.Generator:
    """The generator of a pair set's counterfactual continuations, fresh at every call."""
    return np.random.default_rng(_seed_sequence(task, split, mode).spawn(1)[0])


class _Drawn(NamedTuple):
    """Bases, sources and positions: a function of (task version, split, mode) only, never
    of the program or variables. The sequences as tuples and as batches, shared by every
    pair set of the split and mode (never modified)."""

    bases: tuple[tuple[int, ...], ...]
    base_batch: SequenceBatch
    base_pos: np.ndarray
    sources: tuple[tuple[int, ...], ...]
    source_batch: SequenceBatch
    source_pos: np.ndarray


@lru_cache(maxsize=8)
def _sequences(task: Task, split: str, mode: str) -> _Drawn:
    """Every variable's pair sets share these: drawn once."""
    size, pool_name, _ = PAIR_SPLITS[split]
    rng = np.random.default_rng(_seed_sequence(task, split, mode))
    pool = np.asarray(task.counts_for(pool_name))
    n_base, n_src = rng.choice(pool, size=size), rng.choice(pool, size=size)
    bases = [one_sequence(task, int(n), 0.0, rng) for n in n_base]
    sources = [one_sequence(task, int(n), 0.0, rng) for n in n_src]
    base_pos = np.empty(size, dtype=np.int64)
    src_pos = np.empty(size, dtype=np.int64)
    for b in range(size):
        eb = _eligible(task, bases[b])
        if mode == "single":
            base_pos[b] = eb[rng.integers(len(eb))]
            es = _eligible(task, sources[b])
            src_pos[b] = es[rng.integers(len(es))]
        else:  # prefix: i = j, eligible in both
            both = np.intersect1d(eb, _eligible(task, sources[b]))
            base_pos[b] = src_pos[b] = both[rng.integers(len(both))]
    bases, sources = tuple(map(tuple, bases)), tuple(map(tuple, sources))
    return _Drawn(bases, batch_of(task, bases, n_base), base_pos,
                  sources, batch_of(task, sources, n_src), src_pos)


def base_trace(task: Task, program: Program, base, i: int) -> tuple[dict, tuple]:
    """The program's state after base position ``i``, and its phases before ``i``."""
    states = program.trace(task, base[: i + 1])
    return states[i], tuple(st["phase"] for st in states[:i])


def counterfactual(task: Task, program: Program, variables: tuple[str, ...], base: list[int],
                   n_base: int, i: int, source_state: dict, rng: np.random.Generator,
                   traced: tuple[dict, tuple] | None = None) -> tuple[list[int], list[bool]]:
    """The counterfactual tokens and, per input position, whether its next token is scored.

    ``source_state`` holds the values to write into ``variables`` (already permuted for the
    control); ``traced`` is the base's ``base_trace`` at ``i``, if already known.
    """
    at_i, phases_before = traced or base_trace(task, program, base, i)
    s = dict(at_i)
    for v in variables:
        s[v] = source_state[v]
    # what program.generate(task, n_base, s, rng) emits, and the same draws from rng,
    # without stepping through the tokens (tests/test_pairs.py holds the two equal)
    demos, responses = program.emissions(task, n_base, s)
    demo_ids = task.demo_ids
    cont = [demo_ids[int(rng.integers(len(demo_ids)))] for _ in range(demos)]
    if s["phase"] != RESPOND:
        cont.append(task.trigger_id)
    cont += [task.response_id] * responses + [task.end_id]
    # a position is scored when the state after it is in the respond phase: the base's up
    # to i, then the demo tokens' (demo phase) and the rest's (respond); never E's
    scored = [ph == RESPOND for ph in phases_before] + [s["phase"] == RESPOND]
    scored += [False] * demos + [True] * (len(cont) - demos - 1) + [False]
    return list(base[: i + 1]) + cont, scored


def make_pairs(task: Task, program: str | Program, variables: str | tuple[str, ...],
               split: str = "test", *, mode: str = "single", permuted: bool = False,
               verify: bool = True) -> PairSet:
    """The frozen pair set for (task, program, variable set, split, mode).

    ``variables`` is a variable name, ``"full"``, or a tuple of names. With ``verify``, the
    result's sha256 is checked against ``tasks/pairs.lock`` when the key is recorded.
    """
    prog = get_program(program) if isinstance(program, str) else program
    if isinstance(variables, str):
        variables = prog.variable_set(variables)
    if split not in PAIR_SPLITS:
        raise NumbenchError(f"unknown pair split '{split}' (choose from {', '.join(PAIR_SPLITS)})")
    if mode not in MODES:
        raise NumbenchError(f"unknown mode '{mode}' (choose from {', '.join(MODES)})")
    return _make_pairs(task, prog.name, tuple(variables), split, mode, permuted, verify)


@lru_cache(maxsize=96)  # every set the protocol uses on a task (84): made once a process
def _make_pairs(task, program, variables, split, mode, permuted, verify) -> PairSet:
    prog = get_program(program)
    drawn, rng = _sequences(task, split, mode), _continuation_rng(task, split, mode)
    bases, base_pos, n_base = drawn.bases, drawn.base_pos, drawn.base_batch.counts
    perms = permutations_for(task, prog) if permuted else {}
    base_traces, src_states = _traces(task, program, split, mode)
    cf_tokens, cf_scored, values = [], [], []
    for b in range(len(bases)):
        src_state = src_states[b]
        if permuted:
            src_state = {v: perms[v][src_state[v]] if v in variables else x
                         for v, x in src_state.items()}
        toks, sc = counterfactual(task, prog, variables, bases[b], int(n_base[b]),
                                  int(base_pos[b]), src_state, rng, base_traces[b])
        cf_tokens.append(toks)
        cf_scored.append(sc)
        values.append([src_state[v] for v in variables])
    cf = pad_batch(task, cf_tokens, n_base, [0] * len(bases), [0] * len(bases))
    scored = np.zeros_like(cf.scored)
    for b, sc in enumerate(cf_scored):
        scored[b, : len(sc)] = sc
    cf = SequenceBatch(cf.ids, cf.lengths, cf.counts, scored)
    pairs = PairSet(
        task=task.name, task_version=task.version, program=prog.name, variables=variables,
        split=split, mode=mode, permuted=permuted, seed=PAIR_SPLITS[split][2],
        base=drawn.base_batch, base_pos=base_pos, source=drawn.source_batch,
        source_pos=drawn.source_pos,
        counterfactual=cf, source_values=np.asarray(values, dtype=np.int64),
        permutations={v: [perms[v][x] for x in sorted(perms[v])] for v in variables} if permuted else {},
    )
    if verify:
        recorded = read_lock().get(pairs.key)
        if recorded is not None and recorded != pairs.sha256:
            raise NumbenchError(
                f"regenerated pair set does not match its recorded hash (recorded "
                f"{recorded[:12]}…, got {pairs.sha256[:12]}…)",
                path=tasks_dir() / LOCK_FILE, field=pairs.key)
    return pairs


@lru_cache(maxsize=12)
def _traces(task: Task, program: str, split: str, mode: str) -> tuple[list, list]:
    """Each base's ``base_trace`` at its position and each source's state at its position:
    the same for every variable set and control of a program (traced once, read only)."""
    prog = get_program(program)
    d = _sequences(task, split, mode)
    base_traces = [base_trace(task, prog, base, int(i)) for base, i in zip(d.bases, d.base_pos)]
    src_states = [prog.trace(task, src[: j + 1])[j] for src, j in zip(d.sources, d.source_pos)]
    return base_traces, src_states


def read_lock() -> dict[str, str]:
    """``tasks/pairs.lock``: pair-set key -> sha256 (empty if there is no lock file yet)."""
    path = tasks_dir() / LOCK_FILE
    if not path.exists():
        return {}
    try:
        lock = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise NumbenchError(f"not a readable JSON file ({e})", path=path) from None
    if not isinstance(lock, dict):
        raise NumbenchError(f"must be a JSON object of pair-set key -> sha256, not a "
                            f"{type(lock).__name__}", path=path)
    for key, sha in lock.items():
        if not (isinstance(sha, str) and len(sha) == 64 and all(c in HEX for c in sha)):
            raise NumbenchError(f"not a sha256 (64 hex digits): {sha!r:.80}", path=path,
                                field=key)
    return lock


def standard_pair_keys(task: Task) -> list[tuple[str, tuple[str, ...], str, str, bool]]:
    """Every (program, variables, split, mode, permuted) the protocol uses on a task."""
    from .programs import PROGRAMS

    out = []
    for prog in PROGRAMS.values():
        for vs in [(v,) for v in prog.variables] + [prog.variables]:
            for split in PAIR_SPLITS:
                for mode in MODES:
                    for permuted in (False, True):
                        out.append((prog.name, vs, split, mode, permuted))
    return out


def lock_path() -> Path:
    return tasks_dir() / LOCK_FILE
