"""The DAS engine against a plain reference loop; stopping rules; gate helpers."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from numbench.alignments import make_alignment
from numbench.engine import Engine, FitSpec, PairTensors, run, train_together
from numbench.engine.parallel import deal, shown_progress
from numbench.engine.paths import Cut, Packed
from numbench.protocol import engine_config
from numbench.machine import fp32_rows_exact, one_thread
from numbench.gate import identity_logit_diff
from numbench.models.speed import bf16_training
from numbench.pairs import make_pairs


def tensors(p, n):
    T = torch.from_numpy
    return PairTensors(T(p.base.ids[:n]), T(p.counterfactual.ids[:n]),
                       T(p.counterfactual.scored[:n]), T(p.base_pos[:n]), T(p.source.ids[:n]),
                       T(p.source_pos[:n]))


def data(task, program, variable, n_train=1024, n_eval=300, permuted=False):
    return [tensors(make_pairs(task, program, variable, s, permuted=permuted), n)
            for s, n in (("train", n_train), ("valid", n_eval), ("test", n_eval))]


def plain_iia(model, site, align, pairs: PairTensors):
    """Reference IIA: run the whole counterfactual with the interchange, no caching."""
    with torch.no_grad():
        rows = torch.arange(len(pairs))
        h_s = model.activations(pairs.src_ids, site)[rows, pairs.src_pos]
        logits = model.run(pairs.cf_ids, site, pairs.base_pos,
                           lambda h, r, t: align(h, h_s[r]), "single")
        tg = torch.cat([pairs.cf_ids[:, 1:], pairs.cf_ids[:, -1:]], 1)
        ok = (logits.argmax(-1) == tg) | ~pairs.cf_scored
        return float(ok.all(1).float().mean())


def plain_fit(model, site, kind, k, seed, train_p, valid_p, steps, batch=128, lr=1e-3,
              eval_every=25):
    """The straightforward loop: one alignment, full forward every step, best valid kept."""
    align = make_alignment(kind, model.sites[site], k, seed=seed)
    opt = torch.optim.Adam(align.parameters(), lr=lr)
    order_gen = torch.Generator().manual_seed(0)
    order, cursor = torch.randperm(len(train_p), generator=order_gen), 0
    tg_all = torch.cat([train_p.cf_ids[:, 1:], train_p.cf_ids[:, -1:]], 1)
    best, best_state = plain_iia(model, site, align, valid_p), align.slice_state(0)
    for step in range(1, steps + 1):
        if cursor + batch > len(train_p):
            order, cursor = torch.randperm(len(train_p), generator=order_gen), 0
        idx = order[cursor : cursor + batch]
        cursor += batch
        h_s = model.activations(train_p.src_ids[idx], site)[torch.arange(batch), train_p.src_pos[idx]]
        logits = model.run(train_p.cf_ids[idx], site, train_p.base_pos[idx],
                           lambda h, r, t: align(h, h_s[r]), "single")
        m = train_p.cf_scored[idx]
        loss = F.cross_entropy(logits[m], tg_all[idx][m])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % eval_every == 0:
            iia = plain_iia(model, site, align, valid_p)
            if iia > best:
                best, best_state = iia, align.slice_state(0)
    align.load_slice(0, best_state)
    return align


def no_stop(steps):
    return engine_config(max_steps=steps, eval_every=25, stop_iia=2.0, patience=10**6, lr=1e-2,
                        fail_after=10**6, fits_per_forward=3)


@pytest.fixture(scope="module")
def plain_test_iia(small_gru, multi):
    """The plain loop's test IIA for an alignment kind (count of Up-Down, k 4, seed 11, 150
    steps): one reference, trained once, for every engine variant it is compared with."""
    cache = {}

    def get(kind: str) -> float:
        if kind not in cache:
            tr, va, te = data(multi, "up_down", "count")
            ref = plain_fit(small_gru, "hidden", kind, 4, 11, tr, va, steps=150, lr=1e-2)
            cache[kind] = plain_iia(small_gru, "hidden", ref, te)
        return cache[kind]

    return get


@pytest.mark.parametrize("precision,kernels", [
    ("bf16", "fused"), ("bf16", "autograd"), ("fp32", "fused"), ("fp32", "autograd")])
@pytest.mark.parametrize("kind", ["orthogonal", "linear"])
@pytest.mark.integration  # trains the plain reference loop
def test_fast_engine_matches_plain_loop(small_gru, multi, plain_test_iia, kind, precision, kernels):
    for p in small_gru.parameters():
        p.requires_grad_(False)
    tr, va, te = data(multi, "up_down", "count")
    other = data(multi, "up_up", "phase")  # batched beside it, must not disturb it
    specs = [FitSpec("count", kind, 4, tr, va, te, seed=11),
             FitSpec("phase", kind, 4, *other, seed=12),
             FitSpec("count2", "orthogonal", 2, tr, va, te, seed=13)]
    config = dataclasses.replace(no_stop(150), train_precision=precision)
    res = run(Engine(small_gru, "hidden", config=config, reference=kernels == "autograd"), specs, seed=0)
    init_iia = plain_iia(small_gru, "hidden", make_alignment(kind, 32, 4, seed=11), te)
    assert abs(res[0].test_iia - plain_test_iia(kind)) <= 0.02
    assert res[0].test_iia > init_iia + 0.05  # training did something (non-vacuous)


def test_engine_scores_equal_plain_scores_for_fixed_alignments(small_gru, multi):
    """No training: the engine's IIA of full/random equals the plain computation exactly."""
    tr, va, te = data(multi, "up_down", "count", n_train=128)
    specs = [FitSpec("full", "full", 32, tr, va, te), FitSpec("rand", "random", 8, tr, va, te, seed=3)]
    res = run(Engine(small_gru, "hidden", config=engine_config()), specs)
    same = lambda x: pytest.approx(x, abs=1e-6)  # equal counts; float32 vs float64 means
    assert res[0].test_iia == same(plain_iia(small_gru, "hidden", make_alignment("full", 32, 32), te))
    assert res[1].test_iia == same(plain_iia(small_gru, "hidden", make_alignment("random", 32, 8, seed=3), te))
    assert res[0].stop_reason == "untrained"


