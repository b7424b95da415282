"""The model contract for all four architectures: no-op fidelity, hook oracle, non-vacuity."""

import pytest
import torch

from numbench.accuracy import free_running_correct, sequence_correct
from numbench.models.checks import (check_noop, check_prefix_edit, check_resume, check_shapes,
                                   check_single_edit)
from numbench.sequences import generate

from models_helpers import ARCHS, oracle, tiny


@pytest.fixture(scope="module")
def ids(request):
    from numbench.tasks import load_task

    task = load_task("multi_object")
    return torch.from_numpy(generate(task, 6, seed=1, void_p=0.2).ids)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("mode", ["single", "prefix"])
def test_noop_interchange_reproduces_plain_logits(arch, mode, multi, ids):
    model = tiny(arch, multi)
    check_shapes(model, ids)
    check_noop(model, ids, torch.tensor([1, 2, 3, 5, 8, 4]), mode)


@pytest.mark.parametrize("arch", ARCHS)
def test_single_edit_matches_hook_oracle_and_changes_only_the_future(arch, multi, ids):
    check_single_edit(tiny(arch, multi), ids, torch.tensor([1, 2, 3, 5, 8, 4]), oracle)


@pytest.mark.parametrize("arch", ARCHS)
def test_prefix_edit_matches_oracle_position_by_position(arch, multi, ids):
    check_prefix_edit(tiny(arch, multi), ids, torch.tensor([2, 1, 3, 0, 4, 2]), oracle)


@pytest.mark.parametrize("arch", ["gru", "lstm", "rnn"])
def test_resume_restarts_from_an_edited_state_without_the_prefix(arch, multi, ids):
    check_resume(tiny(arch, multi), ids, torch.tensor([3, 1, 2, 6, 5, 4]),
                 lengths=torch.tensor([9, 7, 7, 4, 2, 1]))


@pytest.mark.parametrize("site", ["embed", "block0", "block1"])
def test_run_tail_is_the_edited_run_from_the_interchange_on(multi, ids, site):
    """run_tail against the model's own edited forward: the same logits from pos on, the
    same gradient into the new activation; rows that share a head share it exactly."""
    model = tiny("transformer", multi)
    for p in model.parameters():
        p.requires_grad_(False)
    ids = torch.cat([ids, ids[:2]])  # rows 6, 7 repeat rows 0, 1: shared heads
    pos = torch.tensor([3, 1, 2, 6, 5, 4, 3, 2])
    new = torch.randn(len(ids), model.sites[site], requires_grad=True)
    T, length = ids.shape[1], 9
    whole = model.run(ids, site, pos, lambda h, r, t: new[r], "single")
    tail = model.run_tail(ids, site, pos, new, length)
    assert tail.shape == (len(ids), length, len(multi.vocabulary))
    places = pos[:, None] + torch.arange(length)[None, :]
    inside = (places < T)[..., None]
    want = whole.gather(1, places.clamp(max=T - 1)[..., None].expand(-1, -1, whole.shape[-1]))
    assert ((tail - want).abs() * inside).max() <= 1e-5
    weights = torch.randn(want.shape) * inside
    g_whole, = torch.autograd.grad((want * weights).sum(), new)
    g_tail, = torch.autograd.grad((tail * weights).sum(), new)
    assert (g_tail - g_whole).abs().max() <= 1e-5 * g_whole.abs().max()
    assert g_whole.abs().max() > 0  # the weights reached the edit (non-vacuous)
    plain = model.run(ids).gather(1, places.clamp(max=T - 1)[..., None].expand(-1, -1, whole.shape[-1]))
    assert ((tail - plain).abs() * inside).max() > 1e-3  # the edit changed the tail
    reach = model.tail_reach(site)  # the last residual stream reaches its own position only
    assert reach == (1 if site == "block1" else None)
    if reach is not None:
        assert ((tail - plain).abs() * inside)[:, reach:].max() <= 1e-5
        assert (model.run_tail(ids, site, pos, new, reach) - want[:, :reach]).abs().max() <= 1e-5
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a bf16 training step: close
        low = model.run_tail(ids, site, pos, new, length)
    assert 0 < ((low.float() - want).abs() * inside).max() <= 0.05 * want.abs().max()


