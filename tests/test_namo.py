"""NAMO, NAMO-D and SPECTRA specs against the independent float64 oracles in ``tests/reference``
(``adaptive.py``: NAMO, NAMOD; ``spectral.py``: SPECTRA, ``warmup_c``), plus the primitives they
brought (``optloom/primitives/adaptive.py``), training and bitwise resume.

Agreement runs: tall (12×8), wide (8×12), square (10×10) and conv (4×3×3×3) weights plus a bias,
≥ 20 steps, fresh random gradients set on ``.grad`` and the same values (in float64) given to the
reference. NAMO/NAMO-D send the bias to their aux AdamW (compared with ``R.AdamW``); SPECTRA clips
every parameter (the bias by norm). We compare the displacement ``W_t − W_0`` norm-wise,
relative to the reference's displacement.

Tolerances (from the arithmetic, not from measured output):
* FP32 = 2e-5 (NAMO, NAMO-D with float32 Newton–Schulz against the float64 reference): unit
  roundoff 6e-8 per op; NS (5 steps, |p'(σ)| ≤ a ≈ 3.4) and the norm ratios amplify one step's
  input error by ~10; 20+ steps add up linearly: 20 × 10 × 1e-7 = 2e-5.
* CLIP32 = 5e-5 (SPECTRA with the float32 clip against an exact SVD clip): 10 coupled
  Newton–Schulz iterations (two matmuls each) plus the final product — the same budget as the
  float32 row of the primitive contract (6e-8 × ~50 amplification in 10-step iterations ≈ 3e-6
  per step, 20 steps ≈ 6e-5; entries' errors are not all aligned, 5e-5). The truncation error of
  10 iterations is below 1e-10 for σ_max/c ≤ 10 (clip_spectral docstring, tested in
  test_prim_matrix), and our inputs stay there: sign matrices of 12×8 have σ_max ≤ √96 < 10 and
  c ≥ 1 here.
* BF16 = 2e-2 (NAMO/NAMO-D default bf16 NS, the reference also in bf16): both sides round
  nearly equal inputs to bf16; where a rounding flips, one NS output entry moves by a bf16 ulp
  (3.9e-3 relative) times the NS slope (≤ 3.4) — a ~1e-2 perturbation of one step's update for
  the affected matrix, diluted in the 20-step displacement (~1/20 per step): ≤ ~5e-3; 2e-2
  leaves a factor of 4.
* CLIP16 = 5e-2 (SPECTRA's default bf16 clip against the exact float64 clip, which has no bf16
  mode): every product in the 10 coupled iterations rounds at 3.9e-3 relative; the iteration
  is self-correcting in Y·Z ≈ I, so per-step errors stay at a few ulps (≈ 1e-2) and average
  over the 20 steps; 5e-2 is the bound a bf16 algorithm can be held to.
"""
from __future__ import annotations

import math

import pytest
import torch

import optloom
import tests.reference as R
from optloom.primitives import Ctx, lookup
from tests.reference.spectral import warmup_c
from tests.spec_harness import (MATRICES, SHAPES, STEPS, Composite, assert_close, check_bitwise_resume,  # noqa: F401
                                check_trains, one_thread, params, run_pair)

FP32, CLIP32, BF16, CLIP16 = 2e-5, 5e-5, 2e-2, 5e-2
NAMO_ADAM = dict(adam_lr=0.01, adam_betas=(0.9, 0.95), adam_eps=1e-8)


def NamoSide(init, ref_cls, ref_kw):
    """Reference side for NAMO/NAMO-D: the family oracle on the matrices, AdamW on the bias."""
    return Composite(init, lambda ps: ref_cls(ps, **ref_kw),
                     lambda ps: R.AdamW(ps, lr=NAMO_ADAM["adam_lr"], betas=NAMO_ADAM["adam_betas"],
                                        eps=NAMO_ADAM["adam_eps"], weight_decay=0.0))


def _run_pair(spec, name, hyper, make_side, steps=STEPS, seed=0, schedule=None):
    return run_pair(spec, hyper, make_side, name=name, steps=steps, seed=seed, schedule=schedule)


