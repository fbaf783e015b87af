"""The frontier matrix specs (AuON, Hybrid-AuON, ROOT, PolarGrad, low-rank Muon / MSGD) against the
independent float64 oracles in ``tests/reference`` (written from algorithms.md, sharing no code
with optloom), plus properties, training and bitwise resume.

Agreement runs: tall (12×8), wide (8×12), square (10×10) and conv (4×3×3×3) weights plus a bias,
≥ 20 steps, fresh random gradients each step (set as ``.grad`` on the spec side and passed as the
same values, in float64, to the reference). Every matrix method is compared to its reference
oracle; the bias goes to the spec's aux AdamW, compared to ``R.AdamW``. We compare the
*displacement* ``W_t − W_0`` (so a small lr cannot hide an error behind the initial weights),
norm-wise relative to the reference's displacement.

Tolerances (decided from the arithmetic, not from measured output):
* FP32 = 2e-5: the spec runs in float32 (unit roundoff 6e-8), the reference in float64. Each step
  rounds the momentum, the normalization and the update at ~1e-7 relative; Newton–Schulz (5 fp32
  iterations with |p'(σ)| ≤ a ≈ 3.4) and the clamp/quantile can amplify one step's input error by
  ~10, and 20+ steps add up linearly: 20 × 10 × 1e-7 = 2e-5.
* BF16 = 5e-2, only for the low-rank Muon default, whose spec asks for bf16 Newton–Schulz (the
  reference runs its NS in bf16 too): bf16 unit roundoff 3.9e-3, and the two sides round
  slightly different float32/float64 inputs to bf16, so single entries of the NS output can
  differ by a bf16 ulp amplified by the NS polynomial (a few ×3.9e-3); the norm-wise displacement
  error of a 20-step sum of such updates stays below ~1e-2, and 5e-2 leaves a factor of 5.
"""
from __future__ import annotations

import math

import pytest
import torch

import optloom
import tests.reference as R
from optloom.check import ir
from optloom.check.selectors import ParamInfo
from tests.reference.muon_family import column_select
from tests.spec_harness import (MATRICES, SHAPES, SPECS, STEPS, Composite, assert_close, check_bitwise_resume,
                                check_trains, one_thread, run_pair)  # noqa: F401 (one_thread: autouse)

FP32 = 2e-5
BF16 = 5e-2


def _run_pair(spec: str, hyper: dict, make_ref, adam_kw: dict, name: str | None = None, steps: int = STEPS,
              seed: int = 0, grad_scale: float = 1.0):
    """The spec next to its family oracle (matrices) and ``R.AdamW`` (bias); displacement errors."""
    side = lambda init: Composite(init, make_ref, lambda ps: R.AdamW(ps, **adam_kw))  # noqa: E731
    return run_pair(spec, hyper, side, name=name, steps=steps, seed=seed, grad_scale=grad_scale)[0]


# ---- AuON / Hybrid-AuON ---------------------------------------------------------------------

AUON_ADAM = dict(adam_lr=0.01, adam_betas=(0.8, 0.95), adam_eps=1e-10)


def _adam_kw(h, lr_key="adam_lr", wd_key="weight_decay"):
    return dict(lr=h[lr_key], betas=h["adam_betas"], eps=h["adam_eps"], weight_decay=h.get(wd_key, 0.0))


@pytest.mark.parametrize("case", [
    dict(name=None, version="v1", hyper=dict(lr=0.05, momentum=0.95, weight_decay=0.1)),  # v1 (+ decay)
    dict(name="auon_head", version="head", hyper=dict(lr=0.05, momentum=0.9, weight_decay=0.05)),
    # the v1 optimizer switched to HEAD by its structural knobs == the HEAD reference
    dict(name=None, version="head", hyper=dict(lr=0.05, momentum=0.9, weight_decay=0.05, gamma=1.5,
                                               numerator="raw", shape_scale="none")),
], ids=["v1", "head", "v1-knobs-to-head"])
def test_auon_matches_reference(case):
    h = {**AUON_ADAM, **case["hyper"]}
    errs = _run_pair("auon", h, lambda ps: R.AuON(ps, lr=h["lr"], momentum=h["momentum"],
                                                  weight_decay=h["weight_decay"], version=case["version"],
                                                  gamma=h.get("gamma")),
                     _adam_kw(h), name=case["name"])
    assert_close(errs, FP32)


