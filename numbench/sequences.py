"""Sequence generation for the numeric-equivalence tasks (PROTOCOL §1).

    B  d d … d  T  r … r  E  P P …

Every sequence is a deterministic function of (task version, seed, counts pool, void_p).
``scored[b, t]`` marks the *input* positions whose next-token prediction is scored: the
input ``T`` and every response input, i.e. the predictions of each response and of ``E``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .hashing import sha256_json

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .tasks import SplitSpec, Task


@dataclass(frozen=True)
class SequenceBatch:
    """A padded batch of token-id sequences.

    ids:     (n, L) int64, padded with the task's ``P`` id
    lengths: (n,)   number of real tokens (through ``E``)
    counts:  (n,)   the target count N of each sequence
    scored:  (n, L) bool, input positions whose next-token prediction is scored
    """

    ids: np.ndarray
    lengths: np.ndarray
    counts: np.ndarray
    scored: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self) -> list[list[int]]:
        """Each sequence's real tokens, without padding."""
        return [row[:n].tolist() for row, n in zip(self.ids, self.lengths)]

    def targets(self) -> np.ndarray:
        """(n, L) next-token targets: ids shifted left by one, padded."""
        out = np.empty_like(self.ids)
        out[:, :-1] = self.ids[:, 1:]
        out[:, -1] = self.ids[:, -1]
        return out

    def torch(self) -> tuple["torch.Tensor", "torch.Tensor", "torch.Tensor"]:
        """(ids, targets, scored) as torch tensors."""
        import torch

        return (torch.from_numpy(self.ids), torch.from_numpy(self.targets()),
                torch.from_numpy(self.scored))


def make_rng(seed: int, version: int) -> np.random.Generator:
    """The generator behind every sequence: PCG64 seeded by (seed, task version)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(version)]))


def one_sequence(task: "Task", n: int, void_p: float, rng: np.random.Generator) -> list[int]:
    """Token ids of one sequence with target count ``n``.

    Each demo-phase step is a void with probability ``void_p``; otherwise a demo token while
    fewer than n have been seen, else ``T``. So the voids in front of each of the n demo
    tokens and of ``T`` are independent geometric counts: drawn in one call.
    """
    demo_ids = task.demo_ids
    picks = rng.integers(len(demo_ids), size=n)
    out = [task.begin_id]
    if void_p > 0:
        voids = rng.geometric(1.0 - void_p, size=n + 1) - 1
        for k in range(n):
            out.extend([task.void_id] * int(voids[k]))
            out.append(demo_ids[picks[k]])
        out.extend([task.void_id] * int(voids[n]))
    else:
        out.extend(demo_ids[p] for p in picks)
    out.append(task.trigger_id)
    out.extend([task.response_id] * task.f(n))
    out.append(task.end_id)
    return out


def pad_batch(task: "Task", seqs: Sequence[Sequence[int]], counts: Sequence[int],
              scored_from: Sequence[int], scored_to: Sequence[int]) -> SequenceBatch:
    """Pad ``seqs`` into a batch; ``scored`` is True on input positions [from, to)."""
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    width = int(lengths.max()) if len(seqs) else 1
    ids = np.full((len(seqs), width), task.pad_id, dtype=np.int64)
    for b, s in enumerate(seqs):
        ids[b, : len(s)] = s
    pos = np.arange(width)[None, :]
    scored = (pos >= np.asarray(scored_from)[:, None]) & (pos < np.asarray(scored_to)[:, None])
    return SequenceBatch(ids, lengths, np.asarray(counts, dtype=np.int64), scored)


def generate(task: "Task", size: int, *, seed: int, counts: Sequence[int] | None = None,
             void_p: float = 0.0) -> SequenceBatch:
    """``size`` sequences, counts uniform over ``counts`` (default: training counts)."""
    rng = make_rng(seed, task.version)
    pool = np.asarray(counts if counts is not None else task.train_counts, dtype=np.int64)
    ns = rng.choice(pool, size=size)
    seqs = [one_sequence(task, int(n), void_p, rng) for n in ns]
    return batch_of(task, seqs, ns)


def batch_of(task: "Task", seqs: Sequence[Sequence[int]], counts: Sequence[int]) -> SequenceBatch:
    """A batch of well-formed task sequences, its scored mask from ``T`` up to ``E``."""
    t_pos = [s.index(task.trigger_id) for s in seqs]
    e_pos = [len(s) - 1 for s in seqs]
    return pad_batch(task, seqs, counts, t_pos, e_pos)


def generate_split(task: "Task", spec: "SplitSpec") -> SequenceBatch:
    """A frozen split: a pure function of the task version and the split's spec."""
    return generate(task, spec.size, seed=spec.seed, counts=task.counts_for(spec.counts),
                    void_p=spec.void_p)


def sequences_sha256(task: "Task", batch: SequenceBatch) -> str:
    """Hash of what a batch *is*: the vocabulary and every sequence's tokens, in order."""
    return sha256_json({"vocabulary": list(task.vocabulary), "sequences": batch.rows()})


def split_sha256(task: "Task", spec: "SplitSpec") -> str:
    return sequences_sha256(task, generate_split(task, spec))


def decode(task: "Task", ids: Sequence[int]) -> list[str]:
    return [task.vocabulary[i] for i in ids]