# ---- NAMO / NAMO-D --------------------------------------------------------------------------
# lr 0.05 keeps the clamps open; lr 0.8 closes them: at t = 1, N = (1−μ₁²)G and sqrt(v) =
# sqrt(1−μ₂)‖G‖, so α₁ = lr·(1+μ₁) = 1.52 > 1 (decay clamp) and α₁·0.2·√12 > 1 (step clamp).
NAMO_CASES = [
    dict(lr=0.05, momentum=0.95, weight_decay=0.1),
    dict(lr=0.8, momentum=0.9, weight_decay=0.1, mu2=0.95),
]


@pytest.mark.parametrize("ns_dtype,tol", [("float32", FP32), ("bfloat16", BF16)])
@pytest.mark.parametrize("case", NAMO_CASES, ids=["open", "clamped"])
def test_namo_matches_reference(case, ns_dtype, tol):
    ref_dt = torch.bfloat16 if ns_dtype == "bfloat16" else torch.float64
    kw = dict(lr=case["lr"], momentum=case["momentum"], weight_decay=case["weight_decay"],
              mu2=case.get("mu2", 0.99), ns_dtype=ref_dt)
    errs, _ = _run_pair("namo", None, {**case, **NAMO_ADAM, "ns_dtype": ns_dtype},
                        lambda init: NamoSide(init, R.NAMO, kw))
    assert_close(errs, tol)


# c = 1 pins every column to the mean; wd 1.5 with the clamped lr exercises max(0, 1 − λ·min(1, ·)).
NAMOD_CASES = [
    dict(lr=0.05, col_state_clamp_c=0.75, weight_decay=0.1),
    dict(lr=0.05, col_state_clamp_c=0.1, weight_decay=0.1),
    dict(lr=0.05, col_state_clamp_c=1.0, weight_decay=0.1),
    dict(lr=0.8, col_state_clamp_c=0.4, weight_decay=1.5),
]


@pytest.mark.parametrize("case,ns_dtype,tol", [
    *[(c, "float32", FP32) for c in NAMOD_CASES], (NAMOD_CASES[0], "bfloat16", BF16),
], ids=["c0.75", "c0.1", "c1", "clamped-wd1.5", "c0.75-bf16"])
def test_namo_d_matches_reference(case, ns_dtype, tol):
    ref_dt = torch.bfloat16 if ns_dtype == "bfloat16" else torch.float64
    kw = dict(lr=case["lr"], weight_decay=case["weight_decay"], col_state_clamp_c=case["col_state_clamp_c"],
              ns_dtype=ref_dt)
    errs, _ = _run_pair("namo_d", None, {**case, **NAMO_ADAM, "ns_dtype": ns_dtype},
                        lambda init: NamoSide(init, R.NAMOD, kw))
    assert_close(errs, tol)


def test_namo_d_clamp_matters():
    """The column clamp changes the result (so the agreement above tests it): c = 0.75 vs a
    practically free clamp differ far beyond the tolerance."""
    hyper = {**NAMO_ADAM, "lr": 0.05, "ns_dtype": "float32"}
    kw = dict(lr=0.05, col_state_clamp_c=1e-6, ns_dtype=torch.float64)
    errs, _ = _run_pair("namo_d", None, {**hyper, "col_state_clamp_c": 0.75},
                        lambda init: NamoSide(init, R.NAMOD, kw))
    assert min(errs[k] for k in MATRICES) > 100 * FP32, errs


# ---- SPECTRA --------------------------------------------------------------------------------
PEAK, WARM = 0.01, 8


def _schedule(t):
    """Linear warm-up to PEAK over WARM steps, then cosine decay (what a scheduler would set)."""
    if t <= WARM:
        return PEAK * t / WARM
    return PEAK * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (t - WARM) / 16)))


class SpectraSide:
    """``ref`` follows §8.1's warm-up rule; ``untied`` keeps c constant (to show the rule matters)."""

    def __init__(self, init, base, c, **kw):
        self.ref = R.SPECTRA(list(init.items()), lr=PEAK, c=c, base=base, **kw)
        self.untied = R.SPECTRA(list(init.items()), lr=PEAK, c=c, base=base, **kw)
        self.c = c

    def step(self, grads, t, lr):
        self.ref.lr = self.untied.lr = lr
        self.ref.c = warmup_c(self.c, PEAK, lr) if t <= WARM else self.c
        self.ref.step(grads)
        self.untied.step(grads)

    @property
    def params(self):
        return self.ref.params