def test_transformer_generic_path_and_prefix_mode(multi):
    from models_helpers import tiny

    model = tiny("transformer", multi)
    tr, va, te = data(multi, "up_down", "count", n_train=256, n_eval=64)
    train = lambda: run(Engine(model, "block0", config=no_stop(10)),
                        [FitSpec("a", "orthogonal", 4, tr, va, te)])
    res = train()
    assert 0.0 <= res[0].test_iia <= 1.0 and res[0].steps == 10
    again = train()  # the tail path, heads shared through torch.unique: deterministic
    assert again[0].valid_loss == res[0].valid_loss
    assert all(torch.equal(again[0].state[k], v) for k, v in res[0].state.items())
    pre = [tensors(make_pairs(multi, "up_down", "count", s, mode="prefix"), n)
           for s, n in (("train", 256), ("valid", 64), ("test", 64))]
    full = run(Engine(model, "block1", "prefix", engine_config()), [FitSpec("f", "full", 16, *pre)])
    # swapping the whole residual stream at every position 0..i of block1 is exact, so the
    # prefix-interchanged run equals the counterfactual run of the source itself only
    # when i = j: check against the plain computation instead
    with torch.no_grad():
        t = pre[2]
        src_acts = model.activations(t.src_ids, "block1")
        logits = model.run(t.cf_ids, "block1", t.base_pos, lambda h, r, tt: src_acts[r, tt], "prefix")
        tg = torch.cat([t.cf_ids[:, 1:], t.cf_ids[:, -1:]], 1)
        ok = ((logits.argmax(-1) == tg) | ~t.cf_scored).all(1).float().mean()
    assert full[0].test_iia == pytest.approx(float(ok), abs=1e-6)


def test_length_groups_change_the_work_not_the_numbers(multi, monkeypatch):
    """The generic path cuts rows of similar length after their last scored place; the
    fits must train and score as they would on whole, padded rows in one forward."""
    from numbench.engine import paths
    from models_helpers import tiny

    model = tiny("transformer", multi)
    tr, va, te = data(multi, "up_down", "count", n_train=256, n_eval=128)
    groups = paths.length_groups([Engine(model, "block0", config=engine_config()).prepare(te)],
                                 torch.arange(128)[None])
    assert len(groups) == 4 and min(w for _, w in groups) < te.cf_ids.shape[1]  # real cuts
    specs = lambda: [FitSpec("a", "linear", 4, tr, va, te, seed=1),
                     FitSpec("b", "random", 4, tr, va, te, seed=2)]
    config = no_stop(10)  # the reference engine: the cut path trains too
    grouped = run(Engine(model, "embed", config=config, reference=True), specs())
    whole = lambda data, idx: [(torch.arange(idx.shape[1]), data[0].ids.shape[1])]
    monkeypatch.setattr(paths, "length_groups", whole)
    plain = run(Engine(model, "embed", config=config, reference=True), specs())
    for g, p in zip(grouped, plain):
        assert g.valid_loss == pytest.approx(p.valid_loss, rel=1e-4)
        assert (g.test_correct == p.test_correct).all()
    rand = make_alignment("random", model.sites["embed"], 4, seed=2)
    assert grouped[1].test_iia == pytest.approx(plain_iia(model, "embed", rand, te), abs=1e-6)


