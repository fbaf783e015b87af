"""Newton–Schulz variants: Polar Express coefficient generation and Gram Newton–Schulz
(algorithms.md §15; Amsel, Persson, Musco & Gower, arXiv 2505.16932; Zhang, Amsel, Chen & Dao 2026).
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Annotated, Literal

import torch
from pydantic import Field

from .context import Ctx
from .orthogonalize import Coeffs, Steps, ns_schedule
from .registry import Tensor, primitive

Coeff = tuple[float, float, float]


def optimal_quintic(l: float, u: float) -> Coeff:
    """Minimax odd quintic ``p(x) = ax + bx³ + cx⁵`` for ``max_{x∈[l,u]} |1 − p(x)|``.

    Simplified Remez: equioscillation on ``{l, q, r, u}`` (``p − 1 = −E, +E, −E, +E``) by a 4×4
    solve, then ``q, r`` ← the critical points of ``p`` (roots of ``a + 3bx² + 5cx⁴``), until the
    error stops changing. For ``l/u ≥ 1 − 5e-6`` the limit ``(15/8, −10/8, 3/8)`` scaled to ``u``.
    """
    if l / u >= 1 - 5e-6:
        return 15 / 8 / u, -10 / 8 / u ** 3, 3 / 8 / u ** 5
    q, r = (3 * l + u) / 4, (l + 3 * u) / 4
    E, old = math.inf, None
    for _ in range(100):
        if old is not None and abs(old - E) <= 1e-15:
            break
        old = E
        A = torch.tensor([[p, p ** 3, p ** 5, s] for p, s in ((l, 1.0), (q, -1.0), (r, 1.0), (u, -1.0))],
                         dtype=torch.float64)
        a, b, c, E = torch.linalg.solve(A, torch.ones(4, dtype=torch.float64)).tolist()
        disc = math.sqrt(max(9 * b * b - 20 * a * c, 0.0))
        q, r = math.sqrt((-3 * b - disc) / (10 * c)), math.sqrt((-3 * b + disc) / (10 * c))
    return a, b, c


@lru_cache(maxsize=32)
def polar_express_coeffs(K: int, l0: float = 1e-3, safety: float = 0.02,
                         cushion: float = 0.02) -> tuple[Coeff, ...]:
    """Polar Express per-iteration coefficients (algorithms.md §15.1).

    Start from ``[ℓ, u] = [l0, 1]``; each iteration takes the minimax quintic on
    ``[max(ℓ, cushion·u), u]``, rescales it by ``2/(p(ℓ) + p(u))`` so that
    ``1 − p(ℓ) = p(u) − 1`` on the true interval, then ``ℓ ← p(ℓ)``, ``u ← 2 − ℓ``. With the safety
    factor ``s = 1 + safety`` every polynomial but the last becomes ``(a/s, b/s³, c/s⁵)`` *before*
    ``ℓ`` is updated (the input is pre-divided by ``s·‖X‖_F``). ``polar_express_coeffs(5)``
    reproduces modded-nanogpt's table (``NS_PRESETS["polar_express"]``) to ~1e-14.
    """
    l, u, out, s = l0, 1.0, [], 1 + safety
    for k in range(K):
        a, b, c = optimal_quintic(max(l, cushion * u), u)
        pl, pu = a * l + b * l ** 3 + c * l ** 5, a * u + b * u ** 3 + c * u ** 5
        a, b, c = (2 / (pl + pu)) * a, (2 / (pl + pu)) * b, (2 / (pl + pu)) * c
        if k < K - 1:  # the safety divide enters the interval recursion (it reproduces the table)
            a, b, c = a / s, b / s ** 3, c / s ** 5
        out.append((a, b, c))
        l = a * l + b * l ** 3 + c * l ** 5
        u = 2 - l
    return tuple(out)


def polar_express_preset(K: int) -> tuple[list[Coeff], float, float]:
    """An ``NS_PRESETS``-style entry for ``K`` generated steps: (table, safety 1.02, eps 1e-6)."""
    return list(polar_express_coeffs(K)), 1.02, 1e-6


Restarts = tuple[Annotated[int, Field(ge=1, le=100)], ...]


@primitive(family="orthogonalize", elementwise=False, needs_matrix=True,
           examples=("gram_newton_schulz(5)", "gram_newton_schulz(5, \"polar_express\", dtype = \"float64\")",
                     "gram_newton_schulz(6, restart_at = (2, 4), dtype = \"float64\")",
                     "gram_newton_schulz(3, (3.4445, -4.775, 2.0315), restart_at = (1,))"))
def gram_newton_schulz(ctx: Ctx, x: Tensor, steps: Steps = 5, coeffs: Coeffs = "muon",
                       restart_at: Restarts = (2,),
                       dtype: Literal["bfloat16", "float16", "float32", "float64"] = "float32") -> Tensor:
    """Gram Newton–Schulz (algorithms.md §15.2; Dao-AILab/gram-newton-schulz): the same map as
    ``newton_schulz(steps, coeffs)`` computed on the small Gram matrix.

    Wide orientation, ``X ← X / max(s·‖X‖_F, ε)`` (the preset's s, ε); ``R = XXᵀ``, ``Q = I``;
    step k: ``W = a_k I + b_k R + c_k R²``, ``Q ← QW``, ``R ← WRW`` (skipped on the last step);
    after the steps listed in ``restart_at`` (1-based): ``X ← QX``, ``R ← XXᵀ``, ``Q ← I``
    (half-precision stability). Output ``QX``. All ``W`` are polynomials of the same Gram matrix,
    so they commute and the result equals standard NS up to rounding. Default float32.
    """
    table, safety, eps = ns_schedule(coeffs, steps)
    X = x.to(getattr(torch, dtype))
    tall = X.shape[-2] > X.shape[-1]
    if tall:
        X = X.transpose(-2, -1)
    X = X / (torch.linalg.vector_norm(X, dim=(-2, -1), keepdim=True) * safety).clamp(min=eps)
    eye = torch.eye(X.shape[-2], dtype=X.dtype, device=X.device)
    R = X @ X.transpose(-2, -1)
    Q = None
    for k, (a, b, c) in enumerate(table, start=1):
        W = a * eye + b * R + c * (R @ R)
        Q = W if Q is None else Q @ W
        if k in restart_at and k < len(table):
            X = Q @ X
            R = X @ X.transpose(-2, -1)
            Q = None
        elif k < len(table):
            R = W @ R @ W
    out = X if Q is None else Q @ X
    if tall:
        out = out.transpose(-2, -1)
    return out.to(x.dtype)


@gram_newton_schulz.reference
def _(ctx, x, steps, coeffs, restart_at, dtype):
    table, safety, eps = ns_schedule(coeffs, steps)
    X = (x.T if x.shape[0] > x.shape[1] else x).to(getattr(torch, dtype))
    X = X / max(float(X.norm()) * safety, eps)
    I = torch.eye(X.shape[0], dtype=X.dtype)
    R, Q = X @ X.T, I
    for k, (a, b, c) in enumerate(table, start=1):
        W = a * I + b * R + c * R @ R
        Q = Q @ W
        R = W @ R @ W
        if k in restart_at:
            X, Q = Q @ X, I
            R = X @ X.T
    out = Q @ X
    return (out.T if x.shape[0] > x.shape[1] else out).to(x.dtype)