SPECTRA_CASES = [
    ("spectra_adamw", "adamw", dict(betas=(0.8, 0.999), eps=1e-8, weight_decay=0.1),
     dict(betas=(0.8, 0.999), eps=1e-8, weight_decay=0.1)),
    ("spectra_signum", "signum", dict(momentum=0.9, weight_decay=0.1), dict(beta=0.9, weight_decay=0.1)),
]


@pytest.mark.parametrize("clip_dtype,tol", [("float32", CLIP32), ("bfloat16", CLIP16)])
@pytest.mark.parametrize("name,base,hyper,ref_kw", SPECTRA_CASES, ids=["adamw", "signum"])
def test_spectra_matches_reference_through_warmup(name, base, hyper, ref_kw, clip_dtype, tol):
    """24 steps: 8 of linear warm-up (c_t = c·η₀/η_t), then cosine decay with c_t = c; the lr is
    changed in ``param_groups`` before every step. c = 1 makes the clip bind (σ(U) up to ~10)."""
    c = 1.0
    spec_h = dict(hyper, c=c, peak_lr=PEAK, warmup_steps=WARM, clip_dtype=clip_dtype)
    sides = []
    errs, got = _run_pair("spectra", name, spec_h,
                          lambda init: sides.append(SpectraSide(init, base, c, **ref_kw)) or sides[0],
                          steps=24, schedule=_schedule)
    assert_close(errs, tol)
    # the warm-up rule is visible: the reference with a constant threshold is far off
    init = params(0)
    for k in SHAPES:
        d_ref = sides[0].untied.params[k] - init[k].double()
        assert float((got[k] - init[k].double() - d_ref).norm() / d_ref.norm()) > 100 * CLIP32, k


# ---- primitives ------------------------------------------------------------------------------

def _ctx(step=1.0):
    return Ctx(layout="stacked", param=torch.zeros(2, 1), step=torch.tensor(step, dtype=torch.float64),
               states={})


def test_clamp_to_mean_values_and_skip_rule():
    prim = lookup("clamp_to_mean")
    d = torch.tensor([[[1.0, 2.0, 9.0]], [[-1.0, -2.0, 0.5]]], dtype=torch.float64)  # means 4 and < 0
    out = prim.fn(_ctx(), d, c=torch.tensor(0.5, dtype=torch.float64))
    assert torch.equal(out[0], torch.tensor([[2.0, 2.0, 8.0]], dtype=torch.float64))
    assert torch.equal(out[1], d[1])  # mean ≤ 0: skipped
    nan = torch.tensor([[[float("nan"), 1.0, 3.0]]], dtype=torch.float64)  # nanmean = 2
    out = prim.fn(_ctx(), nan, c=0.75)
    assert torch.isnan(out[0, 0, 0]) and torch.allclose(out[0, 0, 1:], torch.tensor([1.5, 2.0 / 0.75], dtype=torch.float64))
    inf = torch.tensor([[[float("inf"), 1.0]]], dtype=torch.float64)
    assert torch.equal(prim.fn(_ctx(), inf, c=0.75), inf)  # non-finite mean: skipped
    for row in (d[0], nan[0], inf[0]):
        want = prim.ref(None, row.clone(), 0.75)
        got = prim.fn(_ctx(), row[None].clone(), c=0.75)[0]
        assert torch.equal(torch.isnan(got), torch.isnan(want)) and torch.equal(got.nan_to_num(), want.nan_to_num())


def test_col_norms_and_shape_factor():
    x = torch.randn(3, 5, 4, dtype=torch.float64)
    cn = lookup("col_norms").fn(_ctx(), x)
    assert cn.shape == (3, 1, 4) and torch.allclose(cn[:, 0], x.norm(dim=1))
    sf = lookup("shape_factor")
    assert torch.allclose(sf.fn(_ctx(), x, kind="moonlight", coeff=0.2), torch.full((3,), 0.2 * math.sqrt(5), dtype=torch.float64))
    assert torch.allclose(sf.fn(_ctx(), x, kind="muon"), torch.full((3,), math.sqrt(5 / 4), dtype=torch.float64))


