"""DCT-AdamW and Trion (algorithms.md §14) against the independent float64 oracles
``R.DCTAdamW`` / ``R.Trion`` (tests/reference/subspace.py, written from algorithms.md, sharing no
code with optloom), the DCT primitives against their definitions, training and bitwise resume.

Agreement runs (tests/spec_harness.py shapes): tall 12×8 (right side, d = 8), wide 8×12 (left,
d = 8), square 10×10 (right, d = 10), conv 4×3×3×3 and a bias, 20 steps of fresh random gradients,
rank 3 < d so the selection is a real choice. DCT-AdamW routes the conv and the bias to AdamW (as
the reference's ``projectable = ndim == 2``); Trion takes the conv as its (4, 27) matrix view (left,
d = 4), the reference is given the same view. Displacements ``W_t − W_0`` are compared norm-wise.

Index choice. The reference picks ``topk`` of the ℓ1 scores (descending) through its ``index_fn``
hook; ours is ``checked_topk``, which also asserts that the float64 scores at the positions that
decide the choice (the top r + 1, sorted) are separated by more than MARGIN relative to the largest:
the float32 spec computes the same scores with relative error ~1e-6 (one d-term matmul, ~d·6e-8,
plus for Trion the accumulated momentum, ~20 steps × 1e-7), so with a 1e-5 margin both sides must
choose the same indices in the same order. Ties have probability 0 with continuous random inputs;
the check turns a near-tie into a loud precondition failure instead of a mystery. For DCT-AdamW
the order matters (state column k ↔ idx[k]) and the spec's cached ``idx`` state is compared with
the reference's, exactly, after every step — refresh steps and cached ones.

Tolerance FP32 = 5e-5, from two float32 error sources (unit roundoff u = 6e-8) against the float64
reference, each bounded by adding 20 steps linearly:
* storing W: each step rounds the parameter (|W| ≈ 0.5 for the harness's 0.5·N(0,1) weights) to
  float32, an absolute error ≤ u·|W| = 3e-8 per entry per step. The reference's displacements are
  ≈ 0.03 or more per entry (lr 0.01–0.02 times 20 steps of O(0.1–1) Adam / orthogonalized entries,
  partly cancelling for random gradients), so 20 × 3e-8 / 0.03 = 2e-5 relative.
* computing the update (as tests/test_frontier_specs.py): S / a are d-term matmuls (≤ d·u ≈ 6e-7),
  the Adam moments and ratio a few ulp (m/sqrt(v) is well conditioned: ε = 1e-8 ≪ sqrt(v)), the
  lift an r-term matmul; error feedback is a projection residual E = (I − P)(G + E), non-expansive,
  so its rounding does not grow. Trion adds float32 Newton–Schulz (5 steps; the muon quintic's
  slope is ≤ a ≈ 3.4 on small singular values, ~10 overall) against the reference's float64 NS,
  whose normalisation X/(‖X‖+1e-7) differs from ours, X/max(‖X‖, 1e-7), by 1e-7/‖X‖ relative
  (‖m_r‖ ≳ 1 here): ≲ 1e-6 per step, 20 × 1e-6 = 2e-5.
2e-5 + 2e-5 = 4e-5 < 5e-5.
"""
from __future__ import annotations

import math

import pytest
import torch

import optloom
import tests.reference as R
from optloom.primitives import Ctx, lookup
from tests.reference.subspace import dct_matrix
from tests.spec_harness import (SHAPES, SPECS, STEPS, Composite, assert_close, check_bitwise_resume,
                                check_trains, one_thread, params, run_pair)  # noqa: F401 (one_thread: autouse)

FP32 = 5e-5
MARGIN = 1e-5
RANK = 3
LOW_RANK = ("tall", "wide", "square")  # DCT-AdamW's projected parameters (2-D)


def checked_topk(name, S, r, right):
    """The reference's default choice (topk of ℓ1 scores, descending), after asserting that no
    near-tie could make a float32 computation of the same scores choose or order differently."""
    scores = S.norm(p=1, dim=0 if right else 1)
    top = scores.sort(descending=True).values[: r + 1]
    gaps = (top[:-1] - top[1:]) / top[0]
    assert bool((gaps > MARGIN).all()), f"{name}: near-tie in the DCT scores {top.tolist()} (test precondition)"
    return torch.topk(scores, r).indices


# ---- the primitives ---------------------------------------------------------------------------

def _ctx():
    return Ctx(layout="stacked", param=torch.zeros(1), step=torch.tensor(1.0), states={}, ids=torch.arange(2))


@pytest.mark.parametrize("shape", [(12, 8), (8, 12), (10, 10), (1, 5), (5, 1)])
def test_dct_basis_is_the_orthogonal_dct_matrix(shape):
    x = torch.zeros(2, *shape, dtype=torch.float64)
    Q = lookup("dct_basis").fn(_ctx(), x)
    d = shape[1] if shape[0] >= shape[1] else shape[0]
    assert Q.shape == (2, d, d)
    torch.testing.assert_close(Q[1], dct_matrix(d), rtol=0, atol=1e-14)  # the reference's §14.1 formula
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


