"""Alignment functions: each checked against a plain computation from its parameters."""

import math

import pytest
import torch

from numbench.alignments import (ALIGNMENTS, COND_BOUND, Alignment, LinearAlignment,
                                 OrthogonalAlignment, make_alignment, register_alignment)
from numbench.errors import NumbenchError

D, K = 8, 3
KINDS = ["orthogonal", "linear", "sd_linear", "full", "random"]
TRAINABLE = ["orthogonal", "linear", "sd_linear"]


def pair(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g), torch.randn(*shape, generator=g)


def mask(d, k):
    return torch.diag((torch.arange(d) < k).float())


def oblique(al: LinearAlignment, seed=1):
    """Give a linear alignment random singular values and V, so P is oblique."""
    g = torch.Generator().manual_seed(seed)
    v, _ = torch.linalg.qr(torch.randn(al.d, al.d, generator=g))
    al.set_factors(log_scale=torch.rand(al.d, generator=g) * 3 - 1.5, v=v)
    return al


def reference_projector(al) -> torch.Tensor:
    """P built by hand from the alignment's parameters (count 1)."""
    if al.name == "orthogonal":
        q, r = torch.linalg.qr(al.u_weight[0])
        q = q * torch.sign(torch.diagonal(r))
        upper = al.v_skew[0].triu(1)
        a = upper - upper.T
        q = al.v_base[0] @ torch.linalg.inv(torch.eye(al.d) - a) @ (torch.eye(al.d) + a) @ q
        return q @ q.T
    if al.name == "random":
        return al.basis[0] @ al.basis[0].T
    if al.name == "full":
        return torch.eye(al.d)
    if al.name == "linear":
        m = al.matrix()[0]
        return torch.linalg.inv(m) @ mask(al.d, al.k) @ m
    if al.name == "sd_linear":
        c, s = al.c[0].double(), al.s[0].double()
        m = (c @ c.T + 0.1 * torch.eye(al.d, dtype=torch.float64)) @ torch.diag(s)
        return (torch.linalg.inv(m) @ mask(al.d, al.k).double() @ m).float()
    raise AssertionError(al.name)


def test_registry_lists_the_protocol_kinds():
    assert list(ALIGNMENTS)[:5] == KINDS
    assert [n for n in KINDS if ALIGNMENTS[n].trainable] == TRAINABLE
    with pytest.raises(NumbenchError, match="not registered"):
        make_alignment("nope", D, K)


@pytest.mark.parametrize("name", KINDS)
def test_forward_is_base_plus_projected_difference(name):
    al = make_alignment(name, D, K, seed=3)
    if name == "linear":
        oblique(al)
    hb, hs = pair(2, 5, D)
    p = reference_projector(al)
    want = hb + (hs - hb) @ p.T
    out = al(hb, hs)
    assert out.shape == hb.shape
    torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(al.projector(), p, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out, hb, atol=1e-3)  # it did edit something
    if name != "full":
        assert not torch.allclose(out, hs, atol=1e-3)


@pytest.mark.parametrize("name", KINDS)
def test_projector_is_idempotent_with_rank_k(name):
    al = make_alignment(name, D, K, seed=4)
    if name == "linear":
        oblique(al)
    p = al.projector()
    torch.testing.assert_close(p @ p, p, atol=1e-5, rtol=0)
    assert torch.linalg.matrix_rank(p) == al.k == (D if name == "full" else K)


@pytest.mark.parametrize("name", KINDS)
def test_same_source_and_base_is_identity(name):
    al = make_alignment(name, D, K, seed=5)
    h, _ = pair(7, D)
    torch.testing.assert_close(al(h, h), h, atol=1e-6, rtol=0)


