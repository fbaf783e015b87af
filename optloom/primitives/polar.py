"""Polar decomposition, QR and the nuclear norm (algorithms.md §2.2, §6, §16.5).

``polar(X)`` is the orthogonal factor ``U Vᵀ`` of ``X = U Σ Vᵀ`` (so ``X = (UVᵀ)(VΣVᵀ)``).
Every implementation here is batched over leading dimensions (``torch.linalg`` and ``@`` act on
the last two dims), so a stacked bucket ``(B, m, n)`` costs one batched call, not ``B``.
Computation runs in at least float32 (bf16/fp16 inputs are upcast; float64 stays float64) and
the result is returned in that compute dtype — QR/SVD/QDWH are not bf16 algorithms (§16.8).
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Annotated, Literal, Optional

import torch
from pydantic import Field

from .context import Ctx
from .orthogonalize import newton_schulz
from .registry import Tensor, primitive


def compute_dtype(x: Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def householder_q(x: Tensor) -> Tensor:
    """Q of the reduced Householder QR (LAPACK via ``torch.linalg.qr``) of the last two dims,
    with column signs fixed so that ``diag(R) ≥ 0`` (the unique QR of a full-rank matrix)."""
    Q, R = torch.linalg.qr(x.to(compute_dtype(x)), mode="reduced")
    d = torch.diagonal(R, dim1=-2, dim2=-1)
    return Q * torch.where(d < 0, -1.0, 1.0).to(Q.dtype).unsqueeze(-2)


@primitive(family="orthogonalize", elementwise=False, needs_matrix=True, examples=("qr_q",))
def qr_q(ctx: Ctx, x: Tensor) -> Tensor:
    """Orthonormal Q factor of the QR factorization ``X = QR`` (ARO's rotation, algorithms.md §2.2).

    Householder QR (``torch.linalg.qr``) in float32 (float64 inputs: float64), reduced: ``Q`` is
    ``m × min(m, n)``. Column signs are normalized to ``diag(R) ≥ 0``, which makes Q a function
    of X (for full-rank X) independent of the LAPACK build; ARO's update is invariant to them.
    """
    return householder_q(x)


@qr_q.reference
def _(ctx, x):
    # classical Gram–Schmidt with re-orthogonalization on the first min(m, n) columns
    m, n = x.shape
    qs: list[Tensor] = []
    for j in range(min(m, n)):
        v = x[:, j].clone()
        for _ in range(2):
            for q in qs:
                v = v - (q @ v) * q
        qs.append(v / v.norm())
    return torch.stack(qs, dim=1)


# ---- QDWH (Nakatsukasa, Bai & Gygi 2010, SIAM J. Matrix Anal. Appl. 31(5)) ---------------------

@lru_cache(maxsize=64)
def qdwh_weights(l0: float, steps: int) -> tuple[tuple[float, float, float], ...]:
    """Dynamically weighted Halley parameters ``(a_k, b_k, c_k)``.

    They depend only on the lower bound ``ℓ`` of the scaled singular values, never on data:
    ``γ = (4(1−ℓ²)/ℓ⁴)^{1/3}``, ``a = sqrt(1+γ) + ½ sqrt(8 − 4γ + 8(2−ℓ²)/(ℓ² sqrt(1+γ)))``,
    ``b = (a−1)²/4``, ``c = a + b − 1``, then ``ℓ ← ℓ(a + bℓ²)/(1 + cℓ²)``. As ℓ → 1 they tend
    to Halley's ``(3, 1, 3)``; a fixed count of iterations is therefore traceable.
    """
    out, l = [], l0
    for _ in range(steps):
        if l > 1 - 1e-12:
            a, b, c = 3.0, 1.0, 3.0
        else:
            l2 = l * l
            g = (4 * (1 - l2) / (l2 * l2)) ** (1 / 3)
            a = math.sqrt(1 + g) + 0.5 * math.sqrt(max(8 - 4 * g + 8 * (2 - l2) / (l2 * math.sqrt(1 + g)), 0.0))
            b = (a - 1) ** 2 / 4
            c = a + b - 1
            l = min(l * (a + b * l2) / (1 + c * l2), 1.0)
        out.append((a, b, c))
    return tuple(out)


def qdwh(x: Tensor, steps: int) -> Tensor:
    """QR-based QDWH polar factor of the last two dims (tall orientation inside)."""
    X = x.to(compute_dtype(x))
    wide = X.shape[-2] < X.shape[-1]
    if wide:
        X = X.transpose(-2, -1)
    n = X.shape[-1]
    # α = sqrt(‖X‖₁‖X‖_∞) ≥ ‖X‖₂ (as jax.lax.linalg.qdwh); ℓ₀ = machine epsilon
    one = X.abs().sum(dim=-2).amax(dim=-1)
    inf = X.abs().sum(dim=-1).amax(dim=-1)
    alpha = (one * inf).sqrt().clamp(min=torch.finfo(X.dtype).tiny)
    X = X / alpha[..., None, None]
    eye = torch.eye(n, dtype=X.dtype, device=X.device).expand(*X.shape[:-2], n, n)
    for a, b, c in qdwh_weights(float(torch.finfo(X.dtype).eps), steps):
        Q, _ = torch.linalg.qr(torch.cat([math.sqrt(c) * X, eye], dim=-2), mode="reduced")
        Q1, Q2 = Q[..., :-n, :], Q[..., -n:, :]
        X = (b / c) * X + (a - b / c) / math.sqrt(c) * (Q1 @ Q2.transpose(-2, -1))
    return X.transpose(-2, -1) if wide else X


def svd_polar(x: Tensor) -> Tensor:
    U, _, Vh = torch.linalg.svd(x.to(compute_dtype(x)), full_matrices=False)
    return U @ Vh


DEFAULT_STEPS = {"ns": 5, "polar_express": 5, "qdwh": 6, "svd": 0}
PolarMethod = Literal["ns", "polar_express", "qdwh", "svd"]
PolarSteps = Optional[Annotated[int, Field(ge=1, le=100)]]


def _ns_args(x: Tensor, method: str) -> dict:
    """``ns``/``polar_express`` are ``newton_schulz`` presets, run in float32 or better."""
    return dict(coeffs="muon" if method == "ns" else "polar_express",
                dtype="float64" if x.dtype == torch.float64 else "float32")


@primitive(family="orthogonalize", elementwise=False, needs_matrix=True,
           examples=("polar", "polar(\"qdwh\")", "polar(\"qdwh\", 2)", "polar(\"ns\", 5)",
                     "polar(\"polar_express\", 7)"))
def polar(ctx: Ctx, x: Tensor, method: PolarMethod = "svd", steps: PolarSteps = None) -> Tensor:
    """Orthogonal polar factor ``polar(X) = U Vᵀ`` (PolarGrad, algorithms.md §6.2).

    ``svd``: exact, ``U Vᵀ`` from ``torch.linalg.svd``. ``qdwh``: QR-based dynamically weighted
    Halley (Nakatsukasa–Bai–Gygi 2010; as ``jax.lax.linalg.qdwh``: ``X₀ = X/sqrt(‖X‖₁‖X‖_∞)``,
    ``ℓ₀ = eps``; per step ``[√c X; I] = [Q₁; Q₂]R``, ``X ← (b/c)X + (a − b/c)/√c · Q₁Q₂ᵀ``),
    converged to machine precision after 6 steps for any condition number below 1/eps (PolarGrad
    uses 2). ``ns``: quintic Newton–Schulz with Muon's coefficients; ``polar_express``: Polar
    Express coefficients (§15.1) with the 1.02 safety divide. ``steps`` = None picks the method's
    default (ns 5, polar_express 5, qdwh 6). Float32 or better, never bf16.
    """
    steps = steps or DEFAULT_STEPS[method]
    if method == "svd":
        return svd_polar(x)
    if method == "qdwh":
        return qdwh(x, steps)
    return newton_schulz.fn(ctx, x, steps=steps, **_ns_args(x, method))


@polar.reference
def _(ctx, x, method, steps):
    steps = steps or DEFAULT_STEPS[method]
    if method == "svd":
        U, _, Vh = torch.linalg.svd(x, full_matrices=False)
        return U @ Vh
    if method == "qdwh":  # straight from the paper, tall orientation, one matrix
        X = x.T if x.shape[0] < x.shape[1] else x
        n = X.shape[1]
        X = X / math.sqrt(float(X.abs().sum(0).max()) * float(X.abs().sum(1).max()))
        for a, b, c in qdwh_weights(float(torch.finfo(X.dtype).eps), steps):
            Q, _ = torch.linalg.qr(torch.cat([c ** 0.5 * X, torch.eye(n, dtype=X.dtype)]))
            X = b / c * X + (a - b / c) / c ** 0.5 * Q[:-n] @ Q[-n:].T
        return X.T if x.shape[0] < x.shape[1] else X
    return newton_schulz.ref(ctx, x, steps=steps, **_ns_args(x, method))


@primitive(family="reductions", elementwise=False, needs_matrix=True, output="scalar",
           examples=("nuclear_norm",))
def nuclear_norm(ctx: Ctx, x: Tensor) -> Tensor:
    """Nuclear norm ``‖X‖_* = Σᵢ σᵢ(X)`` per matrix (PolarGrad's ν, algorithms.md §6.1, §16.5),
    from ``torch.linalg.svdvals`` in float32 or better."""
    return torch.linalg.svdvals(x.to(compute_dtype(x))).sum(dim=-1)


@nuclear_norm.reference
def _(ctx, x):
    # σᵢ² are the eigenvalues of the small Gram matrix
    G = x @ x.T if x.shape[0] <= x.shape[1] else x.T @ x
    return torch.linalg.eigvalsh(G).clamp(min=0).sqrt().sum()
