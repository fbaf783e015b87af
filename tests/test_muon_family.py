"""Properties of the Muon-family specs (Muon, AuON, Hybrid-AuON, ROOT, PolarGrad, low-rank Muon /
MSGD) beyond the contract (tests/contract: agreement with the oracles of
``tests/reference/muon_family.py``, resume, training, compile): routing, ROOT's shape table and
its spectral hazard, PolarGrad's nuclear-norm scale, the low-rank sketch."""
from __future__ import annotations

import math

import pytest
import torch

import optloom
import tests.reference as R
from optloom.check import ir
from optloom.check.selectors import ParamInfo
from tests.contract.table import LOW_RANK
from tests.reference.draws import sketch_columns
from tests.spec_harness import MATRICES, SHAPES, SPECS, one_thread  # noqa: F401 (one_thread: autouse)


# ---- Muon -----------------------------------------------------------------------------------

def test_muon_routes_vectors_and_embeddings_to_adamw():
    torch.manual_seed(3)
    emb = torch.nn.Embedding(10, 6)
    lin = torch.nn.Linear(6, 6)
    params = [("embed.weight", emb.weight), ("lin.weight", lin.weight), ("lin.bias", lin.bias)]
    opt = optloom.optimizer("muon", params)
    assert [opt.routes()[p].label for _, p in params] == ["rest", "hidden", "rest"]


# ---- Hybrid-AuON ---------------------------------------------------------------------------

def test_hybrid_auon_default_is_one_ns_step():
    assert optloom.compile(f"{SPECS}/hybrid_auon.opt").defaults()["ns_steps"] == 1


# ---- ROOT -----------------------------------------------------------------------------------

def _ns_coeffs(program, label: str):
    rule = next(r for r in program.rules if r.label == label)
    calls = [n for n in ir.walk(rule.result) if isinstance(n, ir.Call) and n.prim.name == "newton_schulz"]
    assert len(calls) == 1
    return tuple(calls[0].args["coeffs"].value)


def test_root_shape_table_routing():
    """The spec's rules reproduce the code's table lookup, keyed by (min, max) of the matrix view,
    with Muon's coefficients for every other shape (compared with the reference's ``root_coeffs``)."""
    prog = optloom.compile(f"{SPECS}/root.opt")
    hyp = prog.defaults()
    from tests.reference.muon_family import root_coeffs
    for shape in [(2048, 2048), (2048, 3072), (3072, 2048), (8192, 2048), (2048, 16384), (16384, 2048),
                  (2048, 256, 2, 4), (12, 8), (2048, 4096), (1024, 2048), (10, 10), (4, 3, 3, 3)]:
        rule = prog.route(ParamInfo("layer.weight", shape, 0), hyp)
        m = shape[0]
        n = math.prod(shape) // m
        assert _ns_coeffs(prog, rule.label) == pytest.approx(root_coeffs(m, n), abs=0), (shape, rule.label)
    assert prog.route(ParamInfo("bias", (2048,), 0), hyp).label == "rest"
    assert prog.route(ParamInfo("lm_head.weight", (2048, 2048), 0), hyp).label == "rest"


def _sign_matrix_with_ratio(n: int, target: float, seed: int = 0) -> torch.Tensor:
    """A ±1 matrix (so ROOT's 90% clamp is the identity: every |entry| equals the quantile) whose
    top singular value over its Frobenius norm is ≈ ``target``: sign(t·uvᵀ + noise), t bisected."""
    g = torch.Generator().manual_seed(seed)
    u, v, noise = torch.randn(n, 1, generator=g), torch.randn(1, n, generator=g), torch.randn(n, n, generator=g)

    def make(t):
        S = torch.sign(t * u @ v + noise).double()
        return S, float(torch.linalg.svdvals(S)[0] / S.norm())
    lo, hi = 0.0, 50.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if make(mid)[1] < target else (lo, mid)
    return make(hi)


