"""The readout MLP shared by the recurrent reference models: d -> hidden -> GELU -> V."""

from torch import nn


class ReadoutMLP(nn.Sequential):
    """Linear -> GELU -> Linear, with the GELU always in float32: under a bf16 training
    step's autocast the two products run in bf16 (most of a step's work) while the
    activation keeps full precision; outside autocast this is the plain MLP, bit for bit.
    An ``nn.Sequential`` so the parameters keep their names (``0.weight``, ``2.weight``)."""

    def forward(self, x):
        first, act, second = self
        return second(act(first(x).float()))

    def train_forward(self, x):
        """A fused training step's readout (``models/fused.py``): the GELU reads the bf16
        product as it is. Its value is then rounded to bf16 for the second product either
        way; skipping the float32 round trip only saves two casts and a slower kernel."""
        first, act, second = self
        return second(act(first(x)))


def readout_mlp(d_in: int, d_hidden: int, vocab_size: int) -> ReadoutMLP:
    return ReadoutMLP(nn.Linear(d_in, d_hidden), nn.GELU(), nn.Linear(d_hidden, vocab_size))