@pytest.mark.parametrize("ns_steps", [1, 5], ids=["paper-1-step", "repo-5-steps"])
def test_hybrid_auon_matches_reference(ns_steps):
    h = dict(lr=0.05, momentum=0.9, weight_decay=0.05, gamma=1.5, ns_steps=ns_steps, **AUON_ADAM)
    errs = _run_pair("hybrid_auon", h, lambda ps: R.HybridAuON(ps, lr=h["lr"], momentum=h["momentum"],
                                                               weight_decay=h["weight_decay"],
                                                               ns_steps=ns_steps, gamma=h["gamma"]),
                     _adam_kw(h))
    assert_close(errs, FP32)


def test_hybrid_auon_default_is_one_ns_step():
    assert optloom.compile(f"{SPECS}/hybrid_auon.opt").defaults()["ns_steps"] == 1


# ---- ROOT -----------------------------------------------------------------------------------

@pytest.mark.parametrize("nesterov", [True])  # False is a structural variant (another graph): kept out for time
def test_root_matches_reference(nesterov):
    h = dict(lr=0.02, momentum=0.9, weight_decay=0.1, nesterov=nesterov, adam_betas=(0.9, 0.95), adam_eps=1e-8)
    errs = _run_pair("root", h, lambda ps: R.ROOT(ps, lr=h["lr"], momentum=h["momentum"],
                                                  weight_decay=h["weight_decay"], nesterov=nesterov),
                     dict(lr=h["lr"], betas=h["adam_betas"], eps=h["adam_eps"], weight_decay=h["weight_decay"]))
    assert_close(errs, FP32)


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
    """algorithms.md §4.1: ROOT's (2048, 2048) coefficients send a normalized singular value of
    0.559 to ≈ 3.31 after five iterations, where Muon's map (the fallback) stays ≤ 1.2.

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

def _ref_polar(method: str, steps: int):
    if method in ("svd", "qdwh"):  # QDWH run to convergence (6 steps) is the exact polar factor
        return R.polar_svd
    preset = "muon" if method == "ns" else "polar_express"
    return lambda X: R.newton_schulz(X, preset, steps)


@pytest.mark.parametrize("polar_first,method,steps", [
    (False, "svd", 1), (False, "qdwh", 6), (False, "ns", 5), (False, "polar_express", 5),
    (True, "svd", 1), (True, "ns", 5),
], ids=["momentum-first-svd", "momentum-first-qdwh6", "momentum-first-ns5", "momentum-first-polar_express5",
        "polar-first-svd", "polar-first-ns5"])
def test_polargrad_matches_reference(polar_first, method, steps):
    h = dict(lr=0.01, momentum=0.9, weight_decay=0.1, polar_method=method, polar_steps=steps,
             adam_lr=0.01, adam_betas=(0.9, 0.95), adam_eps=1e-8)
    errs = _run_pair("polargrad", h, lambda ps: R.PolarGrad(ps, lr=h["lr"], momentum=h["momentum"],
                                                            weight_decay=h["weight_decay"], polar_first=polar_first,
                                                            polar=_ref_polar(method, steps)),
                     _adam_kw(h), name="polargrad_polar_first" if polar_first else None)
    assert_close(errs, FP32)


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

M32, GOLDEN = 0xFFFFFFFF, 0x9E3779B9


def _fmix(h: int) -> int:
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & M32
    return h ^ (h >> 16)


def sketch_columns(seed: int, step: int, pid: int, n: int, r: int) -> list[int]:
    """range_sketch's column choice, restated from its documentation (counter-based hash, murmur3's
    32-bit finalizer): key = fmix(fmix(fmix(seed ⊕ φ) ⊕ id) ⊕ step), h_j = fmix(key + φ·j mod 2³²),
    columns = the r smallest h_j (ties by j). Written here from the docs, not imported."""
    key = _fmix(_fmix(_fmix((seed ^ GOLDEN) & M32) ^ (pid & M32)) ^ (step & M32))
    h = [_fmix((key + GOLDEN * j) & M32) for j in range(n)]
    return sorted(range(n), key=lambda j: (h[j], j))[:r]


def _spec_columns(seed: int, ids: dict[str, int]):
    """Range finder for ``R.LowRankMuon``: the spec's columns, recomputed from (seed, step, id);
    the step is counted per parameter (one call per step), the id is the parameter's position."""
    steps: dict[str, int] = {}

    def idx_fn(name, X, r):
        steps[name] = steps.get(name, 0) + 1
        return sketch_columns(seed, steps[name], ids[name], X.shape[1], r)
    return column_select(idx_fn)


