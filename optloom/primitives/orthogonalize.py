"""Orthogonalization: quintic Newton–Schulz with coefficient presets (algorithms.md §0.1, §15).

Each iteration maps every singular value through ``p(σ) = aσ + bσ³ + cσ⁵``; after Frobenius
pre-normalization (``σ_max ≤ 1``) a few iterations push all singular values towards 1, giving
an approximation of the polar factor ``UVᵀ`` of ``X = UΣVᵀ``.
"""
from __future__ import annotations

from typing import Annotated, Literal, Union

import torch
from pydantic import Field

from .context import Ctx
from .registry import Tensor, primitive

Coeff = tuple[float, float, float]

# name -> (per-step coefficients (the last repeats), Frobenius safety factor s, eps)
NS_PRESETS: dict[str, tuple[list[Coeff], float, float]] = {
    # KellerJordan/Muon muon.py (same coefficients every step)
    "muon": ([(3.4445, -4.7750, 2.0315)], 1.0, 1e-7),
    # Dao-AILab/gram-newton-schulz coefficients.py, credited to @YouJiacheng
    "you5": ([(4.0848, -6.8946, 2.9270), (3.9505, -6.3029, 2.6377), (3.7418, -5.5913, 2.3037),
              (2.8769, -3.1427, 1.2046), (2.8366, -3.0525, 1.2012)], 1.0, 1e-7),
    # Polar Express (arXiv 2505.16932) as in modded-nanogpt train_gpt.py, used with s = 1.02
    "polar_express": ([(8.156554524902461, -22.48329292557795, 15.878769915207462),
                       (4.042929935166739, -2.808917465908714, 0.5000178451051316),
                       (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
                       (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
                       (2.3465413258596377, -1.7097828382687081, 0.42323551169305323)], 1.02, 1e-6),
}

Coeffs = Union[Literal["muon", "you5", "polar_express"], Coeff, list[Coeff]]
Steps = Annotated[int, Field(ge=1, le=100)]


def ns_schedule(coeffs: Coeffs, steps: int) -> tuple[list[Coeff], float, float]:
    """Resolve a preset name, one triple or a list of triples to ``steps`` triples, s and eps."""
    if isinstance(coeffs, str):
        table, safety, eps = NS_PRESETS[coeffs]
    else:
        table = [tuple(coeffs)] if isinstance(coeffs, tuple) else [tuple(c) for c in coeffs]  # type: ignore
        safety, eps = 1.0, 1e-7
    return [table[min(k, len(table) - 1)] for k in range(steps)], safety, eps  # type: ignore


@primitive(family="orthogonalize", elementwise=False, needs_matrix=True,
           examples=("newton_schulz(5)", "newton_schulz(5, coeffs = \"polar_express\", dtype = \"float32\")",
                     "newton_schulz(3, coeffs = [(3.4445, -4.775, 2.0315)], dtype = \"float32\")"))
def newton_schulz(ctx: Ctx, x: Tensor, steps: Steps = 5, coeffs: Coeffs = "muon",
                  dtype: Literal["bfloat16", "float32", "float64"] = "bfloat16") -> Tensor:
    """Quintic Newton–Schulz orthogonalization ≈ ``UVᵀ`` (algorithms.md §0.1).

    Wide orientation (transpose when rows > cols), ``X ← X / max(s·‖X‖_F, ε)``, then per step
    ``A = XXᵀ; X ← aX + (bA + cA²)X``. Presets: ``"muon"`` (Keller Jordan, σ∈[1e-3,1] → ≈[0.47, 1.20]
    after 5 steps), ``"you5"``, ``"polar_express"`` (s = 1.02, → ≈[0.85, 1.14]); or explicit triples
    (the last one repeats). Runs in ``dtype`` (bf16 as torch.optim.Muon) and returns ``x.dtype``.
    """
    table, safety, eps = ns_schedule(coeffs, steps)
    X = x.to(getattr(torch, dtype))
    tall = X.shape[-2] > X.shape[-1]
    if tall:
        X = X.transpose(-2, -1)
    norm = torch.linalg.vector_norm(X, dim=(-2, -1), keepdim=True)
    X = X / (norm * safety).clamp(min=eps)
    lead = X.shape[:-2]
    X = X.reshape(-1, *X.shape[-2:])
    for a, b, c in table:  # fused multiply-adds, as torch.optim.Muon's addmm (one rounding each)
        A = torch.bmm(X, X.transpose(-2, -1))
        B = torch.baddbmm(A, A, A, beta=b, alpha=c)
        X = torch.baddbmm(X, B, X, beta=a)
    X = X.reshape(*lead, *X.shape[-2:])
    if tall:
        X = X.transpose(-2, -1)
    return X.to(x.dtype)


@newton_schulz.reference
def _(ctx, x, steps, coeffs, dtype):
    table, safety, eps = ns_schedule(coeffs, steps)
    X = x.T if x.shape[0] > x.shape[1] else x
    X = X / max(float(X.norm()) * safety, eps)
    for a, b, c in table:
        A = X @ X.T
        X = a * X + (b * A + c * A @ A) @ X
    return X.T if x.shape[0] > x.shape[1] else X
