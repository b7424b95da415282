"""The hand-written training recurrences (models/fused.py) against autograd through the
models' own steppers: same logits, same gradient, in float32 and under bf16 autocast."""

import pytest
import torch
import torch.nn.functional as F

from models_helpers import tiny
from numbench.models.contract import left_align
from numbench.sequences import generate


@pytest.fixture(scope="module")
def ids(multi):
    return torch.from_numpy(generate(multi, 6, seed=1, void_p=0.2).ids)


def packed_case(model, ids, seed=0):
    """A packed resume: rows sorted longest first, rows of length 1 and 0, a hole in select."""
    g = torch.Generator().manual_seed(seed)
    pos = torch.tensor([0, 1, 2, 0, 3, 1])
    lengths = torch.tensor([8, 7, 7, 4, 1, 0])
    select = torch.arange(ids.shape[1] + 1)[None, :] < lengths[:, None]
    select[1, 3] = False
    h = model.activations(ids, "hidden")[torch.arange(len(ids)), pos].detach()
    h = h + 0.3 * torch.randn(h.shape, generator=g)  # an edited state, not the model's own
    targets = torch.randint(0, model.vocab_size, (int(select.sum()),), generator=g)
    return h, left_align(ids, pos + 1), select, lengths.tolist(), targets


def loss_and_grad(model, case, fused, low):
    h, suffix, select, lengths, targets = case
    h = h.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=low):
        logits = model.resume("hidden", h, suffix, select, lengths, fused=fused)
    F.cross_entropy(logits.float(), targets).backward()
    return logits.detach().float(), h.grad


@pytest.mark.parametrize("arch", ["gru", "lstm"])
def test_fused_backward_is_autograds_in_float32(arch, multi, ids):
    model = tiny(arch, multi)
    for p in model.parameters():
        p.requires_grad_(False)
    case = packed_case(model, ids)
    ref_logits, ref_grad = loss_and_grad(model, case, fused=False, low=False)
    logits, grad = loss_and_grad(model, case, fused=True, low=False)
    assert model.fused_training
    assert (logits - ref_logits).abs().max() <= 1e-5  # tanh as 2 sigmoid(2x) - 1
    assert ref_grad.abs().max() > 1e-3  # the gradient reaches the state (non-vacuous)
    assert (grad - ref_grad).abs().max() <= 1e-5 * ref_grad.abs().max()
    # a row of length 1 is read at position i only, one of length 0 not at all
    assert grad[-2].abs().max() > 0 and grad[-1].abs().max() == 0


@pytest.mark.parametrize("arch", ["gru", "lstm"])
def test_fused_under_bf16_autocast_rounds_only_products(arch, multi, ids):
    """Under a training step's autocast the fused path's products are bf16 (it differs from
    float32) yet its gradient stays close to autograd's bf16 step and to float32's."""
    model = tiny(arch, multi)
    for p in model.parameters():
        p.requires_grad_(False)
    case = packed_case(model, ids, seed=1)
    _, exact = loss_and_grad(model, case, fused=True, low=False)
    _, auto_low = loss_and_grad(model, case, fused=False, low=True)
    _, fused_low = loss_and_grad(model, case, fused=True, low=True)
    scale = exact.abs().max()
    assert 0 < (fused_low - exact).abs().max() <= 0.05 * scale
    assert (fused_low - auto_low).abs().max() <= 0.05 * scale


def test_fused_is_used_in_training_steps_only(multi, ids):
    """Without grad (validation, scoring) ``fused`` is ignored: the model's own arithmetic."""
    model = tiny("gru", multi)
    h, suffix, select, lengths, _ = packed_case(model, ids)
    with torch.no_grad():
        plain = model.resume("hidden", h, suffix, select, lengths)
        asked = model.resume("hidden", h, suffix, select, lengths, fused=True)
    assert torch.equal(plain, asked)
