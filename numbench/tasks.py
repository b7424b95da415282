"""Task definitions: read from ``tasks/*.json``, validated, their frozen splits hash-checked.

A task file is data (see ``docs/tasks.md``). Loading one checks every field and regenerates
each frozen split to compare it with the sha256 recorded in the file, so a change to what a
task generates can never pass silently: it needs a new version and new hashes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Callable

from .errors import NumbenchError

SPECIAL_TOKENS = {"pad": "P", "begin": "B", "trigger": "T", "end": "E", "void": "U"}
SPLIT_NAMES = ("iid", "holdout", "void")
ARCH_FAMILIES = ("recurrent", "transformer")

#: f(N): the number of responses a count N asks for.
RESPONSE_RULES: dict[str, Callable[[int], int]] = {
    "identity": lambda n: n,
    "mod4": lambda n: n % 4,
    "round3": lambda n: 3 * round(n / 3),
}


def tasks_dir() -> Path:
    """``$NUMBENCH_TASKS_DIR`` or the ``tasks/`` folder of the numbench checkout."""
    env = os.environ.get("NUMBENCH_TASKS_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "tasks"


@dataclass(frozen=True)
class SplitSpec:
    """One frozen evaluation split: which counts, how many voids, seed, size and hash."""

    name: str
    counts: str  # "in_distribution" | "held_out" | "all"
    void_p: float
    seed: int
    size: int
    sha256: str


@dataclass(frozen=True)
class Task:
    """A validated task definition. Token ids are positions in ``vocabulary``."""

    name: str
    version: int
    description: str
    vocabulary: tuple[str, ...]
    demo_tokens: tuple[str, ...]
    response_token: str
    count_range: tuple[int, int]
    held_out_counts: tuple[int, ...]
    response_rule: str
    reference_void_p: dict[str, float]
    splits: dict[str, SplitSpec]
    path: Path | None = field(default=None, compare=False)

    def __hash__(self) -> int:  # dict fields: hash what names the content
        return hash((self.name, self.version, self.vocabulary, self.response_rule))

    # --- token ids (cached: sequence generation asks millions of times) ------------
    @cached_property
    def _token_ids(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.vocabulary)}

    def token_id(self, token: str) -> int:
        try:
            return self._token_ids[token]
        except KeyError:
            raise ValueError(f"'{token}' is not in the vocabulary of task '{self.name}'") from None

    @cached_property
    def pad_id(self) -> int:
        return self.token_id("P")

    @cached_property
    def begin_id(self) -> int:
        return self.token_id("B")

    @cached_property
    def trigger_id(self) -> int:
        return self.token_id("T")

    @cached_property
    def end_id(self) -> int:
        return self.token_id("E")

    @cached_property
    def void_id(self) -> int:
        return self.token_id("U")

    @cached_property
    def demo_ids(self) -> tuple[int, ...]:
        return tuple(self.token_id(t) for t in self.demo_tokens)

    @cached_property
    def response_id(self) -> int:
        return self.token_id(self.response_token)

    # --- counts ------------------------------------------------------------------
    def f(self, n: int) -> int:
        """The response rule f(N)."""
        return RESPONSE_RULES[self.response_rule](n)

    @property
    def all_counts(self) -> tuple[int, ...]:
        lo, hi = self.count_range
        return tuple(range(lo, hi + 1))

    @property
    def train_counts(self) -> tuple[int, ...]:
        """Counts allowed in training data: the range minus the held-out counts."""
        return tuple(n for n in self.all_counts if n not in self.held_out_counts)

    def counts_for(self, which: str) -> tuple[int, ...]:
        return {"in_distribution": self.train_counts, "held_out": self.held_out_counts,
                "all": self.all_counts}[which]

    @property
    def max_count_value(self) -> int:
        """The largest value a count variable can take (N or f(N))."""
        return max(max(self.all_counts), max(self.f(n) for n in self.all_counts))

    def void_p_for(self, family: str) -> float:
        """Reference training void probability for an architecture family."""
        return self.reference_void_p[family]

    # --- frozen splits -------------------------------------------------------------
    def split(self, name: str):
        """The frozen split ``name`` as a :class:`numbench.sequences.SequenceBatch`."""
        from .sequences import generate_split

        if name not in self.splits:
            raise NumbenchError(f"unknown split '{name}' (choose from {', '.join(self.splits)})")
        return generate_split(self, self.splits[name])

    @property
    def split_hashes(self) -> dict[str, str]:
        return {name: s.sha256 for name, s in self.splits.items()}

    def to_json(self) -> dict:
        """The task as it is written in its file."""
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "vocabulary": list(self.vocabulary),
            "demo_tokens": list(self.demo_tokens),
            "response_token": self.response_token,
            "count_range": list(self.count_range),
            "held_out_counts": list(self.held_out_counts),
            "response_rule": self.response_rule,
            "reference_void_p": dict(self.reference_void_p),
            "splits": {
                n: {"counts": s.counts, "void_p": s.void_p, "seed": s.seed, "size": s.size,
                    "sha256": s.sha256}
                for n, s in self.splits.items()
            },
        }


# --- validation ----------------------------------------------------------------------

_FIELDS = ("name", "version", "description", "vocabulary", "demo_tokens", "response_token",
           "count_range", "held_out_counts", "response_rule", "reference_void_p", "splits")
_SPLIT_FIELDS = ("counts", "void_p", "seed", "size", "sha256")


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_prob(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and 0.0 <= x < 1.0


def _check_keys(obj, expected, path, prefix=""):
    if not isinstance(obj, dict):
        raise NumbenchError("expected a JSON object", path=path, field=prefix or None)
    for key in obj:
        if key not in expected:
            raise NumbenchError("unknown field", path=path, field=prefix + key)
    for key in expected:
        if key not in obj:
            raise NumbenchError("missing field", path=path, field=prefix + key)


def parse_task(raw: object, path: Path | str = "<task>", *, check_hashes: bool = True) -> Task:
    """Validate a task's JSON object and build a :class:`Task`.

    Raises :class:`NumbenchError` naming the file and field for any problem, including a
    frozen split whose regenerated content does not match its recorded sha256.
    """
    _check_keys(raw, _FIELDS, path)

    def bad(fieldname: str, why: str):
        raise NumbenchError(why, path=path, field=fieldname)

    if not isinstance(raw["name"], str) or not raw["name"].isidentifier():
        bad("name", "must be an identifier-like string")
    if not _is_int(raw["version"]) or raw["version"] < 1:
        bad("version", "must be an integer >= 1")
    if not isinstance(raw["description"], str):
        bad("description", "must be a string")
    vocab = raw["vocabulary"]
    if not (isinstance(vocab, list) and vocab and all(isinstance(t, str) and t for t in vocab)):
        bad("vocabulary", "must be a non-empty list of token strings")
    if len(set(vocab)) != len(vocab):
        bad("vocabulary", "has duplicate tokens")
    for tok in SPECIAL_TOKENS.values():
        if tok not in vocab:
            bad("vocabulary", f"must contain the special token '{tok}'")
    demo = raw["demo_tokens"]
    if not (isinstance(demo, list) and demo and all(isinstance(t, str) for t in demo)):
        bad("demo_tokens", "must be a non-empty list of token strings")
    for tok in demo:
        if tok not in vocab or tok in SPECIAL_TOKENS.values():
            bad("demo_tokens", f"'{tok}' must be a non-special token of the vocabulary")
    resp = raw["response_token"]
    if not isinstance(resp, str) or resp not in vocab or resp in SPECIAL_TOKENS.values():
        bad("response_token", "must be a non-special token of the vocabulary")
    cr = raw["count_range"]
    if not (isinstance(cr, list) and len(cr) == 2 and all(_is_int(c) for c in cr)
            and 1 <= cr[0] <= cr[1]):
        bad("count_range", "must be [min, max] integers with 1 <= min <= max")
    held = raw["held_out_counts"]
    if not (isinstance(held, list) and all(_is_int(c) and cr[0] <= c <= cr[1] for c in held)
            and len(set(held)) == len(held)):
        bad("held_out_counts", "must be distinct integers inside count_range")
    if len(held) >= cr[1] - cr[0] + 1:
        bad("held_out_counts", "leaves no count for training")
    if raw["response_rule"] not in RESPONSE_RULES:
        bad("response_rule", f"must be one of {', '.join(RESPONSE_RULES)}")
    rvp = raw["reference_void_p"]
    _check_keys(rvp, ARCH_FAMILIES, path, "reference_void_p.")
    for fam in ARCH_FAMILIES:
        if not _is_prob(rvp[fam]):
            bad(f"reference_void_p.{fam}", "must be a probability in [0, 1)")
    splits_raw = raw["splits"]
    _check_keys(splits_raw, SPLIT_NAMES, path, "splits.")
    splits = {}
    for name in SPLIT_NAMES:
        s = splits_raw[name]
        pre = f"splits.{name}."
        _check_keys(s, _SPLIT_FIELDS, path, pre)
        if s["counts"] not in ("in_distribution", "held_out", "all"):
            bad(pre + "counts", "must be 'in_distribution', 'held_out' or 'all'")
        if not _is_prob(s["void_p"]):
            bad(pre + "void_p", "must be a probability in [0, 1)")
        if not _is_int(s["seed"]) or s["seed"] < 0:
            bad(pre + "seed", "must be a non-negative integer")
        if not _is_int(s["size"]) or s["size"] < 1:
            bad(pre + "size", "must be a positive integer")
        if not (isinstance(s["sha256"], str) and len(s["sha256"]) == 64):
            bad(pre + "sha256", "must be a 64-character hex sha256")
        splits[name] = SplitSpec(name, s["counts"], float(s["void_p"]), s["seed"], s["size"],
                                 s["sha256"])
    if not held:
        bad("held_out_counts", "must not be empty (the holdout split needs counts)")

    task = Task(
        name=raw["name"], version=raw["version"], description=raw["description"],
        vocabulary=tuple(vocab), demo_tokens=tuple(demo), response_token=resp,
        count_range=(cr[0], cr[1]), held_out_counts=tuple(held),
        response_rule=raw["response_rule"], reference_void_p=dict(rvp), splits=splits,
        path=Path(path) if not isinstance(path, Path) else path,
    )
    if check_hashes:
        from .sequences import split_sha256

        for name, spec in splits.items():
            actual = split_sha256(task, spec)
            if actual != spec.sha256:
                raise NumbenchError(
                    f"regenerated split does not match its recorded hash (recorded "
                    f"{spec.sha256[:12]}…, got {actual[:12]}…): what the task generates has "
                    f"changed, so it needs a new version and new hashes",
                    path=path, field=f"splits.{name}.sha256")
    return task


def read_task_file(path: Path | str, *, check_hashes: bool = True) -> Task:
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise NumbenchError("no such task file", path=path) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise NumbenchError(f"not valid JSON ({e})", path=path) from None
    task = parse_task(raw, path, check_hashes=check_hashes)
    if task.name != path.stem:
        raise NumbenchError(f"name '{task.name}' does not match the file name", path=path,
                            field="name")
    return task


@lru_cache(maxsize=None)
def _load_cached(path: str, mtime_ns: int) -> Task:
    return read_task_file(path)


def load_task(name_or_path: str | Path) -> Task:
    """A task by name (from :func:`tasks_dir`) or by path to its JSON file. Cached."""
    p = Path(name_or_path)
    if p.suffix != ".json":
        p = tasks_dir() / f"{name_or_path}.json"
        if not p.exists():
            known = ", ".join(task_names()) or "none"
            raise NumbenchError(f"unknown task '{name_or_path}' (known: {known})")
    try:
        mtime = p.stat().st_mtime_ns
    except FileNotFoundError:
        raise NumbenchError("no such task file", path=p) from None
    return _load_cached(str(p.resolve()), mtime)


def task_names() -> list[str]:
    d = tasks_dir()
    return sorted(p.stem for p in d.glob("*.json")) if d.is_dir() else []


def list_tasks() -> list[Task]:
    return [load_task(n) for n in task_names()]
