"""The ``numbench`` command line: one small module per verb, parsing and printing only."""

from __future__ import annotations

import importlib
import signal
import sys

import click

from ..errors import NumbenchError
from ..version import __version__

#: exit codes: 0 success, 1 the work ran but failed a check (gate, verify), 2 bad input;
#: 128 + the signal when interrupted (130, Ctrl-C) or terminated (143, SIGTERM).
EXIT_FAILED, EXIT_BAD_INPUT = 1, 2


#: verb → the module that defines it, in the order ``--help`` lists them. Loaded when
#: named, so a command imports what it needs and nothing more (``compare`` alone pulls in
#: pandas, ~1 s); this matters twice for ``evaluate``, whose worker processes start by
#: importing the ``numbench`` script again.
VERBS = {"tasks": "tasks_cmd", "show": "show_cmd", "pairs": "pairs_cmd", "train": "train_cmd",
         "accuracy": "accuracy_cmd", "evaluate": "evaluate_cmd", "verify": "verify_cmd",
         "check-model": "check_model_cmd", "leaderboard": "leaderboard_cmd",
         "compare": "compare_cmd", "methods": "methods_cmd", "plot": "plot_cmd",
         "sweep": "sweep_cmd",
         "trajectory": "trajectory_cmd"}


#: each verb's one-line summary for ``numbench --help``, which then imports no verb (all
#: of them took ~4 s); tests/test_cli_foundation.py holds these to the commands' own help.
SUMMARIES = {
    "tasks": "List the tasks with versions, vocabularies and frozen split hashes.",
    "show": "Show example sequences of TASK's frozen SPLIT (scored targets in bold).",
    "pairs": "Show interchange pairs: base, source, swap positions and counterfactual.",
    "train": "Train ARCH on TASK from SEED and write a model file (deterministic on one device).",
    "accuracy": "Task accuracy of MODEL_FILE on the frozen iid, holdout and void splits.",
    "evaluate": "Evaluate MODEL_FILE under the fixed protocol: task accuracy, fidelity gate, "
                "IIA of every program variable under orthogonal and linear alignment with "
                "controls.",
    "verify": "Check RESULT_FILE against MODEL_FILE: the model's sha256, then a full re-run "
              "of the recorded evaluation (same protocol, seed and settings), number by "
              "number.",
    "check-model": "Check that MODEL_OR_ARCH meets the model contract, and say how to fix "
                   "what fails.",
    "leaderboard": "Rebuild leaderboard.md from every result file under submissions/.",
    "compare": "Compare alignment functions (orthogonal, linear, sd_linear, full, random, and "
               "every other method a result holds) per model, program and variable: test "
               "IIA, permuted-variable control, selectivity, random-init.",
    "methods": "Rank alignment methods across every result under submissions/: test IIA, "
               "selectivity, controls and control gap.",
    "plot": "Plot RESULT files: IIA vs k per alignment, IIA per site, and gradience.",
    "sweep": "Train and evaluate the grid in SPEC (a TOML or JSON sweep file).",
    "trajectory": "Evaluate every checkpoint in RUN_DIR (from `numbench train --save-every "
                  "N`) and report task accuracy and IIA against training step, with their "
                  "correlation.",
}


class _Group(click.Group):
    """Loads each verb's module when it is named; turns every :class:`NumbenchError` into
    one line on stderr and exit code 2; on Ctrl-C or SIGTERM stops the worker processes
    at once (not waiting for the fits they train) and exits 130 or 143."""

    def list_commands(self, ctx) -> list[str]:
        return list(VERBS)

    def format_commands(self, ctx, formatter) -> None:
        """The verbs and their summaries, as click lists them, without loading a verb."""
        limit = formatter.width - 6 - max(map(len, VERBS))
        with formatter.section("Commands"):
            formatter.write_dl([(name, click.Command(name, help=SUMMARIES[name])
                                 .get_short_help_str(limit)) for name in VERBS])

    def get_command(self, ctx, name: str) -> click.Command | None:
        if name not in VERBS:
            return None
        return importlib.import_module(f"{__name__}.{VERBS[name]}").command

    def invoke(self, ctx):
        previous = signal.signal(signal.SIGTERM, _terminated)
        try:
            return super().invoke(ctx)
        except NumbenchError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except (KeyboardInterrupt, Terminated) as e:
            workers = sys.modules.get("numbench.engine.parallel")
            if workers is not None:  # not left training parts nobody will read
                workers.stop_now()
            term = isinstance(e, Terminated)
            click.echo("terminated" if term else "interrupted", err=True)
            sys.exit(128 + (signal.SIGTERM if term else signal.SIGINT))
        finally:  # a caller in-process (tests, notebooks) keeps its own handler
            signal.signal(signal.SIGTERM, previous)


class Terminated(Exception):
    """SIGTERM (a scheduler's time limit, ``timeout``): stop as on Ctrl-C."""


def _terminated(signum, frame):
    raise Terminated


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="numbench")
def main() -> None:
    """numbench: do networks that solve number tasks hold symbol-like number variables?

    Exit codes: 0 success, 1 a check failed, 2 bad input (a one-line error names it),
    130 interrupted, 143 terminated.
    """
