"""The general alignment contract h' = f⁻¹(D f(h_s) + (I − D) f(h_b)) (issue 25, item 2)
and its two built-in non-projector kinds, ``boundless`` (a soft, annealed mask) and
``revnet`` (a nonlinear, exactly invertible f): each against its formula, base = source,
exact inversion, slice independence, factors of a subset, and training through the
engine's paths beside a projector kind; the documented example file too."""

from pathlib import Path

import pytest
import torch

from numbench.alignments import (ALIGNMENTS, BoundlessAlignment, RevNetAlignment,
                                 has_fit_step, learned_size_of, make_alignment, registry)
from numbench.alignments.base import take_slices
from numbench.engine import Engine, FitSpec, run
from numbench.engine.paths import Cut
from numbench.engine.schedule import adam_step
from numbench.pairs import make_pairs

from models_helpers import tiny
from test_das import data, no_stop, tensors

D, K = 8, 3
NEW = ["boundless", "revnet"]
ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "coupling.py"


def pair(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g), torch.randn(*shape, generator=g)


def moved(al, seed=0, scale=0.3):
    """``al`` with every parameter moved off its init (as training would), per slice from
    its own generator, so no coupling is the identity and every gradient is nonzero."""
    with torch.no_grad():
        for a in range(al.count):
            g = torch.Generator().manual_seed(seed + a)
            for p in al.parameters():
                p[a] += scale * torch.randn(p[a].shape, generator=g)
    return al


def kinds(example=False):
    return NEW + (["coupling"] if example else [])


def build(name, *args, **kw):
    if name == "coupling" and name not in ALIGNMENTS:
        registry.load_alignment_module(EXAMPLE)
    return make_alignment(name, *args, **kw)


# -- the contract ------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(ALIGNMENTS))
def test_every_kind_returns_the_base_when_the_source_is_the_base(name):
    """Exactly, projector or not, at init and moved (a nonlinear kind computes
    h_b + (f⁻¹(z') − f⁻¹(f(h_b))), which is h_b itself when nothing is swapped)."""
    al = make_alignment(name, D, K, count=2, seed=5)
    h, _ = pair(2, 30, D)
    if has_fit_step(type(al)):
        for a in range(2):
            al.fit(a, h[a], h[a], torch.randint(0, 5, (30, 1)))
    assert torch.equal(al(h, h), h)
    if al.trainable:
        assert torch.equal(moved(al)(h, h), h)


def test_revnet_inverts_to_1e5_and_is_no_projector():
    """f⁻¹(f(h)) = h to 1e-5 in float32, with weights far from their init (f then
    stretches some directions ~10×, so f(f⁻¹(h)) is held to 1e-5 at milder weights); in
    float64 both to 1e-12: the inverse is exact, only rounding is left."""
    for d, k, count, seed in ((8, 3, 1, 0), (7, 2, 3, 4), (33, 16, 2, 9)):
        al = moved(make_alignment("revnet", d, k, count=count, seed=seed), seed)
        h = pair(count, 50, d, seed=seed)[0].squeeze(0)
        z = al.transform(h)
        assert (z - h).abs().max() > 1.0  # f is far from the identity
        torch.testing.assert_close(al.inverse(z), h, atol=1e-5, rtol=0)
        al64, h64 = al.double(), h.double()
        torch.testing.assert_close(al64.inverse(al64.transform(h64)), h64, atol=1e-12, rtol=0)
        torch.testing.assert_close(al64.transform(al64.inverse(h64)), h64, atol=1e-12, rtol=0)
        mild = moved(make_alignment("revnet", d, k, count=count, seed=seed), seed, scale=0.1)
        torch.testing.assert_close(mild.transform(mild.inverse(h)), h, atol=1e-5, rtol=0)
    with pytest.raises(TypeError, match="not a projector"):
        al.projector()


def test_revnet_is_its_formula_and_nonlinear():
    al = moved(make_alignment("revnet", D, K, seed=2))
    hb, hs = pair(40, D, seed=1)
    mask = (torch.arange(D) < K).float()
    want = al.inverse(mask * al.transform(hs) + (1 - mask) * al.transform(hb))
    torch.testing.assert_close(al(hb, hs), want, atol=1e-5, rtol=0)
    # not h_b + P (h_s − h_b) for any P: the edit of a sum is not the sum of the edits
    zero = torch.zeros(1, D)
    lin = lambda x: al(zero.expand_as(x), x)
    assert (lin(hs[:20] + hs[20:]) - lin(hs[:20]) - lin(hs[20:])).abs().max() > 1e-2


def test_revnet_starts_equal_to_orthogonal_and_records_its_size():
    hb, hs = pair(3, 20, 16)
    rev = make_alignment("revnet", 16, 5, count=3, seed=7)
    orth = make_alignment("orthogonal", 16, 5, count=3, seed=7)
    torch.testing.assert_close(rev(hb, hs), orth(hb, hs), atol=1e-5, rtol=0)
    assert (RevNetAlignment.width, RevNetAlignment.depth) == (64, 2)
    assert "width=64, depth=2" in repr(rev)


