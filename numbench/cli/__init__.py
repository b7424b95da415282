"""The ``numbench`` command line: one small module per verb, parsing and printing only."""

from __future__ import annotations

import importlib
import sys

import click

from ..errors import NumbenchError
from ..version import __version__

#: exit codes: 0 success, 1 the work ran but failed a check (gate, verify), 2 bad input.
EXIT_FAILED, EXIT_BAD_INPUT = 1, 2


#: verb → the module that defines it, in the order ``--help`` lists them. Loaded when
#: named, so a command imports what it needs and nothing more (``compare`` alone pulls in
#: pandas, ~1 s); this matters twice for ``evaluate``, whose worker processes start by
#: importing the ``numbench`` script again.
VERBS = {"tasks": "tasks_cmd", "show": "show_cmd", "pairs": "pairs_cmd", "train": "train_cmd",
         "accuracy": "accuracy_cmd", "evaluate": "evaluate_cmd", "verify": "verify_cmd",
         "leaderboard": "leaderboard_cmd", "compare": "compare_cmd", "plot": "plot_cmd",
         "sweep": "sweep_cmd", "trajectory": "trajectory_cmd"}


class _Group(click.Group):
    """Loads each verb's module when it is named; turns every :class:`NumbenchError` into
    one line on stderr and exit code 2."""

    def list_commands(self, ctx) -> list[str]:
        return list(VERBS)

    def get_command(self, ctx, name: str) -> click.Command | None:
        if name not in VERBS:
            return None
        return importlib.import_module(f"{__name__}.{VERBS[name]}").command

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except NumbenchError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="numbench")
def main() -> None:
    """numbench: do networks that solve number tasks hold symbol-like number variables?

    Exit codes: 0 success, 1 a check failed, 2 bad input (a one-line error names it).
    """