@pytest.mark.parametrize("site", ["embed", "block0", "block1"])
def test_tail_training_step_has_the_whole_forwards_gradient(multi, site, monkeypatch):
    """A transformer's training step from the interchange on, rows packed without padding
    (with the heads from a cache per pair set, and without one: recomputed every step)
    against its whole forward (the reference engine): the same gradient of every fit's
    alignment in float32, close in bf16; fits of two pair sets (two caches) and two kinds
    share the step."""
    from models_helpers import tiny

    model = tiny("transformer", multi)
    one = data(multi, "up_down", "count", n_train=256, n_eval=64)
    other = data(multi, "up_up", "phase", n_train=256, n_eval=64)
    specs = [FitSpec("a", "linear", 4, *one, seed=1), FitSpec("b", "orthogonal", 4, *other, seed=2),
             FitSpec("c", "orthogonal", 4, *one, seed=3)]
    grads = {}
    ways = [("full", "fp32"), ("packed", "fp32"), ("packed", "bf16"), ("cached", "fp32"), ("cached", "bf16")]
    cache = model.head_cache
    for how, precision in ways:
        monkeypatch.setattr(model, "head_cache", cache if how == "cached" else lambda *a: None)
        engine = Engine(model, site, config=engine_config(train_precision=precision),
                        reference=how == "full")
        assert isinstance(engine.train_path, Packed if how != "full" else Cut)
        fits = engine.make_fits(specs)
        engine.train_step(fits, torch.arange(0, 256, 2))
        modules = {id(f.module): f.module for f in fits}.values()
        grads[how, precision] = torch.cat([p.grad.flatten() for m in modules for p in m.parameters()])
    want = grads["full", "fp32"]
    assert want.abs().max() > 0
    for how in ("packed", "cached"):
        assert (grads[how, "fp32"] - want).abs().max() <= 1e-4 * want.abs().max()
        assert 0 < (grads[how, "bf16"] - want).norm() <= 0.1 * want.norm()


def test_prefix_training_step_runs_bf16_products_around_a_float32_edit(multi, monkeypatch):
    """Prefix mode has no tail: a transformer's training step runs its whole forward under
    bf16 autocast, the alignment's edit outside it (the reference engine: float32)."""
    from numbench.alignments.linear import LinearAlignment
    from models_helpers import tiny

    model = tiny("transformer", multi)
    pre = [tensors(make_pairs(multi, "up_down", "count", s, mode="prefix"), n)
           for s, n in (("train", 128), ("valid", 32), ("test", 32))]
    seen = []
    interchange = LinearAlignment.interchange
    monkeypatch.setattr(LinearAlignment, "interchange", lambda self, *a: seen.append(
        (torch.is_autocast_enabled("cpu"), a[0].dtype)) or interchange(self, *a))
    grads = {}
    for how, precision in (("full", "bf16"), ("tail", "fp32"), ("tail", "bf16")):
        engine = Engine(model, "block0", "prefix", config=engine_config(train_precision=precision),
                        reference=how == "full")
        assert isinstance(engine.train_path, Cut)  # no tail in prefix mode
        assert engine.train_path.bf16 == (how != "full" and precision == "bf16")
        fits = engine.make_fits([FitSpec("a", "linear", 4, *pre, seed=1)])
        engine.train_step(fits, torch.arange(64))
        grads[how, precision] = torch.cat([p.grad.flatten() for p in fits[0].module.parameters()])
    want = grads["tail", "fp32"]
    assert want.abs().max() > 0 and torch.equal(grads["full", "bf16"], want)  # float32 both
    assert 0 < (grads["tail", "bf16"] - want).norm() <= 0.1 * want.norm()
    assert seen and all(not on and dtype == torch.float32 for on, dtype in seen)


