"""Properties of DCT-AdamW and Trion (arXiv 2505.17967; IST-DASLab/ISTA-DASLab-Optimizers
``ista_daslab_optimizers/fft_low_rank/dct_adamw.py``, ``trion.py``) and of the DCT primitives
against their definitions, beyond the contract (tests/contract: agreement with ``R.DCTAdamW`` /
``R.Trion``, resume, training, compile): state, routing, defaults and a closed-form first step."""
from __future__ import annotations

import pytest
import torch

import optloom
from optloom.primitives import Ctx, lookup
from tests.reference.subspace import dct_matrix
from tests.spec_harness import SPECS, one_thread  # noqa: F401 (one_thread: autouse)

RANK = 3


# ---- the primitives ---------------------------------------------------------------------------

def _ctx():
    return Ctx(layout="stacked", param=torch.zeros(1), step=torch.tensor(1.0), states={}, ids=torch.arange(2))


@pytest.mark.parametrize("shape", [(12, 8), (8, 12), (10, 10), (1, 5), (5, 1)])
def test_dct_basis_is_the_orthogonal_dct_matrix(shape):
    x = torch.zeros(2, *shape, dtype=torch.float64)
    Q = lookup("dct_basis").fn(_ctx(), x)
    d = shape[1] if shape[0] >= shape[1] else shape[0]
    assert Q.shape == (2, d, d)
    torch.testing.assert_close(Q[1], dct_matrix(d), rtol=0, atol=1e-14)  # utils/dct.py's dct3_matrix, restated
    torch.testing.assert_close(Q[0] @ Q[0].T, torch.eye(d, dtype=torch.float64), rtol=0, atol=1e-13)
    # float32 parameters: Q computed in float64 and rounded once
    Q32 = lookup("dct_basis").fn(_ctx(), x.float())
    assert Q32.dtype == torch.float32 and torch.equal(Q32[0], dct_matrix(d).float())


def test_selection_primitives_compose():
    """take(project(A, Q), idx) = project(A, take(Q, idx, "right")) (side "std" throughout, as the
    specs); lift ∘ project with the full Q is the identity; the low-rank lift is the orthogonal
    projection onto the chosen basis vectors; dct_select returns indices in descending score
    order. Batched (fast) and per-parameter (reference) implementations agree member by member
    (the contract test feeds one input only)."""
    g = torch.Generator().manual_seed(0)
    P = {n: lookup(n) for n in ("dct_basis", "project", "dct_select", "take", "lift")}
    for shape in [(12, 8), (8, 12), (10, 10)]:
        A = torch.randn(3, *shape, generator=g, dtype=torch.float64)
        c = _ctx()
        Q = P["dct_basis"].fn(c, A)
        S = P["project"].fn(c, A, Q, "std")
        idx = P["dct_select"].fn(c, S, RANK)
        assert idx.dtype == torch.int64 and idx.shape == (3, RANK)
        a = P["take"].fn(c, S, idx)
        Qr = P["take"].fn(c, Q, idx, "right")
        torch.testing.assert_close(P["project"].fn(c, A, Qr, "std"), a, rtol=0, atol=1e-12)
        torch.testing.assert_close(P["lift"].fn(c, S, Q, "std"), A, rtol=0, atol=1e-12)
        right = shape[0] >= shape[1]
        for i in range(3):
            scores = S[i].abs().sum(0 if right else 1)
            assert bool((scores[idx[i]].diff() < 0).all())  # descending
            assert scores[idx[i]].min() > scores[[k for k in range(len(scores)) if k not in idx[i]]].max()
            Qi = dct_matrix(Q.shape[-1])[:, idx[i]]
            proj = A[i] @ Qi @ Qi.T if right else Qi @ Qi.T @ A[i]
            torch.testing.assert_close(P["lift"].fn(c, a, Qr, "std")[i], proj, rtol=0, atol=1e-12)
            # fast == reference, member by member
            r = lambda n, *xs, **kw: P[n].ref(None, *xs, **{"side": "std", **kw})  # noqa: E731
            assert torch.equal(r("dct_select", S[i], rank=RANK, ell_norm=1), idx[i])
            torch.testing.assert_close(r("take", S[i], idx[i]), a[i], rtol=0, atol=0)
            torch.testing.assert_close(r("project", A[i], Qr[i]), a[i], rtol=0, atol=1e-12)
            torch.testing.assert_close(r("lift", a[i], Qr[i]), P["lift"].fn(c, a, Qr, "std")[i],
                                       rtol=0, atol=1e-12)


SIDE_RULES = {"auto": lambda m, n: m > n, "std": lambda m, n: m >= n,
              "left": lambda m, n: False, "right": lambda m, n: True}


