"""FISMO (algorithms.md §12) and Drop-Muon (§11) specs against the independent float64 oracles
``R.FISMO`` and ``R.DropMuon`` (tests/reference/frontier.py, written from algorithms.md, sharing
no code with optloom), the Kronecker primitives they brought (optloom/primitives/kronecker.py),
the suffix sampler's distribution, training and bitwise resume.

Agreement runs use the harness shapes — tall (12×8), wide (8×12), square (10×10), conv (4×3×3×3,
viewed as 4×27) and a bias — over ≥ 20 steps with fresh random gradients (``.grad`` on the spec
side, the same values in float64 to the reference); the bias goes to the aux AdamW (``R.AdamW``).
We compare the displacement ``W_t − W_0`` norm-wise, relative to the reference's displacement.

Tolerances (from the arithmetic, not from measured output; u = unit roundoff):

* DROP32 = 2e-5 (Drop-Muon, float32 NS against float64): as Muon in test_frontier_specs —
  u = 6e-8 per op, NS amplifies one step's input error by ≲ 10, 20+ steps add linearly:
  20 × 10 × 1e-7 = 2e-5. The gate adds no arithmetic (a select).
* FISMO in float64 (FISMO64 = 1e-9): the spec runs with float64 parameters, float64 eigh and NS
  against the float64 reference, so the two sides differ only by rounding order. The chain
  below with u = 1.1e-16 gives ≲ 4e-13 per step; even multiplied by the 20 steps 1e-11; 1e-9
  leaves two orders. This is the exactness test (any change of the rule — Jacobi instead of
  Gauss–Seidel order, a missing sym/trace normalization, momentum before whitening — moves the
  displacement by 1e-3…1e-1).
* FISMO in float32 (the shipped precision), bound computed per run, not a constant:
  - an eigh-based inverse root of a d×d SPD matrix A: LAPACK's eigh is backward stable with
    normwise backward error ≲ d·u·‖A‖, and A ↦ A^{−1/p} has relative condition ≤ κ(A), so the
    computed root is off by ≤ κ·d·u relative. The test asserts κ ≤ KAPPA_MAX = 12 for every
    factor the reference produces (its own trajectory) and d ≤ 27 (the conv's Q): e_root ≤
    12 × 27 × 6e-8 = 2e-5;
  - the factors are an EMA with weights γ and 1−γ summing to one, so an error in P_{t−1} is not
    amplified by the recursion: the factor error stays at the per-step level e_root (the trace
    normalization and sym are exact up to u);
  - ΔW = P^{−1/2} NS₅(M) Q^{−1/2}: the two outer roots contribute 2·e_root; M is an EMA of
    whitened gradients (≤ 2·e_root + 3u) and NS₅ amplifies its input error by ≲ 10 (as above):
    per step e_step = (2 + 10·2)·e_root + 30u ≈ 22 × 2e-5 = 4.4e-4;
  - the displacement error ‖Σ e_t‖ ≤ e_step·Σ‖ΔW_t‖, so relative to ‖Σ ΔW_t‖ the bound is
    e_step·ρ with ρ = Σ‖ΔW_t‖/‖W_T − W_0‖ measured on the REFERENCE trajectory (ρ ≥ 1; ~2–4
    here because momentum correlates the steps).
  The fp32 test checks that the float32 path (f32 eigh, the eigenvalue floor, dtypes) stays in
  this budget; exactness of the rule is the float64 test's job.
"""
from __future__ import annotations

import math

import pytest
import torch

import optloom
import tests.reference as R
from optloom.primitives import Ctx
from optloom.primitives.kronecker import gram, inv_root, sym, trace
from optloom.primitives.sampling import sample_layers
from optloom.primitives.streams import py_hash_stream
from tests.reference.frontier import suffix_active_set
from tests.spec_harness import (MATRICES, SHAPES, SPECS, Composite, assert_close, check_bitwise_resume,  # noqa: F401
                                check_trains, one_thread, params, run_pair)

DROP32, FISMO64 = 2e-5, 1e-9
KAPPA_MAX, D_MAX, U32 = 12.0, 27, 2.0**-24
E_ROOT = KAPPA_MAX * D_MAX * U32
E_STEP = (2 + 10 * 2) * E_ROOT + 30 * U32
ADAM = dict(adam_lr=0.01, adam_betas=(0.9, 0.95), adam_eps=1e-8)
STEPS = 24


def _adam_ref(ps):
    return R.AdamW(ps, lr=ADAM["adam_lr"], betas=ADAM["adam_betas"], eps=ADAM["adam_eps"], weight_decay=0.0)