def test_boundless_is_its_formula_with_an_annealed_soft_mask():
    al = moved(make_alignment("boundless", D, K, count=2, seed=1))
    hb, hs = pair(2, 30, D, seed=3)
    v, m = al.rotation(), al.mask()
    torch.testing.assert_close(v @ v.mT, torch.eye(D).expand(2, D, D), atol=1e-5, rtol=0)
    want = (m[:, None] * (hs @ v) + (1 - m[:, None]) * (hb @ v)) @ v.mT
    torch.testing.assert_close(al(hb, hs), want, atol=1e-5, rtol=0)
    # τ is each slice's own: only slice 1 steps
    assert al.temperature().tolist() == [1.0, 1.0]
    for _ in range(BoundlessAlignment.anneal_steps // 2):
        al.after_step([1])
    assert al.steps.tolist() == [0, BoundlessAlignment.anneal_steps // 2]
    torch.testing.assert_close(al.temperature(), torch.tensor([1.0, 0.1]))
    for _ in range(BoundlessAlignment.anneal_steps):  # held at the end
        al.after_step([0, 1])
    torch.testing.assert_close(al.temperature(), torch.tensor([0.01, 0.01]))
    hard = (al.mask_logits > 0).float()
    assert ((al.mask() - hard).abs() < 0.05).float().mean() > 0.5  # mostly hard now


def test_boundless_starts_at_k_and_reports_the_size_it_learned():
    al = make_alignment("boundless", 16, 5, count=2, seed=7)
    assert [al.learned_size(a) for a in range(2)] == [5, 5]
    assert learned_size_of(al.slice_state(1)) == 5
    assert torch.equal(al.mask()[0] > 0.5, torch.arange(16) < 5)
    # its hard version starts as orthogonal's initial subspace
    orth = make_alignment("orthogonal", 16, 5, count=2, seed=7)
    q = al.rotation()[..., :5]
    torch.testing.assert_close(q @ q.mT, orth.projector(), atol=1e-5, rtol=0)
    with torch.no_grad():
        al.mask_logits[1, 5:9] = 0.5
    assert (al.learned_size(0), al.learned_size(1)) == (5, 9)
    assert learned_size_of({k: v.numpy() for k, v in al.slice_state(1).items()}) == 9


@pytest.mark.parametrize("name", kinds(example=True))
def test_batched_slices_are_independent(name, registry_kept):
    """Slice a of a count-3 module computes, and gets the gradients, of a count-1 module
    with slice a's seed (both moved off their init alike)."""
    count = 3
    batch = build(name, D, K, count=count, seed=20)
    alone = [moved(build(name, D, K, seed=20 + a), seed=a) for a in range(count)]
    for a, one in enumerate(alone):
        fresh = build(name, D, K, seed=20 + a)
        for key, value in fresh.slice_state(0).items():  # same init as the batch's slice
            assert torch.equal(value, batch.slice_state(a)[key]), key
        batch.load_slice(a, one.slice_state(0))
    hb, hs = pair(count, 2, 5, D)
    weights = torch.randn(count, 2, 5, D, generator=torch.Generator().manual_seed(2))
    out = batch(hb, hs)
    (out * weights).sum().backward()
    for a, one in enumerate(alone):
        out_a = one(hb[a], hs[a])
        torch.testing.assert_close(out[a], out_a, atol=1e-6, rtol=0)
        (out_a * weights[a]).sum().backward()
        for (key, p_batch), (_, p_one) in zip(batch.named_parameters(), one.named_parameters()):
            torch.testing.assert_close(p_batch.grad[a], p_one.grad[0], atol=1e-6, rtol=1e-5,
                                       msg=key)
            assert p_one.grad.abs().max() > 0, key


@pytest.mark.parametrize("name", kinds(example=True))
def test_factors_of_some_slices_are_those_slices_bit_for_bit(name, registry_kept):
    """What the engine calls once some fits have stopped: the same bits, forward and
    gradient, as all the factors cut to those slices — whatever the factors hold."""
    count, slots = 4, [3, 1]
    al = moved(build(name, D, K, count=count, seed=5))
    if name == "boundless":
        al.after_step([1, 2])  # slices at different temperatures
    hb, hs = pair(len(slots), 6, D)
    weights = torch.randn(len(slots), 6, D, generator=torch.Generator().manual_seed(3))
    runs = []
    for part in (True, False):
        al.zero_grad(set_to_none=True)
        if part:
            factors = al.factors_of(slots)
        else:
            factors = take_slices(al.factors(), slots)
        out = al.interchange(hb, hs, factors)
        (out * weights).sum().backward()
        runs.append((out, [p.grad.clone() for p in al.parameters()]))
    (part_out, part_grads), (all_out, all_grads) = runs
    assert torch.equal(part_out, all_out)
    assert not torch.equal(part_out, hb)
    for g_part, g_all in zip(part_grads, all_grads):
        assert torch.equal(g_part, g_all)
        assert g_part[slots].abs().max() > 0 and g_part[[0, 2]].abs().max() == 0


def test_adam_step_advances_the_slices_that_stepped():
    class Fit:  # what adam_step reads of a fit
        def __init__(self, module, slot):
            self.module, self.slot, self.lr_scale = module, slot, 1.0

    al = make_alignment("boundless", D, K, count=3)
    opt = torch.optim.Adam(al.parameters(), lr=1e-2)
    hb, hs = pair(3, 4, D)
    for fits in ([0, 1, 2], [0, 2], [2]):
        opt.zero_grad()
        al(hb, hs).sum().backward()
        adam_step(opt, [Fit(al, a) for a in fits])
    assert al.steps.tolist() == [2, 1, 3]


# -- through the engine ------------------------------------------------------------------

def _initial_test_iia(model, spec):
    engine = Engine(model, "hidden", config=no_stop(1))
    _, ok = engine.score(engine.make_fits([spec]), "test")
    return float(ok.mean())


@pytest.mark.integration  # long fits
def test_both_train_through_the_engine_beside_a_projector(small_gru, multi):
    """One run, one forward a step: a projector module and both nonlinear ones train side
    by side (Engine.edit → factors_of → interchange) and beat their start on test IIA;
    boundless counted exactly its own steps (its kept state's τ is its best step's)."""
    tr, va, te = data(multi, "up_down", "count", n_train=512, n_eval=200)
    specs = [FitSpec(name, name, 4, tr, va, te, seed=1)
             for name in ("orthogonal", "boundless", "revnet")]
    start = {s.alignment: _initial_test_iia(small_gru, s) for s in specs}
    results = run(Engine(small_gru, "hidden", config=no_stop(100)), specs)
    for r in results:
        assert r.steps == 100 and r.best_step > 0, r
        assert r.test_iia > start[r.alignment] + 0.2, (r.alignment, start, r.test_iia)
    bound = results[1]
    assert int(bound.state["steps"]) == bound.best_step
    assert 1 <= learned_size_of(bound.state) <= small_gru.sites["hidden"]


@pytest.mark.integration  # long fits
def test_the_step_count_holds_on_the_cut_path(multi):
    """In prefix mode the engine's Cut path computes factors once per length group and the
    edit runs at every position: the count still advances once per optimizer step."""
    model = tiny("gru", multi, seed=2)
    tr, va, te = [tensors(make_pairs(multi, "up_down", "count", s, mode="prefix"), n)
                  for s, n in (("train", 128), ("valid", 40), ("test", 40))]
    engine = Engine(model, "hidden", "prefix", config=no_stop(7))
    assert isinstance(engine.train_path, Cut)
    res = run(engine, [FitSpec("b", "boundless", 3, tr, va, te),
                       FitSpec("r", "revnet", 3, tr, va, te)])
    assert res[0].steps == 7
    assert int(res[0].state["steps"]) == res[0].best_step
    assert all(torch.isfinite(torch.as_tensor(v, dtype=torch.float)).all()
               for r in res for v in r.state.values())


# -- the documented example --------------------------------------------------------------

def test_the_documented_nonlinear_example_is_shown_verbatim_and_trains(
        small_gru, multi, registry_kept):
    doc = (ROOT / "docs" / "alignments.md").read_text(encoding="utf-8")
    marker = "<!-- example: docs/examples/coupling.py -->"
    assert f"{marker}\n```python\n{EXAMPLE.read_text()}```" in doc
    assert registry.load_alignment_module(EXAMPLE) == ["coupling"]
    h, _ = pair(2, 10, D)
    al = make_alignment("coupling", D, K, count=2, seed=3)
    assert torch.equal(moved(al)(h, h), h)
    tr, va, te = data(multi, "up_down", "count", n_train=512, n_eval=200)
    spec = FitSpec("c", "coupling", 4, tr, va, te, seed=1)
    start = _initial_test_iia(small_gru, spec)
    result, = run(Engine(small_gru, "hidden", config=no_stop(100)), [spec])
    assert result.steps == 100 and result.state
    assert result.test_iia > start + 0.2, (start, result.test_iia)


def test_a_result_records_what_boundless_and_revnet_learned():
    """``Alignment.describe``: what evaluate writes into a cell's ``method``."""
    from numbench.alignments import make_alignment

    b = make_alignment("boundless", 8, 3, count=2, seed=0)
    with torch.no_grad():
        b.mask_logits[1, :5] = 2.0  # slice 1 keeps five coordinates
    assert type(b).describe(b.slice_state(0)) == {"learned_size": 3}
    assert type(b).describe(b.slice_state(1)) == {"learned_size": 5}
    r = make_alignment("revnet", 8, 3)
    assert type(r).describe(r.slice_state(0)) == {"width": r.width, "depth": r.depth}
    assert type(make_alignment("linear", 8, 3)).describe({}) == {}
