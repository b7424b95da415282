"""A tiny real model and a small engine budget, so whole evaluations run in seconds."""

from numbench.evaluate import Settings
from numbench.protocol import engine_config

TINY_ENGINE = engine_config(max_steps=6, eval_every=3, fits_per_forward=16, eval_chunk=1000)


def tiny_settings(seed=0):
    return Settings(seed=seed, engine=TINY_ENGINE)