@pytest.mark.parametrize("side", list(SIDE_RULES))
@pytest.mark.parametrize("shape", [(6, 6), (7, 5), (5, 7)], ids=["square", "tall", "wide"])
@pytest.mark.parametrize("k", ["low_rank", "full"])
def test_project_lift_sides_are_the_explicit_formulas(side, shape, k):
    """project(X, q, side) is ``X q`` (right) or ``qᵀ X`` (left) and lift(Y, q, side) is ``Y qᵀ`` /
    ``q Y``, with the side of SIDE_RULES: "auto" right iff m > n, "std" iff m ≥ n (they differ on
    the square matrix: auto left, std right). lift sees only Y and q and must recover project's
    side from their shapes — including a full basis (k = d), where a square X gives a square Y as
    large as q. Fast (batched) and reference (per member) paths both, bitwise for the batched one."""
    m, n = shape
    right = SIDE_RULES[side](m, n)
    d = n if right else m
    kk = d if k == "full" else 3
    g = torch.Generator().manual_seed(7)
    X = torch.randn(2, m, n, generator=g, dtype=torch.float64)
    q = torch.linalg.qr(torch.randn(2, d, kk, generator=g, dtype=torch.float64)).Q
    c = _ctx()
    project, lift = lookup("project"), lookup("lift")
    Y = project.fn(c, X, q, side)
    assert torch.equal(Y, X @ q if right else q.mT @ X)
    assert Y.shape == ((2, m, kk) if right else (2, kk, n))
    L = lift.fn(c, Y, q, side)
    assert torch.equal(L, Y @ q.mT if right else q @ Y)
    torch.testing.assert_close(L, X @ q @ q.mT if right else q @ q.mT @ X, rtol=0, atol=1e-12)
    for i in range(2):
        torch.testing.assert_close(project.ref(None, X[i], q[i], side), X[i] @ q[i] if right else q[i].T @ X[i],
                                   rtol=0, atol=1e-12)
        torch.testing.assert_close(lift.ref(None, Y[i], q[i], side), Y[i] @ q[i].T if right else q[i] @ Y[i],
                                   rtol=0, atol=1e-12)


# ---- DCT-AdamW ------------------------------------------------------------------------------

def test_dct_adamw_state_and_routing():
    """Low-rank moments (m×r right, r×n left), the cached int64 indices, E only with use_ef; a
    1-D parameter, a conv and a matrix with a dimension ≥ max_shape take full AdamW."""
    ps = {"tall": torch.nn.Parameter(torch.randn(12, 8)), "wide": torch.nn.Parameter(torch.randn(8, 12)),
          "big": torch.nn.Parameter(torch.randn(40, 6)), "conv": torch.nn.Parameter(torch.randn(4, 3, 3, 3)),
          "bias": torch.nn.Parameter(torch.randn(5))}
    opt = optloom.optimizer(f"{SPECS}/dct_adamw.opt", list(ps.items()), rank=RANK, max_shape=40, use_ef=True)
    for p in ps.values():
        p.grad = torch.randn_like(p)
    opt.step()
    st = {k: opt.state[p] for k, p in ps.items()}
    assert st["tall"]["exp_avg"].shape == (12, RANK) and st["wide"]["exp_avg_sq"].shape == (RANK, 12)
    assert st["tall"]["idx"].dtype == torch.int64 and st["tall"]["idx"].shape == (RANK,)
    assert st["tall"]["E"].shape == (12, 8)
    for k in ("big", "conv", "bias"):
        assert st[k]["exp_avg"].shape == ps[k].shape and "idx" not in st[k] and "E" not in st[k]
    defaults = optloom.compile(f"{SPECS}/dct_adamw.opt").defaults()
    assert (defaults["betas"], defaults["eps"], defaults["update_proj_gap"], defaults["use_ef"],
            defaults["ell_norm"], defaults["max_shape"]) == ((0.9, 0.999), 1e-8, 1, False, 1, 32000)


def test_dct_adamw_first_step_closed_form():
    """An independent closed form: on step 1, m̂ = a and v̂ = a², so u = a/(|a| + ε) = sign(a); with
    rank = d every basis vector is kept and the permutation idx cancels in the lift:
    W₁ = W₀ − lr·sign(G Q) Qᵀ (right side), up to float32 rounding of W (6e-8·|W| ≪ 1e-6)."""
    W0 = torch.randn(12, 8)
    p = torch.nn.Parameter(W0.clone())
    opt = optloom.optimizer(f"{SPECS}/dct_adamw.opt", [("w", p)], lr=0.01, rank=8, eps=1e-12)
    G = torch.randn(12, 8)
    p.grad = G.clone()
    opt.step()
    Q = dct_matrix(8)
    expected = W0.double() - 0.01 * torch.sign(G.double() @ Q) @ Q.T
    torch.testing.assert_close(p.detach().double(), expected, rtol=0, atol=1e-6)


# ---- Trion ----------------------------------------------------------------------------------

def test_trion_defaults_and_state():
    prog = optloom.compile(f"{SPECS}/trion.opt")
    d = prog.defaults()
    assert (d["lr"], d["momentum"], d["weight_decay"], d["ns_steps"]) == (0.02, 0.95, 0.0, 5)
    assert (d["adam_lr"], d["adam_betas"], d["adam_eps"], d["adam_weight_decay"]) == (3e-4, (0.9, 0.95), 1e-10, 0.0)
    ps = {"conv": torch.nn.Parameter(torch.randn(4, 3, 3, 3)), "lm_head.weight": torch.nn.Parameter(torch.randn(6, 4))}
    opt = optloom.optimizer(f"{SPECS}/trion.opt", list(ps.items()), rank=RANK, ns_dtype="float32")
    for p in ps.values():
        p.grad = torch.randn_like(p)
    opt.step()
    assert opt.state[ps["conv"]]["momentum_buffer"].shape == (4, 27)
    assert "exp_avg" in opt.state[ps["lm_head.weight"]]
