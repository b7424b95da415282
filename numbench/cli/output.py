"""Printing helpers shared by the verbs: rich tables on stdout/stderr, one JSON document,
progress as plain lines where stderr is not a terminal."""

from __future__ import annotations

import json
import os
import sys
import time

import click
from rich.console import Console

# Not on a terminal (a pipe, a file, a test), rich would squeeze wide tables into 80
# columns; give them room instead ($COLUMNS still wins).
_width = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", 200))
stdout = Console(soft_wrap=True, width=_width)
stderr = Console(stderr=True)


def print_json(doc: object) -> None:
    """Exactly one JSON document on stdout, nothing else."""
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


class PlainProgress:
    """Progress as plain lines, for a stderr that is not a terminal (a batch job's log,
    ``nohup``, a pipe), where rich's live bar prints nothing until the end: a line when a
    stage starts, one every ``every`` seconds within it, and with :meth:`done` the last
    progress not printed yet. Each line starts with the seconds since the start:
    ``[    62 s] stage: detail``. A verb's subclass says what the detail is."""

    def __init__(self, every: float = 60.0, clock=time.monotonic):
        self.every, self.clock = every, clock
        self.start = self.last = clock()
        self.stage, self.pending = None, None

    def describe(self, stage: str, d: dict) -> str:
        """The text after ``stage: `` (none: the stage alone)."""
        return ""

    def __call__(self, stage: str, d: dict) -> None:
        now = self.clock()
        if stage == self.stage and now - self.last < self.every:
            self.pending = (stage, d)
            return
        self._line(now, stage, d)

    def done(self) -> None:
        """Print the last progress if its line was skipped (a run's final step)."""
        if self.pending:
            self._line(self.clock(), *self.pending)

    def _line(self, now: float, stage: str, d: dict) -> None:
        self.stage, self.last, self.pending = stage, now, None
        detail = self.describe(stage, d)
        click.echo(f"[{now - self.start:6.0f} s] {stage}" + (f": {detail}" if detail else ""),
                   err=True)
