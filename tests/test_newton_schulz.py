"""optloom's newton_schulz against SVD (docs/derivations.md, "Newton-Schulz"): on X = U diag(σ) Vᵀ
with a known spectrum the output is U diag(p(σ)) Vᵀ, with p the composed scalar polynomials — so
the singular vectors are X's and the singular values land in the ranges the presets promise."""
from __future__ import annotations

import math

import pytest
import torch

from optloom.primitives import lookup
from optloom.primitives.context import Ctx
from optloom.primitives.ns_coefficients import ns_schedule


def _known(m: int, n: int, sigma: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(m, len(sigma), generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(n, len(sigma), generator=g, dtype=torch.float64))
    return U, V, U @ torch.diag(sigma) @ V.T


def _scalar_map(sigma: torch.Tensor, coeffs, steps: int) -> torch.Tensor:
    """The composed odd quintic on singular values, after the Frobenius pre-normalization."""
    table, safety, eps = ns_schedule(coeffs, steps)
    s = sigma / max(float(sigma.norm()) * safety, eps)
    for a, b, c in table:
        s = a * s + b * s ** 3 + c * s ** 5
    return s


def _ns(x: torch.Tensor, **args) -> torch.Tensor:
    ctx = Ctx(layout="stacked", param=x, step=torch.ones((), dtype=torch.float64), states={})
    return lookup("newton_schulz").fn(ctx, x[None], **args)[0]


@pytest.mark.parametrize("coeffs", ["muon", "you5", "polar_express"])
@pytest.mark.parametrize("shape", [(24, 40), (40, 24), (32, 32)])
def test_singular_vectors_and_values_match_svd(coeffs, shape):
    m, n = shape
    k = min(m, n)
    sigma = torch.logspace(0, -2, k, dtype=torch.float64)  # σ_max/σ_min = 100
    U, V, X = _known(m, n, sigma, seed=k)
    out = _ns(X, steps=5, coeffs=coeffs, dtype="float64")
    want = U @ torch.diag(_scalar_map(sigma, coeffs, 5)) @ V.T
    assert torch.allclose(out, want, atol=1e-10)


@pytest.mark.parametrize("coeffs, low, lo, hi", [("muon", 1e-2, 0.68, 1.13), ("polar_express", 1e-3, 0.85, 1.14)])
def test_presets_keep_singular_values_in_the_stated_ranges(coeffs, low, lo, hi):
    """After Frobenius pre-normalization, muon maps σ ∈ [1e-2, 1] into ≈[0.68, 1.13] and
    polar_express (1.02 safety) maps [1e-3, 1] into ≈[0.85, 1.14]. The test above shows the
    primitive's output is exactly U p(σ) Vᵀ, so checking the composed map p on a log grid of
    normalized singular values covers every matrix whose spectrum lies in that interval."""
    table, safety, _ = ns_schedule(coeffs, 5)
    s = torch.logspace(math.log10(low), 0, 2000, dtype=torch.float64) / safety
    for a, b, c in table:
        s = a * s + b * s ** 3 + c * s ** 5
    assert lo - 0.01 <= float(s.min()) and float(s.max()) <= hi + 0.01, (float(s.min()), float(s.max()))


def test_bf16_and_fp32_agree_with_float64_to_their_precision():
    U, V, X = _known(48, 80, torch.logspace(0, -1, 48, dtype=torch.float64), seed=3)
    exact = _ns(X, steps=5, dtype="float64")
    for dtype, tol in (("float32", 1e-5), ("bfloat16", 5e-2)):  # bf16: 8-bit mantissa, 5 iterations
        got = _ns(X.float(), steps=5, dtype=dtype).double()
        assert float((got - exact).norm() / exact.norm()) < tol, dtype
