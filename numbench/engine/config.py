"""What the engine takes and gives: pair sets as tensors, a budget and speed settings,
fit specs and fit results. Nothing here computes."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
import torch

from ..machine import default_train_precision

TRAIN_PRECISIONS = ("bf16", "fp32")
SCHEDULES = ("continuous", "lockstep")


@dataclass(frozen=True)
class PairTensors:
    """A pair set as tensors. ``cf_scored`` marks input positions whose next token counts;
    ``values``, where the caller has them, the value each pair writes into each variable
    (what an alignment's fit step may read: ``Alignment.fit``)."""

    base_ids: torch.Tensor  # (N, Tb) base tokens (cf_ids[:, :i+1] == base_ids[:, :i+1])
    cf_ids: torch.Tensor  # (N, T) counterfactual tokens
    cf_scored: torch.Tensor  # (N, T) bool
    base_pos: torch.Tensor  # (N,) position i
    src_ids: torch.Tensor  # (N, Ts) source tokens
    src_pos: torch.Tensor  # (N,) position j
    values: torch.Tensor | None = None  # (N, |V|) int64, or None: not known

    def __len__(self) -> int:
        return len(self.base_pos)


@dataclass(frozen=True, kw_only=True)
class Budget:
    """How long a fit trains, and when it stops. The protocol decides it
    (``numbench/protocol.py``); the engine only follows it.

    Adam at ``lr``, ``batch_size`` pairs a step, valid IIA every ``eval_every`` steps; a
    fit stops at valid IIA ≥ ``stop_iia``, after ``patience`` validations without a
    ``min_delta`` fall of valid loss (the first ``lr_decays`` times this multiplies the
    fit's learning rate by ``lr_decay`` instead), at valid IIA < ``fail_iia`` after
    ``fail_after`` steps, or at ``max_steps``."""

    lr: float
    batch_size: int
    max_steps: int
    eval_every: int
    stop_iia: float
    patience: int
    min_delta: float
    fail_after: int
    fail_iia: float
    lr_decays: int
    lr_decay: float


@dataclass(frozen=True, kw_only=True)
class Speed:
    """Settings that change only how fast fits train, never which alignment a fit ends
    with (``train_precision`` changes a training step's rounding: shown to leave IIA
    unchanged within the protocol's ±0.02). ``speed_defaults`` gives them per device."""

    eval_chunk: int = 250  # pairs per fit per no-grad forward
    # most fits in one training forward, and in flight in one process on the continuous
    # schedule: 640 rows keep a d=128 recurrence in a CPU's cache
    fits_per_forward: int = 5
    # matrix products of a training step: "bf16" (autocast; on a CPU 2-4x faster where it
    # has bf16 dot products, ~30x slower where it has none) or "fp32". Validation and
    # scoring always run in float32: every reported IIA is exact float32 arithmetic.
    train_precision: str = field(default_factory=default_train_precision)
    # processes that train a run's fits side by side, one core each (CPU only: parallel.py)
    workers: int = 2
    # "continuous": a process keeps fits_per_forward fits in flight and starts a waiting
    # fit as soon as one stops, each on its own step count (schedule.py); "lockstep": a
    # part's fits start together and step together until the last stops. Continuous
    # needs a fit's arithmetic not to depend on which fits share its forward
    # (Engine.continuous says where it holds); elsewhere fits step in lockstep.
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


@dataclass(frozen=True, kw_only=True)
class EngineConfig(Speed, Budget):
    """A budget and speed settings, flat, as a result records them (``settings.engine``)."""


BUDGET_KEYS = tuple(f.name for f in fields(Budget))
SPEED_ONLY = tuple(f.name for f in fields(Speed))


def speed_defaults(device: torch.device | str = "cpu") -> dict:
    """The speed settings that suit ``device``. A CPU: worker processes, a few fits a
    forward, bf16 training products where the CPU has bf16 dot products. A GPU: one
    process with many fits a forward in lockstep (a GPU step costs about the same for 64
    fits as for 5), bf16 training products where the GPU has them."""
    device = torch.device(device)
    if device.type == "cpu":
        return {f.name: getattr(Speed(), f.name) for f in fields(Speed)}
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return {"eval_chunk": 2000, "fits_per_forward": 64, "workers": 1, "schedule": "lockstep",
            "train_precision": "bf16" if bf16 else "fp32"}


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
    # this fit's own ``max_steps`` and ``patience`` in place of the budget's (the control
    # rules a budget-study candidate tries: ``numbench.protocol.CONTROL_RULES``)
    max_steps: int | None = None
    patience: int | None = None


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
