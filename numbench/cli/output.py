"""Printing helpers shared by the verbs: rich tables on stdout/stderr, one JSON document."""

from __future__ import annotations

import json
import sys

from rich.console import Console

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True)


def print_json(doc: object) -> None:
    """Exactly one JSON document on stdout, nothing else."""
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()
