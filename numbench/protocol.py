"""The fixed evaluation protocol as data: every constant that shapes a ranked number.

``PROTOCOL_DIGEST`` is the sha256 of this table; every result records it, so two numbers
are comparable exactly when their protocol versions and digests match.
"""

from __future__ import annotations

from dataclasses import asdict

from .das import EngineConfig
from .hashing import sha256_json
from .pairs import PAIR_SPLITS, PERMUTATION_SEED

PROTOCOL_VERSION = "1"
PROGRAMS = ("up_down", "up_up")
RANKED_ALIGNMENTS = ("orthogonal", "linear")
BASELINE_ALIGNMENTS = ("full", "random")  # untrained: the whole vector, a random subspace
SWEEP_KS = (1, 2, 4, 8, 16, 32)
RANDOM_INIT_SEED = 7919  # the random-init control model's seed (plus the run's seed)


def ranked_k(d: int) -> int:
    """Ranked subspace size: min(16, d/2)."""
    return max(1, min(16, d // 2))


def sweep_ks(d: int) -> list[int]:
    return [k for k in SWEEP_KS if k < d]


PROTOCOL = {
    "version": PROTOCOL_VERSION,
    "programs": PROGRAMS,
    "ranked_alignments": RANKED_ALIGNMENTS,
    "baseline_alignments": BASELINE_ALIGNMENTS,
    "ranked_k": "min(16, d // 2)",
    "sweep_ks": SWEEP_KS,
    "pair_splits": {k: list(v) for k, v in PAIR_SPLITS.items()},
    "permutation_seed": PERMUTATION_SEED,
    "random_init_seed": RANDOM_INIT_SEED,
    # speed-only settings are left out (the later ones were added after version 1's digest)
    "engine": {k: v for k, v in asdict(EngineConfig()).items()
               if k not in ("train_precision", "workers", "train_kernels", "schedule",
                            "causal_training")}
              | {"eval_chunk": None, "fits_per_forward": None},
    "best_site": "highest valid IIA per (program, variable, alignment); test IIA reported",
    "gate_tolerance": 1e-5,
}
PROTOCOL_DIGEST = sha256_json(PROTOCOL)
