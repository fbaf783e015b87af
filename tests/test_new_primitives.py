"""Properties of the numeric vocabulary beyond the registry contract (which checks each primitive's
batched implementation against its float64 reference): stochastic rounding is unbiased,
reproducible and step-dependent; ``addcmul`` rounds as ``torch.addcmul_``; ``eigh``'s order and
signs; the axis reductions keep m + n numbers; ``as_matrix`` views vectors."""
from __future__ import annotations

import torch

from optloom.primitives import Ctx, lookup
from tests.spec_harness import one_thread  # noqa: F401 (autouse: one torch thread)


def _ctx(step: float = 1.0, ids=(3, 4)) -> Ctx:
    return Ctx(layout="stacked", param=torch.zeros(1), step=torch.tensor(step, dtype=torch.float64),
               states={}, ids=torch.tensor(ids))


def test_stochastic_rounding_is_unbiased_and_bracketed():
    cast = lookup("cast")
    x = torch.full((2, 4096), 1.0 + 2.0**-9)  # a quarter of the way from bf16 1 to 1 + 2⁻⁷
    y = cast(_ctx(), x, dtype="bfloat16", rounding="stochastic").float()
    assert set(y.unique().tolist()) <= {1.0, 1.0 + 2.0**-7}
    p_up = float((y > 1).float().mean())
    assert abs(p_up - 0.25) < 5 * (0.25 * 0.75 / y.numel()) ** 0.5
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 50000, generator=g)
    r = cast(_ctx(), z, dtype="bfloat16", rounding="stochastic").double()
    assert float((r - z.double()).mean().abs()) < 1e-4  # E[SR(x)] = x
    near = z.to(torch.bfloat16).double()
    assert float((r != near).double().mean()) > 0.2  # it is not round-to-nearest
    ulp = 2.0 ** (torch.floor(torch.log2(z.double().abs())) - 7)
    assert bool(((r - z.double()).abs() < ulp).all())  # one of the two bf16 neighbours


def test_stochastic_rounding_is_a_function_of_seed_step_and_id():
    cast = lookup("cast")
    x = torch.randn(2, 1000, generator=torch.Generator().manual_seed(1))
    a = cast(_ctx(5.0), x, dtype="bfloat16", rounding="stochastic")
    assert torch.equal(a, cast(_ctx(5.0), x, dtype="bfloat16", rounding="stochastic"))  # a resumed step draws alike
    assert not torch.equal(a, cast(_ctx(6.0), x, dtype="bfloat16", rounding="stochastic"))
    assert not torch.equal(a, cast(_ctx(5.0, ids=(4, 3)), x, dtype="bfloat16", rounding="stochastic"))
    assert not torch.equal(a, cast(_ctx(5.0), x, dtype="bfloat16", rounding="stochastic", seed=9))
    special = torch.tensor([[float("inf"), float("-inf"), float("nan"), 0.0]] * 2)
    s = cast(_ctx(), special, dtype="bfloat16", rounding="stochastic").float()
    assert torch.equal(s[:, :2], special[:, :2]) and bool(s[:, 2].isnan().all()) and bool((s[:, 3] == 0).all())


def test_addcmul_rounds_as_torch_addcmul():
    addcmul = lookup("addcmul")
    g = torch.Generator().manual_seed(2)
    for dt in (torch.float32, torch.bfloat16, torch.float16):
        x, a, b = (torch.randn(3, 4000, generator=g).to(dt) for _ in range(3))
        for value in (1e-3, 0.3, 1.0 - 0.999):
            want = torch.addcmul(x, a, b, value=value)
            got = addcmul(_ctx(ids=(0, 1, 2)), x, a, b, value=torch.tensor(value, dtype=torch.float64))
            assert got.dtype == dt and torch.equal(got, want), (dt, value)


def test_eigh_order_and_signs():
    eigh = lookup("eigh")
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 6, 6, generator=g, dtype=torch.float64)
    a = x @ x.mT
    q = eigh(_ctx(), a, dtype="float64")
    lam = torch.einsum("bij,bjk,bki->bi", q.mT, a, q)
    assert bool((lam[:, :-1] >= lam[:, 1:]).all())  # descending
    assert torch.allclose(q @ torch.diag_embed(lam) @ q.mT, a, atol=1e-10)
    big = q.abs().argmax(dim=-2, keepdim=True)
    assert bool((q.gather(-2, big) > 0).all())


def test_factored_statistics_keep_m_plus_n_numbers():
    g = torch.randn(2, 12, 8)
    r, c = lookup("row_mean")(_ctx(), g * g), lookup("col_mean")(_ctx(), g * g)
    assert r.shape == (2, 12, 1) and c.shape == (2, 1, 8)
    v = lookup("outer")(_ctx(), r, c) / lookup("col_mean")(_ctx(), r)
    assert v.shape == (2, 12, 8)
    # rank one, V = R Cᵀ / mean(R): its column means are C, its row means R·mean(C)/mean(R)
    assert torch.allclose(v.mean(-2, keepdim=True), c, rtol=1e-5)
    assert torch.allclose(v.mean(-1, keepdim=True), r * c.mean(-1, keepdim=True) / r.mean(-2, keepdim=True), rtol=1e-5)


def test_as_matrix_views_vectors():
    as_matrix = lookup("as_matrix")
    v = torch.arange(6.0).reshape(2, 3)
    assert as_matrix(_ctx(), v, vectors="column").shape == (2, 3, 1)
    assert as_matrix(_ctx(), v, vectors="row").shape == (2, 1, 3)
    m = torch.zeros(2, 4, 3, 2)
    assert as_matrix(_ctx(), m, vectors="column").shape == (2, 4, 6)  # matrices ignore `vectors`
