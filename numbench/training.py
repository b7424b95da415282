"""Next-token training of any registered architecture (deterministic for a seed on CPU).

Cross-entropy on every real next token (demo tokens too: the model learns their
distribution; only the scored ones enter accuracy). Training sequences use the task's
reference void probability for the architecture's family unless told otherwise. Training
stops when accuracy on a held-apart validation set (in-distribution counts, fresh seed,
never the frozen splits) reaches the target, or at ``max_steps``.

A model of more than :data:`MAX_PARAMETERS` parameters is refused before anything is
allocated: at that size a config is a typo (``d_hidden=1000000000``), not an experiment.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .accuracy import task_accuracy
from .errors import NumbenchError
from .models.contract import NumbenchModel
from .models.registry import build_model, count_parameters
from .sequences import generate
from .tasks import Task

#: seeds of the training pool and the validation set, offset from the run's seed
TRAIN_POOL_SEED, VALID_SEED = 10_000, 20_000

#: the largest model numbench trains: 100× the reference models (~0.1–0.4 M parameters)
MAX_PARAMETERS = 50_000_000


@dataclass
class TrainConfig:
    max_steps: int = 8000
    batch_size: int = 128
    lr: float = 1e-3
    pool_size: int = 20_000  # training sequences, reshuffled every epoch
    eval_every: int = 200
    valid_size: int = 1000
    target_accuracy: float = 1.0  # on the validation set
    void_p: float | None = None  # None: the task's reference for the family
    grad_clip: float = 1.0
    save_every: int = 0  # >0: also save a checkpoint every N steps

    def __post_init__(self):
        """Refuse settings that would train nothing, or nonsense, naming the setting."""
        for name, least in (("max_steps", 1), ("batch_size", 1), ("pool_size", 1),
                            ("eval_every", 1), ("valid_size", 1), ("save_every", 0)):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= least):
                raise NumbenchError(f"must be an integer >= {least}, got {value!r}", field=name)
        for name in ("lr", "grad_clip"):
            value = getattr(self, name)
            if not (_finite(value) and value > 0):
                raise NumbenchError(f"must be a finite number > 0, got {value!r}", field=name)
        for name in ("target_accuracy", "void_p"):
            value = getattr(self, name)
            if name == "void_p" and value is None:  # the task's reference
                continue
            if not (_finite(value) and 0 <= value <= 1):
                raise NumbenchError(f"must be a number in [0, 1], got {value!r}", field=name)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class TrainResult:
    model: NumbenchModel
    summary: dict


def check_model_size(arch: str, config: dict | None, vocabulary: tuple[str, ...]) -> None:
    """Raise unless ``arch`` with ``config`` has at most :data:`MAX_PARAMETERS` parameters,
    counted without allocating (or cannot be counted so: see ``count_parameters``). The
    count stops at twice the cap: 200,000 layers are refused in milliseconds, not minutes."""
    n = count_parameters(arch, config, vocabulary, limit=2 * MAX_PARAMETERS)
    if n is not None and n > MAX_PARAMETERS:
        size = (f"{n:,} parameters" if n != math.inf
                else f"more than {2 * MAX_PARAMETERS:,} parameters")
        raise NumbenchError(f"{arch} with config {config or {}} would have {size}, over "
                            f"numbench's cap of {MAX_PARAMETERS:,}")


def train(arch: str, task: Task, seed: int, *, config: dict | None = None,
          train_config: TrainConfig | None = None,
          on_progress: Callable[[int, float, float | None], None] | None = None,
          on_checkpoint: Callable[[int, NumbenchModel], None] | None = None,
          device: str | torch.device = "cpu") -> TrainResult:
    """Train ``arch`` on ``task`` from ``seed`` on ``device`` (the initial weights are
    drawn on the CPU, so they are the same on every device). ``on_progress(step, loss,
    valid_acc)``. The model comes back on the CPU."""
    device = torch.device(device)
    tc = train_config or TrainConfig()
    check_model_size(arch, config, task.vocabulary)
    torch.manual_seed(seed)
    try:
        model = build_model(arch, config, task.vocabulary)
    except (ValueError, RuntimeError) as e:  # a width of 0, say: torch's own words
        raise NumbenchError(f"cannot build {arch} with config {config or {}}: {e}") from None
    model = model.to(device)
    void_p = tc.void_p if tc.void_p is not None else task.void_p_for(model.family)
    pool = generate(task, tc.pool_size, seed=TRAIN_POOL_SEED + seed, void_p=void_p)
    valid = generate(task, tc.valid_size, seed=VALID_SEED + seed, void_p=void_p)
    ids_all, targets_all, _ = (x.to(device) for x in pool.torch())
    real = torch.from_numpy(np.arange(pool.ids.shape[1])[None, :] < pool.lengths[:, None] - 1).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr)
    order_rng = np.random.default_rng(seed)
    order, cursor = order_rng.permutation(len(pool)), 0
    start, acc, step, reason = time.perf_counter(), None, 0, "max_steps"
    for step in range(1, tc.max_steps + 1):
        if cursor + tc.batch_size > len(order):
            order, cursor = order_rng.permutation(len(pool)), 0
        batch = order[cursor : cursor + tc.batch_size]
        cursor += tc.batch_size
        width = int(pool.lengths[batch].max())
        idx = torch.from_numpy(batch).to(device)
        ids, targets, mask = ids_all[idx, :width], targets_all[idx, :width], real[idx, :width]
        model.train()
        logits = model.run(ids)
        loss = F.cross_entropy(logits[mask], targets[mask])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        if tc.save_every and step % tc.save_every == 0:
            if on_checkpoint:  # the caller decides where checkpoints go
                model.eval()
                on_checkpoint(step, model)
        acc = None
        if step % tc.eval_every == 0 or step == tc.max_steps:
            model.eval()
            acc = task_accuracy(model, valid)
        if on_progress:
            on_progress(step, float(loss.detach()), acc)
        if acc is not None and acc >= tc.target_accuracy:
            reason = "target_accuracy"
            break
    model.eval()
    final = task_accuracy(model, valid)
    summary = {
        "steps": step, "stop_reason": reason, "wall_seconds": round(time.perf_counter() - start, 2),
        "valid_accuracy": final, "void_p": void_p, "train_config": asdict(tc),
        "torch_version": torch.__version__, "threads": torch.get_num_threads(),
        "device": device.type,
    }
    return TrainResult(model.cpu(), summary)