@pytest.mark.integration  # long fits
def test_stopping_rules(small_gru, multi):
    tr, va, te = data(multi, "up_down", "count", n_train=512, n_eval=100)
    cfg = engine_config(max_steps=400, eval_every=20, patience=2, min_delta=10.0,  # never improves
                       lr_decays=0)
    res = run(Engine(small_gru, "hidden", config=cfg), [FitSpec("p", "orthogonal", 2, tr, va, te)])
    assert res[0].stop_reason == "plateau" and res[0].steps == 40
    # a fit's own patience (and max_steps, even above the budget's) in place of the budget's
    res = run(Engine(small_gru, "hidden", config=dataclasses.replace(cfg, max_steps=60)),
              [FitSpec("p", "orthogonal", 2, tr, va, te, patience=4, max_steps=100)])
    assert res[0].stop_reason == "plateau" and res[0].steps == 80
    # with a decay the first plateau lowers the learning rate, the second one stops
    cfg = dataclasses.replace(cfg, lr_decays=1)
    res = run(Engine(small_gru, "hidden", config=cfg), [FitSpec("p", "orthogonal", 2, tr, va, te)])
    assert res[0].stop_reason == "plateau" and res[0].steps == 80
    # a decay that falls on the last step still ends the fit there
    res = run(Engine(small_gru, "hidden", config=dataclasses.replace(cfg, max_steps=40)),
              [FitSpec("p", "orthogonal", 2, tr, va, te)])
    assert res[0].stop_reason == "max_steps" and res[0].steps == 40
    cfg = engine_config(max_steps=400, eval_every=20, fail_after=60, fail_iia=1.01)
    res = run(Engine(small_gru, "hidden", config=cfg), [FitSpec("f", "orthogonal", 2, tr, va, te)])
    assert res[0].stop_reason == "failing" and res[0].steps == 60
    cfg = engine_config(max_steps=400, eval_every=20, stop_iia=0.0)
    res = run(Engine(small_gru, "hidden", config=cfg), [FitSpec("s", "orthogonal", 2, tr, va, te)])
    assert res[0].stop_reason == "reached_iia" and res[0].steps == 0


def test_identity_logit_diff_is_zero_and_detects_a_broken_model(small_gru, multi):
    b = multi.split("iid")
    ids, pos = torch.from_numpy(b.ids[:32]), torch.full((32,), 3)
    assert identity_logit_diff(small_gru, "hidden", ids, pos) <= 1e-5

    class Broken(type(small_gru)):
        def run(self, ids, site=None, pos=None, edit=None, mode="single"):
            out = super().run(ids, site, pos, edit, mode)
            return out + 1e-3 if edit is not None else out

    broken = Broken(small_gru.config, small_gru.vocabulary)
    broken.load_state_dict(small_gru.state_dict())
    assert identity_logit_diff(broken.eval(), "hidden", ids, pos) > 1e-4


def test_results_come_in_spec_order_whatever_the_grouping(small_gru, multi):
    tr, va, te = data(multi, "up_down", "count", n_train=128, n_eval=50)
    specs = [FitSpec(key, kind, 2, tr, va, te) for key, kind in
             (("a", "orthogonal"), ("b", "linear"), ("c", "orthogonal"), ("d", "full"))]
    res = run(Engine(small_gru, "hidden", config=no_stop(2)), specs)
    assert [r.key for r in res] == ["a", "b", "c", "d"]
    assert [r.alignment for r in res] == ["orthogonal", "linear", "orthogonal", "full"]


def test_bf16_rounds_training_steps_only_and_only_where_the_model_allows_it(small_gru, multi):
    """train_precision="bf16" changes a GRU's training trajectory (its products do run in
    bf16) but not how a fixed alignment is scored; a model that does not declare
    ``bf16_training`` (the Elman plugin) trains bit for bit as in float32."""
    from models_helpers import tiny

    tr, va, te = data(multi, "up_down", "count", n_train=256, n_eval=100)
    spec = lambda: [FitSpec("a", "orthogonal", 4, tr, va, te, seed=5),
                    FitSpec("r", "random", 4, tr, va, te, seed=6)]
    train = lambda model, precision: run(Engine(model, "hidden", config=dataclasses.replace(
        no_stop(30), train_precision=precision)), spec())
    low, full = train(small_gru, "bf16"), train(small_gru, "fp32")
    assert not torch.equal(low[0].state["u_weight"], full[0].state["u_weight"])
    assert low[1].valid_loss == full[1].valid_loss  # untrained: scored alike, in float32
    assert (low[1].test_correct == full[1].test_correct).all()
    rnn = tiny("rnn", multi)
    assert not bf16_training(rnn)
    a, b = train(rnn, "bf16"), train(rnn, "fp32")
    assert torch.equal(a[0].state["u_weight"], b[0].state["u_weight"]) and a[0].valid_loss == b[0].valid_loss