def test_orthogonal_basis_is_the_cayley_rotation_of_the_gram_schmidt_of_its_weight():
    al = make_alignment("orthogonal", D, K, seed=6)
    q, w = al.basis()[0], al.u_weight[0]
    torch.testing.assert_close(q.T @ q, torch.eye(K), atol=1e-5, rtol=0)
    r = q.T @ w  # at init V = I, so w = q r with r upper triangular, positive diagonal
    torch.testing.assert_close(q @ r, w, atol=1e-5, rtol=0)
    assert torch.all(r.tril(-1).abs() < 1e-5) and torch.all(torch.diagonal(r) > 0)
    with torch.no_grad():  # a skew part rotates the basis: Q_k = V U_k, V orthogonal
        al.v_skew.copy_(0.1 * torch.randn(1, D, D, generator=torch.Generator().manual_seed(3)))
    upper = al.v_skew[0].triu(1)
    a = upper - upper.T
    v = torch.linalg.solve(torch.eye(D) - a, torch.eye(D) + a)
    torch.testing.assert_close(al.basis()[0], v @ q, atol=1e-5, rtol=0)
    torch.testing.assert_close(v @ v.T, torch.eye(D), atol=1e-5, rtol=0)
    p = al.projector()
    torch.testing.assert_close(p, p.T, atol=1e-6, rtol=0)
    torch.testing.assert_close(p @ p, p, atol=1e-5, rtol=0)


def test_orthogonal_is_linear_without_scales():
    """Same init, same rotation parameters: the same projector, step for step, while the
    linear alignment's scales stay at 0."""
    orth, lin = make_alignment("orthogonal", D, K, seed=12), make_alignment("linear", D, K, seed=12)
    with torch.no_grad():
        skew = 0.2 * torch.randn(1, D, D, generator=torch.Generator().manual_seed(13))
        orth.v_skew.copy_(skew)
        lin.v_skew.copy_(skew)
    torch.testing.assert_close(orth.projector(), lin.projector(), atol=1e-5, rtol=0)


def test_linear_starts_orthogonal_and_leaves_symmetry_after_a_step():
    lin, orth = make_alignment("linear", D, K, seed=7), make_alignment("orthogonal", D, K, seed=7)
    torch.testing.assert_close(lin.projector(), orth.projector(), atol=1e-5, rtol=0)
    hb, hs = pair(64, D)
    target = torch.randn(64, D, generator=torch.Generator().manual_seed(8))
    opt = torch.optim.Adam(lin.parameters(), lr=0.1)
    ((lin(hb, hs) - target) ** 2).mean().backward()
    opt.step()
    p, v = lin.projector(), lin.v()[0]
    assert (p - p.T).abs().max() > 1e-2
    torch.testing.assert_close(p @ p, p, atol=1e-5, rtol=0)
    assert lin.v_skew.abs().max() > 0  # V moved away from its base …
    torch.testing.assert_close(v @ v.T, torch.eye(D), atol=1e-5, rtol=0)  # … and is orthogonal
    torch.testing.assert_close(p, reference_projector(lin), atol=1e-5, rtol=1e-5)


def test_linear_contains_orthogonal():
    orth = make_alignment("orthogonal", D, K, seed=9)
    q_k = orth.basis()[0]
    lin = make_alignment("linear", D, K, seed=10)
    lin.set_factors(u_k=q_k, log_scale=torch.zeros(D), v=torch.eye(D))
    m = lin.matrix()[0]
    torch.testing.assert_close(m[:K].T, q_k, atol=1e-5, rtol=0)  # M = Qᵀ
    torch.testing.assert_close(m @ m.T, torch.eye(D), atol=1e-5, rtol=0)
    hb, hs = pair(16, D)
    torch.testing.assert_close(lin(hb, hs), orth(hb, hs), atol=1e-5, rtol=0)


def test_linear_reaches_projectors_no_orthogonal_one_equals():
    p = oblique(make_alignment("linear", D, K, seed=11)).projector()
    torch.testing.assert_close(p @ p, p, atol=1e-5, rtol=0)
    # every orthogonal projector is symmetric; this one is far from it
    assert (p - p.T).abs().max() > 0.1


