"""The result files under ``submissions/``: find them, check them, tell which are verified.

A result is *admitted* to the leaderboard when it validates, its seal holds, its summary
is what its cells give, and every hash it records agrees with this checkout: the protocol
digest of its protocol version, its task's split hashes and the pair-set hashes in
``tasks/pairs.lock``. Anything else is a *problem*: reported by file name and skipped, so
one bad file never breaks the board.

A result is *verified* when ``verify.json`` beside it records a passing ``numbench verify``
of exactly this result (same digest) with exactly its model file (same sha256).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import NumbenchError
from .pairs import read_lock
from .protocol import PROTOCOL_DIGEST, PROTOCOL_VERSION
from .results import load_result, read_json
from .tasks import load_task, task_names

RESULT_NAME = "result.json"
VERIFY_NAME = "verify.json"


@dataclass(frozen=True)
class Submission:
    path: Path
    doc: dict
    verified: bool

    @property
    def name(self) -> str:
        """The model's name: its folder under submissions/."""
        return self.path.parent.name

    @property
    def summary(self) -> dict:
        """The scores: the stored summary, which ``load_result`` held equal to what the
        cells give (so the board shows nothing it could not recompute)."""
        return self.doc["summary"]

    @property
    def current_protocol(self) -> bool:
        return self.doc["versions"]["protocol"] == PROTOCOL_VERSION

    @property
    def ranked(self) -> bool:
        """The result says it is ranked *and* its recorded settings are the protocol's."""
        from .settings import Settings

        try:
            return bool(self.doc["ranked"]) and Settings.from_json(self.doc["settings"]).ranked
        except (KeyError, TypeError, ValueError, NumbenchError):
            return False


def result_paths(root: str | Path) -> list[Path]:
    """Every ``result.json`` under root, in a stable order."""
    return sorted(Path(root).rglob(RESULT_NAME), key=lambda p: p.as_posix())


def check_hashes(doc: dict, path: str | Path) -> None:
    """Raise if a current-protocol result's recorded hashes disagree with this checkout."""
    if doc["versions"]["protocol"] != PROTOCOL_VERSION:
        return  # judged by its own protocol; never ranked with this one
    if doc["versions"].get("protocol_sha256") != PROTOCOL_DIGEST:
        raise NumbenchError(f"protocol {PROTOCOL_VERSION} digest mismatch",
                            path=path, field="versions.protocol_sha256")
    if doc["task"]["name"] not in task_names():  # a name, never a path to some other file
        raise NumbenchError("unknown task", path=path, field="task.name")
    task = load_task(doc["task"]["name"])
    if doc["task"].get("version") != task.version or doc["task"].get("split_sha256") != task.split_hashes:
        raise NumbenchError(f"task {task.name} version or split hashes do not match the task file",
                            path=path, field="task.split_sha256")
    lock = read_lock()
    for key, sha in doc["pairs"].items():
        if key not in lock:  # not silently unchecked: a result needs every set it used locked
            raise NumbenchError("pair set has no entry in tasks/pairs.lock to check it against",
                                path=path, field=f"pairs.{key}")
        if lock[key] != sha:
            raise NumbenchError("pair-set hash does not match tasks/pairs.lock", path=path,
                                field=f"pairs.{key}")


def is_verified(result_path: Path, doc: dict) -> bool:
    """``verify.json`` beside the result records a pass for this result and this model file."""
    try:
        record = read_json(result_path.with_name(VERIFY_NAME))
    except NumbenchError:
        return False
    return (isinstance(record, dict) and record.get("passed") is True
            and record.get("result_digest") == doc["digest"]
            and record.get("model_sha256") == doc["model"]["sha256"])


def _check_name(path: Path) -> None:
    """A result's path must be text the board can print: a folder name of bytes that are not
    UTF-8 (a str with surrogate escapes) would break writing the board."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        shown = str(path).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        raise NumbenchError("folder name is not valid UTF-8", path=shown) from None


def collect(root: str | Path = "submissions") -> tuple[list[Submission], list[tuple[Path, str]]]:
    """(admitted submissions, [(path, one-line problem)]) for every result under root."""
    read_lock()  # a broken lock is this checkout's problem, not every result's: raise
    good, problems = [], []
    for path in result_paths(root):
        try:
            _check_name(path)
            doc = load_result(path)
            check_hashes(doc, path)
        except NumbenchError as e:
            problems.append((path, str(e)))
            continue
        good.append(Submission(path, doc, is_verified(path, doc)))
    return good, problems
