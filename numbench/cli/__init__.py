"""The ``numbench`` command line: one small module per verb, parsing and printing only."""

from __future__ import annotations

import sys

import click

from ..errors import NumbenchError
from ..version import __version__

#: exit codes: 0 success, 1 the work ran but failed a check (gate, verify), 2 bad input.
EXIT_FAILED, EXIT_BAD_INPUT = 1, 2


class _Group(click.Group):
    """Turns every :class:`NumbenchError` into one line on stderr and exit code 2."""

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


def _register() -> None:
    from . import (accuracy_cmd, compare_cmd, evaluate_cmd, leaderboard_cmd, pairs_cmd, plot_cmd,
                   show_cmd, sweep_cmd, tasks_cmd, train_cmd, trajectory_cmd, verify_cmd)

    for mod in (tasks_cmd, show_cmd, pairs_cmd, train_cmd, accuracy_cmd, evaluate_cmd,
                verify_cmd, leaderboard_cmd, compare_cmd, plot_cmd, sweep_cmd, trajectory_cmd):
        main.add_command(mod.command)


_register()