@pytest.mark.parametrize("site", ["embed", "block0", "block1"])
def test_run_tail_packed_is_run_tail_without_the_padding(multi, ids, site):
    """The transformer's packed tails (and the contract's default, cut from run_tail; and
    with the heads from one or two ``head_cache``s) against run_tail: the same logits at
    each row's own places, or at the kept ones only, and the same gradient into the new
    activation."""
    from numbench.models import TailRunnable
    from numbench.models.packing import Packing

    model = tiny("transformer", multi)
    for p in model.parameters():
        p.requires_grad_(False)
    ids = torch.cat([ids, ids[:2]])  # rows 6, 7 repeat rows 0, 1: shared heads
    pos = torch.tensor([3, 1, 2, 6, 5, 4, 0, 2])
    T = ids.shape[1]
    torch.manual_seed(2)
    for lengths in (torch.tensor([5, 9, 2, 7, 1, 3, T, 4]), torch.ones(len(ids), dtype=torch.long)):
        new = torch.randn(len(ids), model.sites[site], requires_grad=True)
        want = Packing.of(lengths).unpad(model.run_tail(ids, site, pos, new, int(lengths.max())))
        keep = torch.rand(len(want)) < 0.6
        weights = torch.randn(want.shape)
        g_want, = torch.autograd.grad((want * weights).sum(), new, retain_graph=True)
        g_kept, = torch.autograd.grad((want[keep] * weights[keep]).sum(), new, retain_graph=True)
        assert g_want.abs().max() > 0 and not torch.equal(g_want, g_kept)  # non-vacuous
        one = [(model.head_cache(ids, "embed", pos), torch.arange(8))]
        two = [(model.head_cache(ids[:5], "embed", pos[:5]), torch.arange(5)),
               (model.head_cache(ids[5:], "embed", pos[5:]), torch.arange(3))]
        for run in (model.run_tail_packed, lambda *a: TailRunnable.run_tail_packed(model, *a),
                    lambda *a: model.run_tail_packed(*a, cached=one),
                    lambda *a: model.run_tail_packed(*a, cached=two)):
            got = run(ids, site, pos, new, lengths)
            assert got.shape == want.shape and (got - want).abs().max() <= 1e-5
            g, = torch.autograd.grad((got * weights).sum(), new)
            assert (g - g_want).abs().max() <= 1e-5 * g_want.abs().max()
            kept = run(ids, site, pos, new, lengths, keep)
            assert kept.shape == want[keep].shape and (kept - want[keep]).abs().max() <= 1e-5
            g, = torch.autograd.grad((kept * weights[keep]).sum(), new)
            assert (g - g_kept).abs().max() <= 1e-5 * g_kept.abs().max()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a bf16 training step: close
        low = model.run_tail_packed(ids, site, pos, new, lengths)
    assert 0 < (low.float() - want).abs().max() <= 0.05 * want.abs().max()


def test_head_cache_holds_each_rows_keys_and_values_before_pos(multi, ids):
    """A transformer's head cache against each block's keys and values of the residual
    stream read at the sites (the model's public activations): rows that share a head
    share one entry (in a cache, and in a step), and rows given by two caches come back in
    order, each with its own head's tokens."""
    from numbench.models.head_cache import HeadCache

    model = tiny("transformer", multi)
    ids = torch.cat([ids, ids[:2]])  # rows 6, 7 repeat rows 0, 1
    pos = torch.tensor([3, 1, 2, 6, 5, 4, 3, 0])
    cache = model.head_cache(ids, "block0", pos)
    assert model.head_cache(ids, "block1", pos) is None  # the last site: only the readout follows
    assert len(cache.lengths) == 7 and cache.head_of[6] == cache.head_of[0]  # shared
    sites = list(model.sites)
    with torch.no_grad():
        want = [block.keys_values(model.activations(ids, site))
                for block, site in zip(model.blocks, sites)]  # (B, H, T, dh) each
    runs = [(cache, torch.tensor([5, 0, 7])), (model.head_cache(ids[2:], "block0", pos[2:]),
                                                 torch.tensor([1, 4])),
            (cache, torch.tensor([6]))]
    rows = torch.tensor([5, 0, 7, 3, 6, 6])
    got = HeadCache.gather(runs)
    assert len(got) == len(model.blocks)
    for heads, (wk, wv) in zip(got, want):
        assert heads.lengths[heads.of].tolist() == pos[rows].tolist()
        assert heads.of[5] == heads.of[1] and len(heads.lengths) == 5  # row 6 shares row 0's
        for i, r in enumerate(rows.tolist()):
            at = slice(int(heads.starts[heads.of[i]]), int(heads.starts[heads.of[i]]) + int(pos[r]))
            for z, w in ((heads.keys, wk), (heads.values, wv)):
                assert torch.allclose(z[at], w[r, :, : pos[r]].transpose(0, 1), atol=1e-6)
    assert heads.keys.abs().sum() > 0  # non-vacuous
    assert HeadCache.gather([(cache, torch.tensor([7]))]) is None  # no row has a head


def test_lstm_site_sequence_matches_cell_loop(multi, ids):
    model = tiny("lstm", multi)
    seq = model.activations(ids, "hidden")
    state = None
    for t in range(ids.shape[1]):
        _, state = model.scan(ids[:, t : t + 1], state)
        assert (model.site_from_state(state) - seq[:, t]).abs().max() <= 1e-5


@pytest.mark.parametrize("arch, config, steps", [
    ("gru", {"d_embed": 32, "d_hidden": 32, "d_readout": 64}, 150),
    ("transformer", {"d_model": 32, "d_mlp": 64}, 40),
])
def test_teacher_forced_equals_free_running_accuracy(arch, config, steps, multi):
    from numbench.training import TrainConfig, train

    # a briefly trained model: right on some sequences and wrong on others
    res = train(arch, multi, 0, config=config,
                train_config=TrainConfig(max_steps=steps, eval_every=10_000, valid_size=10,
                                         pool_size=2000, lr=3e-3))
    batch = generate(multi, 60, seed=5, counts=multi.all_counts, void_p=0.1)
    tf, fr = sequence_correct(res.model, batch), free_running_correct(res.model, batch)
    assert 0 < tf.sum() < len(tf)  # non-vacuous: both outcomes occur
    assert (tf == fr).all()


def test_unknown_site_is_refused(multi, ids):
    with pytest.raises(KeyError, match="no site 'nope'"):
        tiny("gru", multi).run(ids, "nope", torch.zeros(6, dtype=torch.long), lambda h, r, t: h)