def test_sketch_columns_match_primitive():
    """The restated hash picks the same columns as the primitive (checked on the primitive's basis:
    Q spans exactly the chosen columns of the wide matrix)."""
    from optloom.primitives import Ctx, lookup
    X = torch.randn(5, 17, dtype=torch.float64)
    for step, pid, seed in [(1, 0, 0), (7, 3, 11), (123, 2, 5)]:
        ctx = Ctx(layout="single", param=X, step=step, states={}, ids=pid)
        Q = lookup("range_sketch").fn(ctx, X, rank=3, seed=seed)
        cols = X[:, sketch_columns(seed, step, pid, 17, 3)]
        assert torch.allclose(Q @ (Q.T @ cols), cols, atol=1e-10)


LR_KW = dict(rank=3, min_dim=4, seed=5)


@pytest.mark.parametrize("ns_dtype,tol", [("float32", FP32), ("bfloat16", BF16)])
def test_lowrank_muon_matches_reference(ns_dtype, tol):
    """rank 3 on tall/wide/square (min dim 8–10 > min_dim 4: low rank); the conv's matrix view is
    4×27, min 4 ≤ 4: the full-rank fallback rule; the bias: AdamW."""
    h = dict(lr=0.05, momentum=0.9, weight_decay=0.05, ns_dtype=ns_dtype, adam_lr=0.01,
             adam_betas=(0.9, 0.95), adam_eps=1e-10, **LR_KW)
    ids = {k: i for i, k in enumerate(SHAPES)}
    dt = torch.bfloat16 if ns_dtype == "bfloat16" else torch.float64
    errs = _run_pair("lowrank_muon", h, lambda ps: R.LowRankMuon(
        ps, lr=h["lr"], momentum=h["momentum"], weight_decay=h["weight_decay"], rank=3, nesterov=True,
        range_finder=_spec_columns(5, ids), min_dim=4, ns_dtype=dt), _adam_kw(h))
    assert_close(errs, tol)


def test_lowrank_msgd_matches_reference():
    h = dict(lr=0.05, ns_dtype="float32", adam_lr=0.01, adam_betas=(0.9, 0.95), adam_eps=1e-10, **LR_KW)
    ids = {k: i for i, k in enumerate(SHAPES)}
    errs = _run_pair("lowrank_muon", h, lambda ps: R.LowRankMuon(
        ps, lr=h["lr"], momentum=0.0, weight_decay=0.0, rank=3, nesterov=False, shape="none",
        range_finder=_spec_columns(5, ids), min_dim=4), _adam_kw(h), name="lowrank_msgd")
    assert_close(errs, FP32)


def test_lowrank_update_has_rank_r():
    """The low-rank rule's update has rank ≤ r; the sketch changes with the step."""
    w = torch.nn.Parameter(torch.zeros(12, 8))
    opt = optloom.optimizer(f"{SPECS}/lowrank_muon.opt", [("w", w)], name="lowrank_msgd", lr=1.0,
                            ns_dtype="float32", **LR_KW)
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


# ---- training and resume, every spec --------------------------------------------------------

ALL = [
    ("auon", None, dict(lr=0.02)),
    ("auon", "auon_head", dict(lr=0.2)),  # HEAD ≈ Nesterov SGD on the raw momentum: an SGD-sized lr
    ("hybrid_auon", None, dict(lr=0.02)),
    ("root", None, dict(lr=0.02)),
    # ν = ‖M‖_* scales the step with the gradient (small here): lr as the README's 1e-3 × O(100)
    ("polargrad", None, dict(lr=0.2, polar_method="qdwh")),
    ("polargrad", "polargrad_polar_first", dict(lr=0.2, polar_method="svd")),
    ("lowrank_muon", None, dict(lr=0.02, rank=4, min_dim=8)),
    ("lowrank_muon", "lowrank_msgd", dict(lr=0.02, rank=4, min_dim=8)),
]
IDS = [n or s for s, n, _ in ALL]


@pytest.mark.parametrize("spec,name,hyper", ALL, ids=IDS)
def test_trains_small_model(spec, name, hyper):
    check_trains(spec, name, hyper)


@pytest.mark.parametrize("spec,name,hyper", ALL, ids=IDS)
def test_bitwise_resume(spec, name, hyper):
    """10 steps, state_dict → fresh parameters + fresh optimizer → 10 more == 20 straight, bitwise
    (for low-rank Muon this includes the sketch's columns: they depend on the restored step).
    A tall matrix (the low-rank rule for low-rank Muon, rank 3 of 8), the conv and the bias: graph
    builds dominate the runtime, so the straight run is the first optimizer continued."""
    check_bitwise_resume(spec, name, {**hyper, **(LR_KW if spec == "lowrank_muon" else {})})