@pytest.mark.integration
@pytest.mark.parametrize("schedule,workers", [("lockstep", 2), ("continuous", 2), ("continuous", 3)])
def test_worker_processes_change_the_speed_not_the_numbers(small_gru, multi, schedule, workers):
    """Fits trained across this process and worker processes train exactly as in one
    forward: a fit's rows never mix with another's, and every fit sees the same batches.
    Lockstep: three parts on two processes; continuous: one fit at a time per process, so
    with two processes the third fit starts, in whichever is free first, after another
    stops; with three, each process may take one (more cores: `--workers N`)."""
    tr, va, te = data(multi, "up_down", "count", n_train=256, n_eval=100)
    other = data(multi, "up_up", "phase", n_train=256, n_eval=100)
    specs = lambda: [FitSpec("a", "orthogonal", 4, tr, va, te, seed=1),
                     FitSpec("b", "linear", 4, *other, seed=2),
                     FitSpec("f", "full", 32, tr, va, te),
                     FitSpec("c", "orthogonal", 2, *other, seed=3)]
    seen = []
    engine = lambda w, n, s: Engine(small_gru, "hidden", config=dataclasses.replace(
        no_stop(40), workers=w, fits_per_forward=n, schedule=s))
    with one_thread():  # as every process runs with workers (float32 products on more
        one = run(engine(1, 8, "lockstep"), specs())  # threads may round rows differently)
    two = run(engine(workers, 1, schedule), specs(), on_step=lambda *a: seen.append(a))
    assert engine(workers, 1, schedule).continuous == (schedule == "continuous")
    assert [r.key for r in two] == ["a", "b", "f", "c"]
    for x, y in zip(one, two):
        assert x.valid_loss == y.valid_loss and (x.test_correct == y.test_correct).all()
        assert all(torch.equal(x.state[k], y.state[k]) for k in x.state)
    # progress from the processes too; a continuous process runs its fits one after another
    # (two processes: two or, if the worker starts late, all three; three: one or more)
    furthest = max(step for step, _, _ in seen)
    lengths = {40} if schedule == "lockstep" else {80, 120} | ({40} if workers == 3 else set())
    assert furthest in lengths
    assert all(0 <= active <= 3 for _, active, _ in seen)
    # a part that has finished no longer holds the shown step (parts still to start: step 0)
    assert shown_progress({0: (5800, 0, 0.98), 1: (300, 5, 0.5), 2: (0, 5, 0.0)}) == (300, 10, 0.98)
    assert shown_progress({0: (5800, 0, 0.98), 1: (900, 0, 0.5)}) == (5800, 0, 0.98)
    # parts are dealt in snake order, so a repeating pattern of kinds splits evenly
    assert deal(8, 2) == [0, 1, 1, 0, 0, 1, 1, 0] and deal(5, 3) == [0, 1, 2, 2, 1]
    engine = Engine(small_gru, "hidden", config=engine_config(fits_per_forward=8))
    assert [len(c) for c in engine.chunks(list(range(10)))] == [5, 5]  # equal chunks


