"""The alignment-training engine (docs/engine.md): tensors, sites and alignments on the
model's device; nothing of tasks or files.

Its modules import only what sits above them in this list:

* ``config`` — pair tensors, the budget and speed settings, fit specs and results;
* ``prepare`` — what is computed once per pair set;
* ``paths`` — how a step's rows go through the model, one object per path;
* ``engine`` — the Engine: a training step, scoring, the stopping rules;
* ``parallel`` — worker processes, handed what to run (it imports no other engine module);
* ``shipping`` — what travels to a worker process, and the engines rebuilt there;
* ``schedule`` — lockstep and continuous training, in this process and in workers.
"""

from .config import (BUDGET_KEYS, SCHEDULES, SPEED_ONLY, TRAIN_PRECISIONS, Budget, EngineConfig,
                     FitResult, FitSpec, PairTensors, Speed, speed_defaults)
from .engine import Engine
from .schedule import prestart, run, train_together

__all__ = [
    "BUDGET_KEYS", "SCHEDULES", "SPEED_ONLY", "TRAIN_PRECISIONS", "Budget", "Engine",
    "EngineConfig", "FitResult", "FitSpec", "PairTensors", "Speed", "prestart", "run",
    "speed_defaults", "train_together",
]