def test_warmup_threshold_rule():
    prim = lookup("warmup_threshold")
    f64 = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    for step, lr, want in [(1, 2.5e-4, 20.0), (2000, 1e-3, 5.0), (2001, 2.5e-4, 5.0), (5, 0.0, math.inf)]:
        got = prim.fn(_ctx(float(step)), c=f64(5.0), peak_lr=f64(1e-3), lr=f64(lr), warmup_steps=2000)
        assert float(got) == pytest.approx(want), (step, lr)
        ctx = Ctx(layout="single", param=torch.zeros(1), step=step, states={})
        assert prim.ref(ctx, 5.0, 1e-3, lr, 2000) == pytest.approx(want)


def test_as_scalar_refuses_tensors():
    prim = lookup("as_scalar")
    assert torch.equal(prim.fn(_ctx(), torch.ones(2)), torch.ones(2))
    with pytest.raises(ValueError, match="one value per parameter"):
        prim.fn(_ctx(), torch.ones(2, 3))
    spec = "optimizer bad(lr = 0.1) { all => grad |> as_scalar |> apply(lr) }"
    p = torch.nn.Parameter(torch.randn(3, 3))
    p.grad = torch.randn(3, 3)
    with pytest.raises(Exception, match="one value per parameter"):
        optloom.optimizer(spec, [("w", p)]).step()


# ---- training and resume ---------------------------------------------------------------------
ALL = [
    ("namo", None, dict(lr=0.05, adam_lr=0.01)),
    ("namo_d", None, dict(lr=0.05, adam_lr=0.01)),
    ("spectra", "spectra_adamw", dict(lr=0.01, peak_lr=0.01, warmup_steps=5, c=1.0)),
    ("spectra", "spectra_signum", dict(lr=0.01, peak_lr=0.01, warmup_steps=5, c=1.0)),
]
IDS = [n or s for s, n, _ in ALL]


@pytest.mark.parametrize("spec,name,hyper", ALL, ids=IDS)
def test_trains_small_model(spec, name, hyper):
    warmup = (lambda t: hyper["lr"] * min(1.0, t / hyper["warmup_steps"])) if spec == "spectra" else None
    check_trains(spec, name, hyper, lr_at=warmup)


@pytest.mark.parametrize("spec,name,hyper", ALL, ids=IDS)
def test_bitwise_resume(spec, name, hyper):
    """10 steps, state_dict → fresh parameters + fresh optimizer → 10 more == 20 straight, bitwise.
    For SPECTRA the lr follows a warm-up of 12 steps, so the warm-up boundary falls after the
    resume and the restored step count decides the threshold."""
    if spec == "spectra":
        check_bitwise_resume(spec, name, {**hyper, "warmup_steps": 12}, lr_at=lambda t: hyper["lr"] * min(1.0, t / 12))
    else:
        check_bitwise_resume(spec, name, hyper)


def test_spectral_preclip_matches_svd_and_skips_vectors():
    """SPECTRA's pre-clip (§8.2) on raw gradients: every singular value σ ↦ σ/sqrt(1 + σ²/c²)
    (SVD oracle, float64), conv gradients as (out, −1) matrices, vectors untouched. c is chosen
    so σ_max/c ≈ 5, where 10 coupled-NS iterations converge (spectral.py docstring); float32
    compute leaves ~1e-6 relative (roundoff 6e-8 × ~20 matrix products), so 1e-5."""
    g = torch.Generator().manual_seed(11)
    ps = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in [(8, 12), (12, 8), (4, 3, 3, 3), (12,)]]
    for p in ps:
        p.grad = torch.randn(p.shape, generator=g)
    before = [p.grad.clone() for p in ps]
    c = max(float(torch.linalg.matrix_norm(b.reshape(b.shape[0], -1), ord=2)) for b in before[:3]) / 5
    optloom.spectral_preclip_(ps, c=c, dtype="float32")
    for p, b in zip(ps[:3], before[:3]):
        U, S, Vh = torch.linalg.svd(b.reshape(b.shape[0], -1).double(), full_matrices=False)
        want = (U * (S / torch.sqrt(1 + S**2 / c**2))) @ Vh
        got = p.grad.reshape(b.shape[0], -1).double()
        assert float((got - want).norm() / want.norm()) < 1e-5
    assert torch.equal(ps[3].grad, before[3])
    with pytest.raises(ValueError, match="argument 'c'"):
        optloom.spectral_preclip_(ps, c=-1.0)