# ---- FISMO ------------------------------------------------------------------------------------

class FismoSide(Composite):
    """R.FISMO + R.AdamW, recording ‖ΔW_t‖ of every step and the largest condition number of the
    factors P, Q (and hence of the Q_{t−1} inverted at the next step) along the reference run."""

    def __init__(self, init, ref_kw):
        super().__init__(init, lambda ps: R.FISMO(ps, polar="ns", **ref_kw), _adam_ref)
        self.path = {k: 0.0 for k in MATRICES}
        self.kappa = 1.0

    def step(self, grads, t=None, lr=None):
        before = {k: self.mat.params[k].clone() for k in MATRICES}
        super().step(grads, t, lr)
        for k in MATRICES:
            self.path[k] += float((self.mat.params[k] - before[k]).norm())
            for f in ("P", "Q"):
                ev = torch.linalg.eigvalsh(self.mat.state[k][f])
                self.kappa = max(self.kappa, float(ev[-1] / ev[0]))


FISMO_CASES = [  # (spec hyperparameters, matching reference keywords)
    (dict(), dict()),  # the spec's defaults: lr 0.02, β 0.95, γ 0.95, μ 1e-3 (checked below)
    (dict(lr=0.05, beta=0.9, gamma=0.9, mu=1e-2),
     dict(lr=0.05, beta=0.9, gamma=0.9, mu=1e-2)),
    (dict(lr=0.03, beta=0.9, gamma=0.9, mu=1e-2, weight_decay=0.1, shape_scale="original"),
     dict(lr=0.03, beta=0.9, gamma=0.9, mu=1e-2, weight_decay=0.1, shape="original")),
]
FISMO_DEFAULT_REF = dict(lr=0.02, beta=0.95, gamma=0.95, mu=1e-3)


def test_fismo_defaults_are_the_documented_ones():
    d = optloom.compile(f"{SPECS}/fismo.opt").defaults()
    assert {k: d[k] for k in FISMO_DEFAULT_REF} == FISMO_DEFAULT_REF
    assert (d["weight_decay"], d["shape_scale"], d["ns_steps"]) == (0.0, "none", 5)


@pytest.mark.parametrize("case", FISMO_CASES, ids=["defaults", "fast-forgetting", "decay+shape"])
def test_fismo_matches_reference_fp32(case):
    hyper, ref_kw = case
    ref_kw = {**FISMO_DEFAULT_REF, **ref_kw}
    sides = []

    def make(init):
        sides.append(FismoSide(init, ref_kw))
        return sides[-1]

    errs, _ = run_pair("fismo", {**hyper, **ADAM}, make, steps=STEPS)
    side = sides[0]
    assert side.kappa <= KAPPA_MAX, f"factors too ill-conditioned for the bound: κ = {side.kappa:.1f}"
    for k in MATRICES:
        rho = side.path[k] / float((side.mat.params[k] - params(0)[k].double()).norm())
        assert errs[k] < E_STEP * rho, (k, errs[k], E_STEP * rho)
    assert errs["bias"] < DROP32  # the aux AdamW: elementwise float32, 24 steps ≪ 2e-5


@pytest.fixture
def clamp_ns(monkeypatch):
    """The reference's NS pre-normalizes X/(‖X‖_F + 1e-7) (Keller's form); optloom's divides by
    max(‖X‖_F, 1e-7) (torch.optim.Muon's). Both are documented Muon variants; they differ by
    1e-7/‖M‖ relative, which is invisible at float32 but not at the float64 tolerance — so the
    float64 runs give the reference its own ``eps_mode="clamp"`` option."""
    import tests.reference.frontier as F
    from tests.reference.common import newton_schulz
    monkeypatch.setattr(F, "newton_schulz", lambda X, coeffs, steps: newton_schulz(X, coeffs, steps, eps_mode="clamp"))


def _fismo_fp64(hyper, ref_kw, steps=STEPS, seed=0):
    """The spec on float64 parameters (float64 eigh and NS) next to R.FISMO: relative errors."""
    init = {k: v.double() for k, v in params(seed).items() if k in MATRICES}
    ps = {k: torch.nn.Parameter(v.clone()) for k, v in init.items()}
    opt = optloom.optimizer(f"{SPECS}/fismo.opt", list(ps.items()), **{**hyper, "ns_dtype": "float64"})
    ref = R.FISMO(list(init.items()), polar="ns", **{**FISMO_DEFAULT_REF, **ref_kw})
    gen = torch.Generator().manual_seed(2000 + seed)
    for _ in range(steps):
        grads = {k: torch.randn(SHAPES[k], generator=gen, dtype=torch.float64) for k in MATRICES}
        for k, p in ps.items():
            p.grad = grads[k].clone()
        opt.step()
        ref.step(grads)
    errs = {k: float((ps[k].detach() - ref.params[k]).norm() / (ref.params[k] - init[k]).norm()) for k in MATRICES}
    return errs, opt, ref