# ---- DCT-AdamW --------------------------------------------------------------------------------

ADAM = dict(lr=0.01, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)


@pytest.mark.parametrize("gap", [1, 3], ids=["gap1", "gap3"])
@pytest.mark.parametrize("use_ef", [False, True], ids=["noef", "ef"])
def test_dct_adamw_matches_reference(gap, use_ef):
    """20 steps; with gap 3 the indices are refreshed on steps 1, 4, …, 19 and cached in between.
    The spec's cached indices equal the reference's (order included) after every step."""
    hyper = dict(ADAM, rank=RANK, update_proj_gap=gap, use_ef=use_ef)
    init = params(0)
    ps = {k: torch.nn.Parameter(v.clone()) for k, v in init.items()}
    opt = optloom.optimizer(f"{SPECS}/dct_adamw.opt", list(ps.items()), **hyper)
    ref = Composite(init, lambda p: R.DCTAdamW(p, rank=RANK, update_proj_gap=gap, use_ef=use_ef,
                                                 index_fn=checked_topk, **ADAM),
                    lambda p: R.AdamW(p, **ADAM))
    gen = torch.Generator().manual_seed(1000)
    refreshed = []
    for t in range(1, STEPS + 1):
        grads = {k: torch.randn(s, generator=gen) for k, s in SHAPES.items()}
        for k, p in ps.items():
            p.grad = grads[k].clone()
        opt.step()
        ref.step({k: g.double() for k, g in grads.items()})
        for k in LOW_RANK:
            ours, theirs = opt.state[ps[k]]["idx"], ref.mat.state[k]["idx"]
            assert torch.equal(ours, theirs), (t, k, ours.tolist(), theirs.tolist())
            assert opt.state[ps[k]]["exp_avg"].shape == ref.mat.state[k]["exp_avg"].shape  # low rank
            assert ("E" in opt.state[ps[k]]) == use_ef
        refreshed.append((t - 1) % gap == 0)
    assert sum(refreshed) == math.ceil(STEPS / gap)
    errs = {}
    for k in SHAPES:
        d_ref = ref.params[k] - init[k].double()
        assert d_ref.norm() > 1e-3
        errs[k] = float(((ps[k].detach().double() - init[k].double()) - d_ref).norm() / d_ref.norm())
    assert_close(errs, FP32)


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


def test_dct_adamw_trains():
    check_trains("dct_adamw", None, dict(lr=0.01, rank=4, update_proj_gap=3, use_ef=True))


@pytest.mark.parametrize("use_ef", [False, True], ids=["noef", "ef"])
def test_dct_adamw_bitwise_resume(use_ef):
    """Gap 3: refreshes on steps 1, 4, 7, 10, 13, …; the resumed optimizer's steps 11 and 12 must
    use the indices cached at step 10 (restored from the state dict), 13 refreshes."""
    check_bitwise_resume("dct_adamw", None, dict(lr=0.01, rank=RANK, update_proj_gap=3, use_ef=use_ef))


# ---- Trion ------------------------------------------------------------------------------------

class TrionMatrixView(R.Trion):
    """The reference on the (out, in·kh·kw) view of conv weights, as the spec routes them (§0)."""

    def _update(self, name, W, G, st):
        shape = W.shape
        return super()._update(name, W.reshape(shape[0], -1), G.reshape(shape[0], -1), st).reshape(shape)


TRION_ADAM = dict(adam_lr=0.01, adam_betas=(0.9, 0.95), adam_eps=1e-10, adam_weight_decay=0.05)


@pytest.mark.parametrize("scaling,ref_scaling,wd", [("muon", "kj", 0.1), ("spectral", "dion", 0.0)],
                         ids=["kj-decay", "dion"])
def test_trion_matches_reference(scaling, ref_scaling, wd):
    """Spec NS in float32 against the reference's float64 NS (see FP32 in the module docstring)."""
    h = dict(lr=0.02, momentum=0.9, rank=RANK, weight_decay=wd, scaling=scaling, ns_dtype="float32", **TRION_ADAM)
    side = lambda init: Composite(  # noqa: E731
        init,
        lambda p: TrionMatrixView(p, lr=h["lr"], momentum=h["momentum"], rank=RANK, weight_decay=wd,
                                  scale=ref_scaling, index_fn=checked_topk),
        lambda p: R.AdamW(p, lr=h["adam_lr"], betas=h["adam_betas"], eps=h["adam_eps"],
                          weight_decay=h["adam_weight_decay"]))
    errs, _ = run_pair("trion", h, side)
    assert_close(errs, FP32)


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


def test_trion_trains():
    check_trains("trion", None, dict(lr=0.02, rank=4, ns_dtype="float32", adam_lr=0.01))


def test_trion_bitwise_resume():
    """The momentum buffer (with its error feedback) is the only matrix state: restored bitwise."""
    check_bitwise_resume("trion", None, dict(lr=0.02, rank=RANK, ns_dtype="float32", adam_lr=0.01))