@pytest.mark.integration  # long fits
def test_continuous_schedule_starts_waiting_fits_without_changing_them(small_gru, multi):
    """Two places in flight, five fits stopping at different steps: each waiting fit starts
    when another stops, on its own step count, batches and Adam — and ends bit for bit
    where lockstep training (all five from step 1 in one forward) leaves it."""
    sets = {(p, v): data(multi, p, v, n_train=256, n_eval=100)
            for p, v in (("up_down", "count"), ("up_down", "phase"), ("up_up", "phase"))}
    specs = lambda: [FitSpec(f"{p}/{v}/{kind}", kind, 4, *sets[p, v], seed=len(p + v + kind))
                     for (p, v) in sets for kind in ("orthogonal", "linear")][:5]
    config = lambda schedule: engine_config(max_steps=150, eval_every=25, lr=1e-2, stop_iia=0.6,
                                           patience=2, lr_decays=1,
                                           fits_per_forward=2 if schedule == "continuous" else 8,
                                           workers=1, schedule=schedule)
    steps = []
    stream = Engine(small_gru, "hidden", config=config("continuous"))
    assert stream.continuous
    got = run(stream, specs(), on_step=lambda step, active, best: steps.append((step, active)))
    with one_thread():  # as the continuous schedule runs (see test_worker_processes_...)
        want = run(Engine(small_gru, "hidden", config=config("lockstep")), specs())
    assert len({r.steps for r in want}) > 2  # they do stop at different times
    assert max(s for s, _ in steps) > max(r.steps for r in want)  # so some started late
    assert all(active <= 2 for _, active in steps)
    for x, y in zip(want, got):
        assert (x.key, x.steps, x.best_step, x.stop_reason) == (y.key, y.steps, y.best_step, y.stop_reason)
        assert x.valid_loss == y.valid_loss and (x.test_correct == y.test_correct).all()
        assert all(torch.equal(x.state[k], y.state[k]) for k in x.state)
    # float32 training products through autograd (whose row counts are not rounded up):
    # lockstep; through the fused kernels: continuous where float32 products are row-exact
    fp32 = lambda kernels: Engine(small_gru, "hidden", config=dataclasses.replace(
        config("continuous"), train_precision="fp32"), reference=kernels == "autograd").continuous
    assert not fp32("autograd") and fp32("fused") == fp32_rows_exact()


@pytest.mark.integration  # long fits
def test_priority_orders_the_claims_not_the_numbers(small_gru, multi, monkeypatch):
    """Fits of higher ``priority`` are claimed first (ties in the given order), and a fit
    ends where it ends when it starts first, whatever its place in the queue."""
    tr, va, te = data(multi, "up_down", "count", n_train=256, n_eval=100)
    priorities = [0, 2, 1, 2, 0]
    specs = lambda prio: [FitSpec(f"f{i}", ("orthogonal", "linear")[i % 2], 4, tr, va, te,
                                  seed=i, priority=p if prio else 0) for i, p in enumerate(priorities)]
    claimed = []
    make_fits = Engine.make_fits
    monkeypatch.setattr(Engine, "make_fits", lambda self, s: claimed.extend(x.key for x in s)
                        or make_fits(self, s))
    engine = Engine(small_gru, "hidden", config=dataclasses.replace(
        no_stop(20), workers=1, fits_per_forward=1))
    got = run(engine, specs(True))
    assert claimed == ["f1", "f3", "f2", "f0", "f4"]
    claimed.clear()
    want = run(engine, specs(False))
    assert claimed == ["f0", "f1", "f2", "f3", "f4"]
    assert [r.key for r in got] == [r.key for r in want] == ["f0", "f1", "f2", "f3", "f4"]
    for x, y in zip(want, got):
        assert x.valid_loss == y.valid_loss and (x.test_correct == y.test_correct).all()
        assert all(torch.equal(x.state[k], y.state[k]) for k in x.state)


@pytest.mark.integration
def test_untrained_fits_prepare_on_one_thread_beside_worker_processes(small_gru, multi,
                                                                    monkeypatch):
    """On the continuous schedule the untrained fits run in this process (once the worker
    processes have started on the trained fits), and the pair sets they prepare are reused
    by whichever streamed fits train in this process. Worker processes
    run on one thread, and some models' float32 runs round differently on two (the LSTM's
    activations by up to 1e-5), so with workers this process prepares on one thread too:
    a fit's numbers must not depend on which process claimed it."""
    tr, va, te = data(multi, "up_down", "count", n_train=256, n_eval=100)
    specs = [FitSpec("full", "full", 32, tr, va, te), FitSpec("o", "orthogonal", 4, tr, va, te, seed=1),
             FitSpec("l", "linear", 4, tr, va, te, seed=2)]
    seen = []
    from numbench.engine import schedule

    lockstep = schedule.lockstep
    monkeypatch.setattr(schedule, "lockstep", lambda engine, s, seed=0, on_step=None:
                        seen.append(torch.get_num_threads()) or lockstep(engine, s, seed, on_step))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        run(Engine(small_gru, "hidden", config=dataclasses.replace(no_stop(10), workers=2)), specs)
        assert seen == [1] and torch.get_num_threads() == 2
        seen.clear()
        run(Engine(small_gru, "hidden", config=dataclasses.replace(no_stop(10), workers=1)), specs)
        assert seen == [1] and torch.get_num_threads() == 2  # continuous: one thread too
        seen.clear()
        run(Engine(small_gru, "hidden", config=dataclasses.replace(
            no_stop(10), workers=1, schedule="lockstep")), specs)
        assert seen == [2]  # one process in lockstep: torch's own threads, as before
    finally:
        torch.set_num_threads(threads)