@pytest.mark.parametrize("case", FISMO_CASES, ids=["defaults", "fast-forgetting", "decay+shape"])
def test_fismo_matches_reference_fp64(case, clamp_ns):
    errs, opt, ref = _fismo_fp64(*case)
    assert_close(errs, FISMO64)
    # the stored feedback state is the reference's P, Q and whitened momentum M
    for i, k in enumerate(MATRICES):
        st = opt.state[list(opt.param_groups[0]["params"])[i]]
        for mine, theirs in (("P", "P"), ("Q", "Q"), ("M", "momentum_buffer")):
            want = ref.state[k][theirs]
            assert float((st[mine].reshape(want.shape) - want).norm() / want.norm()) < FISMO64, (k, mine)


def test_fismo_factors_are_trace_normalized_spd(clamp_ns):
    """After any step P and Q are symmetric, positive definite, tr P = m and tr Q = n."""
    _, opt, _ = _fismo_fp64(dict(gamma=0.5, mu=1e-2), dict(gamma=0.5, mu=1e-2), steps=5)
    for p in opt.param_groups[0]["params"]:
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


# ---- Kronecker primitives (gram has two tensor inputs: the contract test skips it) -------------

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


# ---- Drop-Muon --------------------------------------------------------------------------------

def suffix_start(t: int, b: int, period: int = 1, seed: int = 0) -> int:
    """The documented draw (sample_layers, order="suffix"): k = ⌊(t−1)/period⌋, s = ⌊h₀·b/2³²⌋
    with h₀ the first value of the counter-based hash stream of (seed, k, 0)."""
    return py_hash_stream(seed, (t - 1) // period, 0, b)[0] * b // 2**32


def sampler_set(t: int, names, period: int = 1, seed: int = 0) -> set:
    """The active set as the spec's sampler computes it: sample_layers' reference on a hand-built
    single-parameter Ctx per member of the rule's group."""
    group = tuple(range(len(names)))
    out = set()
    for j, k in enumerate(names):
        c = Ctx(layout="single", param=torch.zeros(()), step=t, states={}, ids=j, group=group)
        if bool(sample_layers.ref(c, 0.25, "suffix", period, seed)):
            out.add(k)
    return out


class DropSide:
    """R.DropMuon on the hidden matrices (fed the sampler's active set) + R.AdamW on the bias."""

    def __init__(self, init, ref_kw, period, seed):
        self.mat = R.DropMuon([(k, init[k]) for k in MATRICES], sharp="ns", **ref_kw)
        self.vec = _adam_ref([("bias", init["bias"])])
        self.period, self.seed, self.sets = period, seed, []

    def step(self, grads, t, lr=None):
        active = sampler_set(t, MATRICES, self.period, self.seed)
        assert active == suffix_active_set(MATRICES, suffix_start(t, len(MATRICES), self.period, self.seed))
        self.sets.append(active)
        self.mat.step({k: grads[k] for k in MATRICES}, active)
        self.vec.step({"bias": grads["bias"]})

    @property
    def params(self):
        return {**self.mat.params, **self.vec.params}


DROP_CASES = [  # (spec hyperparameters, reference keywords, period, seed)
    (dict(lr=0.05, beta=0.1), dict(lr=0.05, beta=0.1), 1, 0),
    (dict(lr=0.05, beta=0.05, resample_every=3, seed=5), dict(lr=0.05, beta=0.05), 3, 5),
    (dict(lr=0.03, beta=0.2, shape_scale="original", seed=11), dict(lr=0.03, beta=0.2, shape="original"), 1, 11),
]


@pytest.mark.parametrize("case", DROP_CASES, ids=["every-step", "resample-every-3", "shape-scaled"])
def test_drop_muon_matches_reference(case):
    hyper, ref_kw, period, seed = case
    sides = []

    def make(init):
        sides.append(DropSide(init, ref_kw, period, seed))
        return sides[-1]

    errs, _ = run_pair("drop_muon", {**hyper, **ADAM, "ns_dtype": "float32"}, make, steps=STEPS)
    assert_close(errs, DROP32)
    sets = sides[0].sets
    # the run covers skipped layers: every layer but the last is frozen on some step, the last
    # (always in a suffix) on none, and some step updates all of them
    for k in MATRICES[:-1]:
        assert any(k not in s for s in sets), k
    assert all(MATRICES[-1] in s for s in sets)
    assert any(len(s) == len(MATRICES) for s in sets) and any(len(s) == 1 for s in sets)


def test_drop_muon_frozen_layers_are_bitwise_frozen():
    """Inactive layers: weight AND momentum unchanged bitwise (no decay either, here λ = 0.1);
    active layers move; the bias (AdamW, not sampled) moves every step."""
    init = params(1)
    ps = {k: torch.nn.Parameter(v.clone()) for k, v in init.items()}
    opt = optloom.optimizer(f"{SPECS}/drop_muon.opt", list(ps.items()), lr=0.05, weight_decay=0.1,
                            ns_dtype="float32", seed=3)
    gen = torch.Generator().manual_seed(9)
    for t in range(1, 16):
        w0 = {k: p.detach().clone() for k, p in ps.items()}
        m0 = {k: opt.state[p]["momentum_buffer"].clone() for k, p in ps.items() if k in MATRICES and p in opt.state}
        for k, p in ps.items():
            p.grad = torch.randn(SHAPES[k], generator=gen)
        opt.step()
        active = suffix_active_set(MATRICES, suffix_start(t, len(MATRICES), seed=3))
        for k in MATRICES:
            mom = opt.state[ps[k]]["momentum_buffer"]
            if k in active:
                assert not torch.equal(ps[k].detach(), w0[k]), (t, k)
            else:
                assert torch.equal(ps[k].detach(), w0[k]), (t, k)
                assert torch.equal(mom, m0.get(k, torch.zeros_like(mom))), (t, k)
        assert not torch.equal(ps["bias"].detach(), w0["bias"])


@pytest.mark.parametrize("b", [1, 4, 7])
def test_suffix_sampler_distribution(b):
    """sample_layers(order="suffix"): the batched sampler equals its reference and the documented
    draw; every set is a non-empty contiguous suffix {s, …, b−1}; over N draws each start index
    appears, with counts within 5σ of N/b (σ = sqrt(N·(1/b)·(1−1/b)), the binomial spread of a
    uniform start); draws are constant within a period and change with the seed."""
    N = 1200
    ids = torch.arange(b) + 20
    group = tuple(int(i) for i in ids)
    counts = [0] * b
    for t in range(1, N + 1):
        c = Ctx(layout="stacked", param=torch.zeros(b), step=torch.tensor(float(t)), states={}, ids=ids, group=group)
        mask = sample_layers.fn(c, 0.25, "suffix", 1, 0)
        act = [j for j in range(b) if bool(mask[j])]
        s = suffix_start(t, b)
        assert act == list(range(s, b)), (t, act, s)
        for j in (0, b - 1):  # the per-parameter reference agrees (ends of the group)
            cj = Ctx(layout="single", param=torch.zeros(()), step=t, states={}, ids=group[j], group=group)
            assert bool(sample_layers.ref(cj, 0.25, "suffix", 1, 0)) == (j >= s)
        counts[s] += 1
    sigma = math.sqrt(N * (1 / b) * (1 - 1 / b))
    assert all(c > 0 for c in counts), counts
    assert all(abs(c - N / b) <= 5 * sigma + 1e-9 for c in counts), (counts, N / b, sigma)
    if b > 1:
        starts = [suffix_start(t, b, period=4) for t in range(1, 41)]
        assert all(len(set(starts[i:i + 4])) == 1 for i in range(0, 40, 4))
        assert [suffix_start(t, b, seed=1) for t in range(1, 41)] != [suffix_start(t, b) for t in range(1, 41)]


# ---- training and bitwise resume ----------------------------------------------------------------

def test_fismo_trains():
    check_trains("fismo", None, dict(lr=0.05, adam_lr=0.01))


def test_drop_muon_trains():
    check_trains("drop_muon", None, dict(lr=0.05, adam_lr=0.01, ns_dtype="float32"))


def test_fismo_bitwise_resume():
    check_bitwise_resume("fismo", None, dict(lr=0.05, adam_lr=0.01))


def test_drop_muon_bitwise_resume():
    # resample_every = 4: draws at steps 1, 5, 9, 13 — the resumed step 11 is mid-period
    check_bitwise_resume("drop_muon", None, dict(lr=0.05, adam_lr=0.01, resample_every=4, ns_dtype="float32"))
