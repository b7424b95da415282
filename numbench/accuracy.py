"""Task accuracy (PROTOCOL §1): sequence-level, teacher-forced.

A sequence counts only if the argmax prediction is right at every scored position. For
this all-or-nothing metric teacher forcing and free running agree: up to the first wrong
scored prediction both runs see the same prefix, and the free run is then wrong too.
:func:`free_running_correct` is the slow reference kept to prove it in the tests.
"""

from __future__ import annotations

import numpy as np
import torch

from .models.contract import NumbenchModel
from .sequences import SequenceBatch


@torch.no_grad()
def sequence_correct(model: NumbenchModel, batch: SequenceBatch, chunk: int = 500) -> np.ndarray:
    """(n,) bool: every scored next-token prediction of the sequence is the argmax."""
    out = []
    ids, targets, scored = (x.to(model.device) for x in batch.torch())
    for s in range(0, len(batch), chunk):
        pred = model.run(ids[s : s + chunk]).argmax(-1)
        ok = (pred == targets[s : s + chunk]) | ~scored[s : s + chunk]
        out.append(ok.all(dim=1))
    return torch.cat(out).cpu().numpy() if out else np.zeros(0, dtype=bool)


def task_accuracy(model: NumbenchModel, batch: SequenceBatch) -> float:
    return float(sequence_correct(model, batch).mean())


def split_accuracies(model: NumbenchModel, task) -> dict[str, float]:
    """Task accuracy on each frozen split of ``task``: iid, holdout, void."""
    return {name: task_accuracy(model, task.split(name)) for name in task.splits}


@torch.no_grad()
def free_running_correct(model: NumbenchModel, batch: SequenceBatch) -> np.ndarray:
    """Reference: feed the model its own argmax from the first scored position on."""
    ids = torch.from_numpy(batch.ids)
    out = np.zeros(len(batch), dtype=bool)
    for b in range(len(batch)):
        L = int(batch.lengths[b])
        first = int(np.flatnonzero(batch.scored[b])[0])  # the input T
        seq = ids[b, : first + 1].tolist()
        while len(seq) < L:
            seq.append(int(model.run(torch.tensor([seq]))[0, -1].argmax()))
        out[b] = seq == ids[b, :L].tolist()
    return out