def test_linear_stays_well_conditioned_under_adversarial_training():
    # target: an oblique projector [[I, X], [0, 0]] with |X| ~ 100, which needs cond(M) ≫ e^4
    target = torch.zeros(D, D)
    target[:K, :K] = torch.eye(K)
    target[:K, K:] = 100 * torch.randn(K, D - K, generator=torch.Generator().manual_seed(0))
    lin = make_alignment("linear", D, K, seed=12)
    opt = torch.optim.Adam(lin.parameters(), lr=0.1)
    for _ in range(200):
        opt.zero_grad()
        ((lin.projector() - target) ** 2).sum().backward()
        opt.step()
    m = lin.matrix()[0].double()
    assert torch.isfinite(m).all() and torch.isfinite(lin.projector()).all()
    cond = torch.linalg.cond(m).item()
    assert math.exp(3.5) < cond <= COND_BOUND * (1 + 1e-4)  # pushed to the bound, not past


def test_sd_linear_projector_formula_and_family():
    al = make_alignment("sd_linear", D, K, seed=13)
    with torch.no_grad():
        al.s.uniform_(0.5, 2.0, generator=torch.Generator().manual_seed(1))
    c, s = al.c[0], al.s[0]
    m = (c @ c.T + 0.1 * torch.eye(D)) * s  # scale column j by s_j
    torch.testing.assert_close(al.matrix()[0], m)
    torch.testing.assert_close(al.projector(), reference_projector(al), atol=1e-5, rtol=1e-4)
    assert (al.projector() - al.projector().T).abs().max() > 1e-2
    # with C = 0, M = 0.1·diag(s) is diagonal, so P is the coordinate mask D_k
    with torch.no_grad():
        al.c.zero_()
    torch.testing.assert_close(al.projector(), mask(D, K), atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", KINDS)
def test_batched_equals_separate(name):
    count = 3
    batch = make_alignment(name, D, K, count=count, seed=20)
    alone = [make_alignment(name, D, K, seed=20 + a) for a in range(count)]
    if name == "linear":  # an oblique point, the same in every copy of slice a
        for a, one in enumerate(alone):
            oblique(one, seed=a)
            batch.load_slice(a, one.slice_state(0))
    hb, hs = pair(count, 2, 5, D)
    weights = torch.randn(count, 2, 5, D, generator=torch.Generator().manual_seed(2))
    out = batch(hb, hs)
    if batch.trainable:
        (out * weights).sum().backward()
    for a, one in enumerate(alone):
        out_a = one(hb[a], hs[a])
        torch.testing.assert_close(out[a], out_a, atol=1e-6, rtol=0)
        if one.trainable:
            (out_a * weights[a]).sum().backward()
        for (key, p_batch), (_, p_one) in zip(batch.named_parameters(), one.named_parameters()):
            torch.testing.assert_close(p_batch[a], p_one[0], atol=1e-6, rtol=0, msg=key)
            torch.testing.assert_close(p_batch.grad[a], p_one.grad[0], atol=1e-6, rtol=0,
                                       msg=key)
            assert p_one.grad.abs().max() > 0
    torch.testing.assert_close(batch.single(1).projector(), alone[1].projector())


@pytest.mark.parametrize("name", KINDS)
def test_factors_of_some_slices_are_those_slices_bit_for_bit(name):
    """The engine factorizes only the slices of fits still training (``factors_of``): the
    same bits, forward and gradient, as factorizing all and keeping those slices."""
    count, slots = 4, [3, 1]
    al = make_alignment(name, D, K, count=count, seed=5)
    if name == "linear":
        for a in range(count):
            one = oblique(make_alignment(name, D, K, seed=a), seed=a)
            al.load_slice(a, one.slice_state(0))
    hb, hs = pair(len(slots), 6, D)
    weights = torch.randn(len(slots), 6, D, generator=torch.Generator().manual_seed(3))
    runs = []
    for part in (True, False):
        al.zero_grad(set_to_none=True)
        if part:
            out = al.interchange(hb, hs, al.factors_of(slots))
        else:  # every slice, the others on zeros, then keep these
            zeros = hb.new_zeros(count, 6, D)
            where = torch.tensor(slots)
            out = al.apply(zeros.index_copy(0, where, hb), zeros.index_copy(0, where, hs),
                           al.factors())[where]
        if al.trainable:
            (out * weights).sum().backward()
        runs.append((out, [p.grad.clone() for p in al.parameters()]))
    (part_out, part_grads), (all_out, all_grads) = runs
    assert torch.equal(part_out, all_out)
    assert not torch.equal(part_out, hb)  # the interchange changed something
    for g_part, g_all in zip(part_grads, all_grads):
        assert torch.equal(g_part, g_all)
        assert g_part[slots].abs().max() > 0 and g_part[[0, 2]].abs().max() == 0
    full_l, full_r = al.factors()
    l, r = al.factors_of(slots)
    assert torch.equal(l, full_l[slots]) and torch.equal(r, full_r[slots])


def test_batched_rejects_wrong_leading_dimension():
    al = make_alignment("orthogonal", D, K, count=3)
    hb, hs = pair(4, D)
    with pytest.raises(ValueError, match="A=3"):
        al(hb, hs)


@pytest.mark.parametrize("name", KINDS)
def test_init_is_deterministic_and_leaves_global_rng_alone(name):
    state = torch.get_rng_state()
    a, b = make_alignment(name, D, K, seed=30), make_alignment(name, D, K, seed=30)
    c = make_alignment(name, D, K, seed=31)
    assert torch.equal(torch.get_rng_state(), state)
    torch.testing.assert_close(a.projector(), b.projector(), atol=0, rtol=0)
    if name not in ("full", "sd_linear"):  # those two have a seed-free projector at init
        assert not torch.allclose(a.projector(), c.projector())


@pytest.mark.parametrize("name", ["full", "random"])
def test_controls_are_not_trainable(name):
    al = make_alignment(name, D, K, seed=0)
    assert not al.trainable
    assert not any(p.requires_grad for p in al.parameters())
    assert al.k == (D if name == "full" else K)


def test_a_user_alignment_registers():
    @register_alignment
    class CoordinateAlignment(Alignment):  # swaps the first k coordinates
        name = "test_coordinates"
        trainable = False

        def __init__(self, d, k, count=1, seed=0):
            super().__init__(d, k, count)

        def factors(self):
            e = torch.eye(self.d, self.k).expand(self.count, self.d, self.k)
            return e, e.mT

    try:
        al = make_alignment("test_coordinates", D, K)
        assert isinstance(al, CoordinateAlignment)
        hb, hs = pair(4, D)
        torch.testing.assert_close(al(hb, hs), torch.cat([hs[:, :K], hb[:, K:]], dim=1))
    finally:
        del ALIGNMENTS["test_coordinates"]


def test_orthogonal_learns_a_known_direction():
    d = 16
    g = torch.Generator().manual_seed(40)
    basis, _ = torch.linalg.qr(torch.randn(d, d, generator=g))
    u, v = basis[:, 0], basis[:, 1]  # the variable's direction and another feature
    readout = torch.stack([u, v])  # a frozen "model" reading both
    hb, hs = torch.randn(256, d, generator=g), torch.randn(256, d, generator=g)
    # counterfactual: the variable takes the source's value, the other feature stays
    target = torch.stack([hs @ u, hb @ v], dim=1)
    al: OrthogonalAlignment = make_alignment("orthogonal", d, 1, seed=41)
    opt = torch.optim.Adam(al.parameters(), lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        loss = ((al(hb, hs) @ readout.T - target) ** 2).mean()
        loss.backward()
        opt.step()
    assert loss.item() < 1e-3
    assert abs(al.basis()[0, :, 0] @ u) > 0.99
