"""What the DAS engine takes and gives: pair sets as tensors, fit specs and results, and
the engine's settings (the protocol's budget and the speed-only settings)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .machine import default_train_precision


@dataclass(frozen=True)
class PairTensors:
    """A pair set as tensors. ``cf_scored`` marks input positions whose next token counts."""

    base_ids: torch.Tensor  # (N, Tb) base tokens (cf_ids[:, :i+1] == base_ids[:, :i+1])
    cf_ids: torch.Tensor  # (N, T) counterfactual tokens
    cf_scored: torch.Tensor  # (N, T) bool
    base_pos: torch.Tensor  # (N,) position i
    src_ids: torch.Tensor  # (N, Ts) source tokens
    src_pos: torch.Tensor  # (N,) position j

    def __len__(self) -> int:
        return len(self.base_pos)


@dataclass
class EngineConfig:
    # the budget: by default the protocol's (numbench/protocol.py BUDGET; a test holds
    # the two equal), which is the only place that decides it
    lr: float = 1e-2
    batch_size: int = 128
    max_steps: int = 2500
    eval_every: int = 50
    stop_iia: float = 0.995
    patience: int = 4  # validations without a min_delta loss improvement
    min_delta: float = 1e-3
    fail_after: int = 300
    fail_iia: float = 0.1
    lr_decays: int = 1  # plateaus that lower a fit's learning rate before one stops it
    lr_decay: float = 0.1  # the factor of each such lowering
    eval_chunk: int = 250  # pairs per fit per no-grad forward
    # most fits in one training forward, and in flight in one process on the continuous
    # schedule: 640 rows keep a d=128 recurrence in cache, and 8 measured no faster in
    # evaluate (the processes' loads differ more) for 0.25 GB more memory
    fits_per_forward: int = 5
    # matrix products of a training step's restarted recurrence: "bf16" (CPU autocast;
    # 2-4x faster products where the CPU has bf16 dot products, ~30x slower where it has
    # none) or "fp32"; by default whichever is fast here (machine.default_train_precision).
    # Validation and scoring always run in float32: every reported IIA is exact arithmetic.
    train_precision: str = field(default_factory=default_train_precision)
    # processes that train a run's fits side by side, one core each (das_workers.py)
    workers: int = 2
    # "continuous": a process keeps fits_per_forward fits in flight and starts a waiting
    # fit as soon as one stops, each on its own step count (das_stream.py); "lockstep":
    # a part's fits start together and step together until the last stops. Continuous
    # needs a fit's arithmetic not to depend on which fits share its forward: bf16
    # training products, or float32 ones through fused kernels with padded row counts
    # where this CPU's products are row-exact (Engine.continuous); otherwise lockstep.
    schedule: str = "continuous"

    def __post_init__(self):
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, not {self.workers}")
        if self.train_precision not in TRAIN_PRECISIONS:
            raise ValueError(f"train_precision must be one of {', '.join(TRAIN_PRECISIONS)}, "
                             f"not '{self.train_precision}'")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, "
                             f"not '{self.schedule}'")


TRAIN_PRECISIONS = ("bf16", "fp32")
SCHEDULES = ("continuous", "lockstep")
# engine settings that change only speed (and, for train_precision, a training step's
# rounding — shown to leave IIA unchanged within the protocol's ±0.02); never the budget
SPEED_ONLY = ("eval_chunk", "fits_per_forward", "train_precision", "workers", "schedule")


@dataclass
class FitSpec:
    key: str
    alignment: str
    k: int
    train: PairTensors
    valid: PairTensors
    test: PairTensors
    seed: int = 0
    # claim order on the continuous schedule: fits of higher priority start first (ties
    # in the given order), so a fit likely to run long does not start last and leave one
    # process training it alone. Order only: a fit's numbers do not depend on when it starts
    priority: int = 0


@dataclass
class FitResult:
    key: str
    alignment: str
    k: int
    valid_iia: float
    test_iia: float
    valid_loss: float
    steps: int
    best_step: int
    stop_reason: str
    test_correct: np.ndarray = field(repr=False)  # (N_test,) bool per pair
    state: dict = field(repr=False, default_factory=dict)  # best alignment slice