def test_root_spectral_hazard():
    """ROOT's (2048, 2048) coefficients (huawei-noah/noah-research ROOT/examples/example_train.py,
    ``root5``) send a normalized singular value of 0.559 to ≈ 3.31 after five iterations, where
    Muon's map (the fallback) stays ≤ 1.2 (docs/derivations.md#root-coefficients).

    Shown through the spec itself: a test spec imports root.opt's ``root_update`` and runs it with
    the coefficients read from the compiled spec's ``root_2048x2048`` rule (the rule a 2048×2048
    weight routes to) on a 64×64 ±1 gradient (NS at 2048² costs ~13 s on 2 cores; the scalar map
    only sees σ/‖·‖_F, so the size does not matter) with σ_max/‖G‖_F ≈ 0.559. The update's
    singular values must equal the independent scalar composition p⁵(σᵢ/‖G‖_F)."""
    prog = optloom.compile(f"{SPECS}/root.opt")
    square = _ns_coeffs(prog, prog.route(ParamInfo("w", (2048, 2048), 0), prog.defaults()).label)
    fallback = _ns_coeffs(prog, prog.route(ParamInfo("w", (64, 64), 0), prog.defaults()).label)
    G, ratio = _sign_matrix_with_ratio(64, 0.559)
    assert abs(ratio - 0.559) < 5e-3
    sig = torch.linalg.svdvals(G) / G.norm()
    tops = {}
    for coeffs in (square, fallback):
        src = ('import "root.opt"\n'
               'optimizer hazard(lr = 1.0) {\n'
               '  all: ndim == 2 => grad |> root_update(0.0, false, 0.9, 5, '
               f'({coeffs[0]!r}, {coeffs[1]!r}, {coeffs[2]!r}), 0.0, lr)\n'
               '}\n')
        w = torch.nn.Parameter(torch.zeros(64, 64))
        opt = optloom.optimizer(src, [("w", w)])
        w.grad = G.float().clone()
        opt.step()
        U = -w.detach().double() / (0.2 * math.sqrt(64))  # W₁ = 0 − lr·0.2·sqrt(max(m,n))·U
        got = torch.linalg.svdvals(U)
        want = R.ns_scalar_map(sig, [coeffs], 5).abs().sort(descending=True).values
        # fp32 NS: 1e-7 input error × |p'| ≤ ~5 per iteration over 5 iterations ≲ 3e-4
        assert torch.allclose(got, want, atol=1e-3), (coeffs, got[:4], want[:4])
        tops[coeffs] = float(R.ns_scalar_map(sig[:1], [coeffs], 5))
    assert tops[square] > 3.0, tops          # the hazard: the top direction amplified > 3×
    assert tops[fallback] < 1.2, tops        # Muon's coefficients stay in [0.47, 1.20]
    # and the reference oracle, given the same table entry for this shape, agrees on one step
    ref = R.ROOT([("w", torch.zeros(64, 64))], lr=1.0, momentum=0.0, weight_decay=0.0, nesterov=False,
                 coeff_table={(64, 64): square})
    ref.step({"w": G})
    assert float(torch.linalg.svdvals(-ref.params["w"] / (0.2 * 8))[0]) > 3.0


# ---- PolarGrad ------------------------------------------------------------------------------

def test_polargrad_nu_is_nuclear_norm_with_svd():
    """Momentum-first, one step from W₀ = 0, λ = 0: ΔW = −lr·ν·U with U = polar(M) having
    min(m, n) unit singular values, so ν = ‖ΔW‖_F/(lr·sqrt(min(m, n))) — must equal Σσᵢ(M),
    M = (1−β)G, computed here by float64 SVD. Tall, wide, square and conv (as (out, in·kh·kw))."""
    g = torch.Generator().manual_seed(7)
    lr, beta = 0.1, 0.9
    ws = {k: torch.nn.Parameter(torch.zeros(SHAPES[k])) for k in MATRICES}
    opt = optloom.optimizer(f"{SPECS}/polargrad.opt", list(ws.items()), lr=lr, momentum=beta, polar_method="svd")
    Gs = {k: torch.randn(SHAPES[k], generator=g) for k in MATRICES}
    for k, w in ws.items():
        w.grad = Gs[k].clone()
    opt.step()
    for k, w in ws.items():
        M = (1 - beta) * Gs[k].double().reshape(SHAPES[k][0], -1)
        nuclear = float(torch.linalg.svdvals(M).sum())
        dW = w.detach().double().reshape(M.shape)
        nu = float(dW.norm()) / (lr * math.sqrt(min(M.shape)))
        assert nu == pytest.approx(nuclear, rel=1e-5), k  # fp32 SVD and update: ~1e-6
        # and the direction is the polar factor of M
        assert torch.allclose(-dW / (lr * nu), R.polar_svd(M), atol=1e-5), k


# ---- Low-rank Muon / MSGD -------------------------------------------------------------------

def test_sketch_columns_match_primitive():
    """The hash restated in tests/reference/draws.py (which the contract's low-rank oracle uses)
    picks the same columns as the primitive (checked on the primitive's basis: Q spans exactly the
    chosen columns of the wide matrix)."""
    from optloom.primitives import Ctx, lookup
    X = torch.randn(5, 17, dtype=torch.float64)
    for step, pid, seed in [(1, 0, 0), (7, 3, 11), (123, 2, 5)]:
        ctx = Ctx(layout="single", param=X, step=step, states={}, ids=pid)
        Q = lookup("range_sketch").fn(ctx, X, rank=3, seed=seed)
        cols = X[:, sketch_columns(seed, step, pid, 17, 3)]
        assert torch.allclose(Q @ (Q.T @ cols), cols, atol=1e-10)


def test_lowrank_update_has_rank_r():
    """The low-rank rule's update has rank ≤ r; the sketch changes with the step."""
    w = torch.nn.Parameter(torch.zeros(12, 8))
    opt = optloom.optimizer(f"{SPECS}/lowrank_muon.opt", [("w", w)], name="lowrank_msgd", lr=1.0,
                            ns_dtype="float32", **LOW_RANK)
    g = torch.Generator().manual_seed(3)
    prev = None
    for _ in range(2):
        before = w.detach().clone()
        w.grad = torch.randn(12, 8, generator=g)
        opt.step()
        dW = (w.detach() - before).double()
        s = torch.linalg.svdvals(dW)
        assert s[3] < 1e-5 * s[0] and s[2] > 1e-2 * s[0]  # rank exactly 3 (fp32 zeros ~1e-7)
        P = torch.linalg.qr(dW).Q[:, :3]
        if prev is not None:
            assert (P @ P.T - prev @ prev.T).norm() > 1e-2  # a different column subspace at step 2
        prev = P
