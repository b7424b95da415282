"""Printing helpers shared by the verbs: rich tables on stdout/stderr, one JSON document."""

from __future__ import annotations

import json
import os
import sys

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
