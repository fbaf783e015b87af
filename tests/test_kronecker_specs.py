"""Properties of FISMO (arXiv 2601.21750, Algorithm 1; no official code) and of the Kronecker
primitives it brought (``gram``, ``inv_root``, ``sym``, ``trace``), beyond the contract
(tests/contract: agreement with ``R.FISMO`` in float32 and float64, resume, training, compile):
the documented defaults, trace-normalized SPD factors, bf16 parameters."""
from __future__ import annotations

import pytest
import torch

import optloom
from optloom.primitives import Ctx
from optloom.primitives.kronecker import gram, inv_root, sym, trace
from tests.contract.table import FISMO_DEFAULTS
from tests.spec_harness import MATRICES, SHAPES, SPECS, one_thread, params  # noqa: F401 (one_thread: autouse)


# ---- FISMO ------------------------------------------------------------------------------------

def test_fismo_defaults_are_the_documented_ones():
    d = optloom.compile(f"{SPECS}/fismo.opt").defaults()
    assert {k: d[k] for k in FISMO_DEFAULTS} == FISMO_DEFAULTS
    assert (d["weight_decay"], d["shape_scale"], d["ns_steps"]) == (0.0, "none", 5)


def test_fismo_factors_are_trace_normalized_spd():
    """After any step P and Q are symmetric, positive definite, tr P = m and tr Q = n (float64
    parameters, eigh and NS)."""
    ps = {k: torch.nn.Parameter(v.double()) for k, v in params(0, MATRICES).items()}
    opt = optloom.optimizer(f"{SPECS}/fismo.opt", list(ps.items()), gamma=0.5, mu=1e-2, ns_dtype="float64")
    gen = torch.Generator().manual_seed(2000)
    for _ in range(5):
        for k, p in ps.items():
            p.grad = torch.randn(SHAPES[k], generator=gen, dtype=torch.float64)
        opt.step()
    for p in ps.values():
        m, n = p.shape[0], p.numel() // p.shape[0]
        for f, d in (("P", m), ("Q", n)):
            A = opt.state[p][f]
            assert A.shape == (d, d)
            assert torch.equal(A, A.T)
            assert abs(float(torch.trace(A)) - d) < 1e-12 * d
            assert float(torch.linalg.eigvalsh(A)[0]) > 0


def test_fismo_runs_on_bf16_parameters():
    """bf16 parameters: the factors live in bf16 (inv_root computes in float32 and rounds back, so
    that P^{−1/2} multiplies the bf16 gradient); 10 steps stay finite and keep P, Q SPD-ish
    (trace m, n up to bf16 rounding: 2⁻⁸ relative per entry, d entries summed)."""
    w = torch.nn.Parameter(torch.randn(8, 6, generator=torch.Generator().manual_seed(5)).bfloat16())
    opt = optloom.optimizer(f"{SPECS}/fismo.opt", [("w", w)], ns_dtype="bfloat16")
    g = torch.Generator().manual_seed(6)
    for _ in range(10):
        w.grad = torch.randn(8, 6, generator=g).bfloat16()
        opt.step()
    st = opt.state[w]
    assert w.dtype == st["P"].dtype == st["Q"].dtype == torch.bfloat16 and torch.isfinite(w).all()
    for f, d in (("P", 8), ("Q", 6)):
        assert abs(float(torch.trace(st[f].float())) - d) < d * 2**-8 * 4


# ---- Kronecker primitives --------------------------------------------------------------------

def _ctx(layout="stacked"):
    return Ctx(layout=layout, param=torch.zeros(()), step=1, states={})


def test_gram_fast_matches_reference():
    g = torch.Generator().manual_seed(7)
    X = torch.randn(3, 5, 7, generator=g, dtype=torch.float64)
    for side, d in (("rows", 7), ("cols", 5)):
        A = torch.randn(3, d, d, generator=g, dtype=torch.float64)
        W = A @ A.mT
        fast = gram.fn(_ctx(), X, W, side)
        for i in range(3):
            ref = gram.ref(_ctx("single"), X[i], W[i], side)
            # (1/n)·Σ_jk: float64 sums of ≤ 49 terms, 1e-12 relative
            assert torch.allclose(fast[i], ref, rtol=1e-12, atol=1e-12 * float(ref.abs().max()))
    # W = I: the plain mean outer products (Shampoo's GGᵀ/n, GᵀG/m)
    eye_n, eye_m = torch.eye(7, dtype=torch.float64), torch.eye(5, dtype=torch.float64)
    assert torch.allclose(gram.fn(_ctx(), X, eye_n.expand(3, 7, 7), "rows"), X @ X.mT / 7, rtol=1e-13)
    assert torch.allclose(gram.fn(_ctx(), X, eye_m.expand(3, 5, 5), "cols"), X.mT @ X / 5, rtol=1e-13)


def test_inv_root_float32_accuracy():
    """float32 eigh roots of SPD matrices with κ ≤ 10 against float64 ground truth: the
    normwise bound κ·d·u = 10 × 16 × 6e-8 = 1e-5; the results are exact inverses/square roots."""
    g = torch.Generator().manual_seed(8)
    Qm, _ = torch.linalg.qr(torch.randn(4, 16, 16, generator=g, dtype=torch.float64))
    lam = torch.logspace(0, 1, 16, dtype=torch.float64).expand(4, 16)  # eigenvalues 1…10
    A = (Qm * lam.unsqueeze(-2)) @ Qm.mT
    for p in (1, 2):
        got = inv_root.fn(_ctx(), A.float(), p, "float32")
        assert got.dtype == torch.float32
        want = (Qm * lam.pow(-1.0 / p).unsqueeze(-2)) @ Qm.mT
        assert float((got.double() - want).norm() / want.norm()) < 1e-5
    Pi = inv_root.fn(_ctx(), A, 2, "float32")  # float64 input stays float64
    assert Pi.dtype == torch.float64 and torch.allclose(Pi @ A @ Pi, torch.eye(16, dtype=torch.float64).expand(4, 16, 16), atol=1e-12)
    # singular input: eigenvalues raised to ε·λ_max — finite, no NaN
    S = torch.zeros(1, 3, 3)
    S[0, 0, 0] = 1.0
    assert torch.isfinite(inv_root.fn(_ctx(), S, 2, "float32")).all()
    assert float(trace.fn(_ctx(), A, True)[0]) == pytest.approx(float(lam[0].mean()), rel=1e-12)
    assert torch.equal(sym.fn(_ctx(), A), A) or torch.allclose(sym.fn(_ctx(), A), A, rtol=1e-15)
