"""The tolerances of the contract's oracle comparisons, each decided from the arithmetic (not from
measured output) and carrying its argument. u = unit roundoff: 6e-8 (float32, 2⁻²⁴), 3.9e-3
(bfloat16, 2⁻⁸), 1.1e-16 (float64). An error is norm-wise and relative: of each parameter's
displacement ``W_t − W_0`` against the reference's (so a small lr cannot hide an error behind the
initial weights), or, where the oracle was stated so, of the final weights (``of="params"``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

from tests.spec_harness import Run

U32 = 2.0**-24
Bound = Union[float, Callable[[Run, str], float]]


@dataclass(frozen=True)
class Tol:
    bound: Bound  # a number, or bound(run, parameter) computed from the run
    why: str
    of: str = "displacement"  # or "params"

    def check(self, run: Run) -> None:
        errs = run.errs if self.of == "displacement" else run.param_errors()
        limits = {k: self.bound(run, k) if callable(self.bound) else self.bound for k in errs}
        bad = {k: (e, limits[k]) for k, e in errs.items() if not e < limits[k]}
        assert not bad, f"relative {self.of} error above its bound {bad} (all: {errs}); the bound: {self.why}"


TORCH_FP32 = Tol(1e-6, of="params", why="""
both sides run the same float32 operations (torch.optim against the spec's graph), so only the order
of roundings differs (~1e-7 relative per op). For Muon: torch.optim.Muon runs its Newton–Schulz in
bf16 with fused addmm; optloom's bf16 NS uses the same fused baddbmm, so the parameters agree to
fp32 rounding (the bf16 update is exactly representable in fp32; only accumulation differs).""")

SIGN_FP32 = Tol(lambda run, k: run.steps * 2.0**-23, of="params", why="""
steps·2⁻²³: the fp32 weights are rounded once per step (relative 2⁻²⁴ each), so after `steps` steps
they may drift from the float64 run by up to steps·2⁻²³ relative; sign() flips would show as far
more.""")

MUON_FP32 = Tol(2e-5, why="""
the spec runs in float32 (u = 6e-8), the reference in float64. Each step rounds the momentum, the
normalization and the update at ~1e-7 relative; Newton–Schulz (5 fp32 iterations with
|p'(σ)| ≤ a ≈ 3.4), norm ratios and the clamp/quantile can amplify one step's input error by ~10,
and 20+ steps add up linearly: 20 × 10 × 1e-7 = 2e-5. A gate (Drop-Muon) adds no arithmetic
(a select).""")

LOWRANK_BF16 = Tol(5e-2, why="""
low-rank Muon's default bf16 Newton–Schulz (the reference runs its NS in bf16 too): bf16 unit
roundoff 3.9e-3, and the two sides round slightly different float32/float64 inputs to bf16, so
single entries of the NS output can differ by a bf16 ulp amplified by the NS polynomial (a few
×3.9e-3); the norm-wise displacement error of a 20-step sum of such updates stays below ~1e-2, and
5e-2 leaves a factor of 5.""")

NAMO_BF16 = Tol(2e-2, why="""
NAMO/NAMO-D's default bf16 NS, the reference also in bf16: both sides round nearly equal inputs to
bf16; where a rounding flips, one NS output entry moves by a bf16 ulp (3.9e-3 relative) times the
NS slope (≤ 3.4) — a ~1e-2 perturbation of one step's update for the affected matrix, diluted in
the 20-step displacement (~1/20 per step): ≤ ~5e-3; 2e-2 leaves a factor of 4.""")

CLIP32 = Tol(5e-5, why="""
SPECTRA's float32 soft clip against an exact SVD clip: 10 coupled Newton–Schulz iterations (two
matmuls each) plus the final product — the budget of the float32 row of the primitive contract
(6e-8 × ~50 amplification in 10-step iterations ≈ 3e-6 per step, 20 steps ≈ 6e-5; entries' errors
are not all aligned, 5e-5). The truncation error of 10 iterations is below 1e-10 for σ_max/c ≤ 10
(clip_spectral's docstring, tested in test_prim_matrix), and the inputs stay there: sign matrices
of 12×8 have σ_max ≤ √96 < 10 and c ≥ 1.""")

CLIP16 = Tol(5e-2, why="""
SPECTRA's default bf16 clip against the exact float64 clip, which has no bf16 mode: every product
in the 10 coupled iterations rounds at 3.9e-3 relative; the iteration is self-correcting in
Y·Z ≈ I, so per-step errors stay at a few ulps (≈ 1e-2) and average over the 20 steps; 5e-2 is the
bound a bf16 algorithm can be held to.""")

SUBSPACE_FP64 = Tol(1e-9, why="""
float64 parameters on both sides (u = 1.1e-16). The SVD-dependent paths move a singular vector by
≤ ‖E‖/gap (Wedin) for an input perturbation E ~ 1e-15·‖M‖; the oracle asserts the relative
singular gaps at the refreshes are ≥ 1e-3, so a basis moves ≤ 1e-12, amplified ≤ 10× through
u' = m'/sqrt(v) and summed over 20 steps: ≲ 2e-10 < 1e-9. The semantic check: it sees any wrong
side, order, reset or scale.""")

ADAM_FP32 = Tol(2e-5, why="""
float32 Adam-type runs (u = 6e-8): each step rounds the moments and the update at ~1e-7 relative,
Adam's division can amplify one step's input error ~10×, 20 steps add up linearly. (Where a float32
SVD basis would be discontinuous — Conda's first step is a sign of g', FRUGAL's residual a sign —
the oracle is fed the basis the spec cached and asserts no entry is within 10× of its float32
rounding.)""")

DCT_FP32 = Tol(5e-5, why="""
two float32 error sources against the float64 reference, each summed over 20 steps: storing W
rounds the parameter (|W| ≈ 0.5) at ≤ u·|W| = 3e-8 per entry per step against displacements of
≈ 0.03 or more per entry: 20 × 3e-8 / 0.03 = 2e-5; computing the update: the DCT scores and
projections are d-term matmuls (≤ d·u ≈ 6e-7), the Adam moments a few ulp (ε = 1e-8 ≪ sqrt(v)),
the lift an r-term matmul; error feedback is a projection residual E = (I − P)(G + E),
non-expansive. Trion adds float32 Newton–Schulz (slope ~10 overall) against the reference's
float64 NS, whose normalisation X/(‖X‖+1e-7) differs from ours, X/max(‖X‖, 1e-7), by 1e-7/‖X‖
(‖m_r‖ ≳ 1 here): ≲ 1e-6 per step, 20 × 1e-6 = 2e-5. 2e-5 + 2e-5 = 4e-5 < 5e-5. (The index
choice is the same on both sides: the oracle asserts a 1e-5 margin between the deciding scores.)""")

LANTON_F64 = Tol(1e-6, why="""
float64 on both sides, so the comparison sees the algorithm: the one convention the two sides
differ in is Newton–Schulz's pre-normalization X/max(‖X‖, ε) (spec, as torch.optim.Muon) vs
X/(‖X‖ + ε) (reference), a relative difference of ε/‖X‖ ≈ 1e-7 per step.""")

FISMO_FP64 = Tol(1e-9, why="""
float64 parameters, eigh and NS against the float64 reference (given torch.optim.Muon's NS
normalization X/max(‖X‖, ε)): the sides differ only by rounding order, ≲ 4e-13 per step through
the chain of FISMO_FP32 with u = 1.1e-16, 1e-11 over 20 steps; 1e-9 leaves two orders. The
exactness test: a Jacobi instead of Gauss–Seidel order, a missing sym/trace normalization or
momentum before whitening moves the displacement by 1e-3…1e-1.""")

ARO_FP32 = Tol(1e-5, of="params", why="""
fp32 QR and 5 Sinkhorn (or one row-norm) alternations per step round at ~1e-7 relative; 20 steps
stay < 1e-5.""")

ARO_SIGN_F64 = Tol(1e-12, of="params", why="""
the sign base map is discontinuous: in fp32 an entry of Rᵀ M within rounding of 0 may flip, so
this runs in float64, where the spec and the reference agree to rounding.""")


def frugal_svd_fp32(run: Run, k: str) -> float:
    """ADAM_FP32 plus the residual signs that may flip: the residual's sign can differ only where
    |residual| is within 10× of its float32 rounding (~10·u·‖G‖); each such entry moves the
    displacement by at most 2·lr·ρ_p·ρ_i (one sign flip, lr·ρ_p·ρ_i each way), so a matrix with n
    such entries (counted by the reference) gets n·2·lr·ρ_p·ρ_i / ‖reference displacement‖ more."""
    h, n = run.side.hyper, run.side.mat.close_to_zero.get(k, 0)
    assert n <= 3, (k, n)  # the comparison stays informative: at most a few ambiguous signs
    flip = 2 * h["lr"] * h["proj_params_lr_scale"] * h["inactive_lr_scale"]
    return ADAM_FP32.bound + n * flip / float((run.side.params[k] - run.init[k].double()).norm())


FRUGAL_SVD_FP32 = Tol(frugal_svd_fp32, why=frugal_svd_fp32.__doc__)

KAPPA_MAX, D_MAX = 12.0, 27
E_ROOT = KAPPA_MAX * D_MAX * U32
E_STEP = (2 + 10 * 2) * E_ROOT + 30 * U32


def fismo_fp32(run: Run, k: str) -> float:
    """FISMO in float32 (the shipped precision), a bound per run:
    - an eigh-based inverse root of a d×d SPD matrix A: LAPACK's eigh is backward stable with
      normwise backward error ≲ d·u·‖A‖, and A ↦ A^{−1/p} has relative condition ≤ κ(A), so the
      root is off by ≤ κ·d·u; the oracle asserts κ ≤ KAPPA_MAX = 12 for every factor of its own
      trajectory, and d ≤ 27 (the conv's Q): e_root ≤ 12 × 27 × 6e-8 = 2e-5;
    - the factors are an EMA with weights γ and 1−γ summing to one: an error in P_{t−1} is not
      amplified by the recursion (the trace normalization and sym are exact up to u);
    - ΔW = P^{−1/2} NS₅(M) Q^{−1/2}: the two outer roots contribute 2·e_root; M is an EMA of
      whitened gradients (≤ 2·e_root + 3u) and NS₅ amplifies its input error by ≲ 10: per step
      e_step = (2 + 10·2)·e_root + 30u ≈ 4.4e-4;
    - ‖Σ e_t‖ ≤ e_step·Σ‖ΔW_t‖, so relative to ‖Σ ΔW_t‖ the bound is e_step·ρ with
      ρ = Σ‖ΔW_t‖/‖W_T − W_0‖ measured on the reference trajectory (~2–4: momentum correlates
      the steps). The bias (the aux AdamW, elementwise float32) is held to MUON_FP32."""
    if k not in run.side.path:
        return MUON_FP32.bound
    return E_STEP * run.side.path[k] / float((run.side.mat.params[k] - run.init[k].double()).norm())


FISMO_FP32 = Tol(fismo_fp32, why=fismo_fp32.__doc__)