@pytest.mark.integration  # worker processes
def test_prestarted_worker_processes_are_the_ones_a_run_then_uses():
    """evaluate starts its worker processes before its own work (``prestart``): a later
    run of as many workers takes that pool, started, rather than a new one."""
    from numbench.engine import parallel, prestart, schedule

    parallel.shutdown()
    prestart(1)  # one process in all: no worker
    assert parallel._pool is None
    prestart(2)
    pool = parallel._pool
    assert pool is not None and pool[0] == 1
    pool[1].submit(schedule.warm).result(timeout=120)
    assert len(pool[1]._processes) == 1
    assert parallel._start(1) is pool


@pytest.mark.parametrize("precision", [
    pytest.param("bf16", marks=pytest.mark.integration),  # emulated on most CPUs: slow
    "fp32"])
@pytest.mark.parametrize("arch", ["gru", "lstm"])
def test_continuous_schedule_is_lockstep_bit_for_bit_for_each_recurrent_model(multi, arch,
                                                                              precision):
    """One fit in flight at a time, so each later fit starts where the previous stopped:
    every fit ends where lockstep (all in one forward from step 1) leaves it, with bf16
    training products and with float32 ones (through the fused kernels, their row counts
    rounded up), wherever float32 products are row-exact (``machine.fp32_rows_exact``)."""
    from models_helpers import tiny

    model = tiny(arch, multi)
    assert bf16_training(model)
    tr, va, te = data(multi, "up_down", "count", n_train=256, n_eval=100)
    other = data(multi, "up_up", "phase", n_train=256, n_eval=100)
    specs = lambda: [FitSpec("a", "orthogonal", 4, tr, va, te, seed=1),
                     FitSpec("b", "linear", 4, *other, seed=2),
                     FitSpec("c", "orthogonal", 4, *other, seed=3)]
    engine = lambda n, s: Engine(model, "hidden", config=dataclasses.replace(
        no_stop(30), workers=1, fits_per_forward=n, schedule=s, train_precision=precision))
    train = lambda n, s: run(engine(n, s), specs())
    assert engine(1, "continuous").continuous == (precision == "bf16" or fp32_rows_exact())
    with one_thread():  # as the continuous schedule runs
        want = train(8, "lockstep")
    for x, y in zip(want, train(1, "continuous")):
        assert x.valid_loss == y.valid_loss and (x.test_correct == y.test_correct).all()
        assert all(torch.equal(x.state[k], y.state[k]) for k in x.state)


@pytest.mark.integration  # worker processes
def test_runs_of_two_models_train_together_as_they_would_apart(small_gru, multi):
    """``train_together`` streams two engines' fits (a trained and a random-init model, as
    evaluate's main fits and random-init controls) through one schedule on two processes;
    each run's results are what its own lockstep run gives."""
    torch.manual_seed(7)
    control = type(small_gru)(small_gru.config, small_gru.vocabulary).eval()
    tr, va, te = data(multi, "up_down", "count", n_train=256, n_eval=100)
    other = data(multi, "up_up", "phase", n_train=256, n_eval=100)
    specs = lambda: [FitSpec("a", "orthogonal", 4, tr, va, te, seed=1),
                     FitSpec("r", "random", 4, tr, va, te, seed=4),
                     FitSpec("b", "linear", 4, *other, seed=2)]
    config = lambda s: dataclasses.replace(no_stop(50), workers=2, fits_per_forward=1, schedule=s)
    together = train_together([(Engine(m, "hidden", config=config("continuous")), specs())
                               for m in (small_gru, control)], seed=3)
    for model, got in zip((small_gru, control), together):
        want = run(Engine(model, "hidden", config=config("lockstep")), specs(), seed=3)
        assert [r.key for r in got] == ["a", "r", "b"]
        for x, y in zip(want, got):
            assert x.valid_loss == y.valid_loss and (x.test_correct == y.test_correct).all()
            assert all(torch.equal(x.state[k], y.state[k]) for k in x.state)
    assert together[0][0].valid_loss != together[1][0].valid_loss  # two models, not one


