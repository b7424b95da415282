"""numbench: does a network that solves a number task hold symbol-like number variables?

The public API, listed explicitly. The command line (``numbench --help``) is built on it.
"""

from .errors import NumbenchError
from .pairs import PairSet, make_pairs
from .programs import PROGRAMS, Program, get_program
from .sequences import SequenceBatch, generate
from .tasks import Task, list_tasks, load_task
from .version import __version__

__all__ = [
    "__version__", "NumbenchError",
    "Task", "load_task", "list_tasks", "SequenceBatch", "generate",
    "Program", "PROGRAMS", "get_program", "PairSet", "make_pairs",
    # heavier layers, imported on use: numbench.models, numbench.alignments, numbench.engine,
    # numbench.training, numbench.accuracy, numbench.evaluate, numbench.results,
    # numbench.verify, numbench.submissions, numbench.leaderboard, numbench.compare,
    # numbench.plots
]