@pytest.mark.integration  # worker processes
def test_a_plugin_architecture_trains_in_a_worker_process(multi):
    """An ``--arch-module`` architecture is loaded again in the worker process, and its
    fits train there as they do here (float32: equal up to how rows share a product)."""
    from models_helpers import tiny

    rnn = tiny("rnn", multi)
    tr, va, te = data(multi, "up_down", "count", n_train=256, n_eval=100)
    specs = lambda: [FitSpec("a", "orthogonal", 2, tr, va, te, seed=1),
                     FitSpec("b", "linear", 2, tr, va, te, seed=2)]
    train = lambda w: run(Engine(rnn, "hidden", config=dataclasses.replace(no_stop(20), workers=w)),
                          specs())
    one, two = train(1), train(2)
    for x, y in zip(one, two):
        assert x.steps == y.steps == 20
        assert x.valid_loss == pytest.approx(y.valid_loss, abs=1e-4)
        assert all(torch.allclose(x.state[k], y.state[k], atol=1e-4) for k in x.state)


@pytest.mark.parametrize("kind", ["orthogonal", "linear"])
def test_a_lowered_learning_rate_is_adam_at_that_rate_for_that_slice_alone(kind):
    """adam_step on a batch of two alignments, the second at lr_scale 0.1, against two
    alignments trained alone with Adam at lr and lr / 10."""
    from numbench.engine.schedule import adam_step

    class Fit:  # what adam_step reads of a fit
        def __init__(self, module, slot, scale):
            self.module, self.slot, self.lr_scale = module, slot, scale

    d, k = 8, 2
    batch = make_alignment(kind, d, k, count=2, seed=[3, 4])
    alone = [make_alignment(kind, d, k, seed=s) for s in (3, 4)]
    opt = torch.optim.Adam(batch.parameters(), lr=1e-2)
    opts = [torch.optim.Adam(a.parameters(), lr=lr) for a, lr in zip(alone, (1e-2, 1e-3))]
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        hb, hs, target = (torch.randn(2, 16, d, generator=g) for _ in range(3))
        opt.zero_grad()
        ((batch(hb, hs) - target) ** 2).sum().backward()
        adam_step(opt, [Fit(batch, 0, 1.0), Fit(batch, 1, 0.1)])
        for a, o, x, y, t in zip(alone, opts, hb, hs, target):
            o.zero_grad()
            ((a(x, y) - t) ** 2).sum().backward()
            o.step()
    for a in (0, 1):
        torch.testing.assert_close(batch.single(a).projector(), alone[a].projector(),
                                   atol=1e-6, rtol=1e-5)
    assert (batch.single(0).projector() - batch.single(1).projector()).abs().max() > 1e-3


@pytest.mark.parametrize("schedule,workers", [
    ("continuous", 1), pytest.param("lockstep", 1, marks=pytest.mark.integration),
    pytest.param("continuous", 2, marks=pytest.mark.integration)])
def test_a_fits_own_step_cap_stops_it_as_the_budgets_would(small_gru, multi, schedule, workers):
    """``FitSpec.max_steps`` is the budget's ``max_steps`` for that fit alone: it stops
    there, validated at its cap even off the cadence, as if the budget said so, and the fit
    beside it trains on to the budget's cap (in a worker process too: the cap travels)."""
    tr, va, te = data(multi, "up_down", "count", n_train=256, n_eval=100)
    config = lambda steps: dataclasses.replace(no_stop(steps), workers=workers, schedule=schedule,
                                               fits_per_forward=1 if workers > 1 else 3)
    specs = [FitSpec("capped", "linear", 4, tr, va, te, seed=1, max_steps=35),
             FitSpec("free", "orthogonal", 4, tr, va, te, seed=2)]
    with one_thread():
        got = run(Engine(small_gru, "hidden", config=config(50)), specs)
        alone = [run(Engine(small_gru, "hidden", config=config(n)), [dataclasses.replace(s, max_steps=None)])[0]
                 for n, s in ((35, specs[0]), (50, specs[1]))]
    for r, want, steps in zip(got, alone, (35, 50)):
        assert (r.steps, r.stop_reason) == (steps, "max_steps") == (want.steps, want.stop_reason)
        assert r.valid_loss == pytest.approx(want.valid_loss, rel=1e-5)
        assert (r.test_correct == want.test_correct).mean() >= 0.99
        if schedule == "continuous":  # a fit trains exactly as it would alone
            assert r.valid_loss == want.valid_loss and (r.test_correct == want.test_correct).all()
