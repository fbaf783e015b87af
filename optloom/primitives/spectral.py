"""Spectral clipping (SPECTRA, arXiv 2603.14315; github mlolab/llm-spectral-clipping) and its
lr-tied threshold.

Soft clip ``H_c(X) = (I + XXᵀ/c²)^{−1/2} X`` maps each singular value ``σ ↦ σ/sqrt(1 + σ²/c²)``
and keeps the singular vectors; the hard clip ``σ ↦ min(σ, c)`` (by SVD) is its conceptual target.
Both accept any parameter: members with one dimension are vectors (their only singular value
is ``‖g‖``), members with more than two dimensions are viewed as ``(shape[0], −1)`` matrices.
"""
from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
from pydantic import Field

from .. import shapes
from .context import Ctx
from .linalg import compute_dtype, oriented
from .registry import Iters, NonNegative, Positive, Tensor, primitive

Dtype = Literal["bfloat16", "float32", "float64"]
WarmupSteps = Annotated[int, Field(ge=0)]


def _member_ndim(ctx: Ctx, x: Tensor) -> int:
    return x.ndim - 1 if ctx.batched else x.ndim


def _as_mats(ctx: Ctx, x: Tensor) -> Tensor:
    """Members as matrices: ``(B, rows, −1)`` stacked or ``(rows, −1)`` single."""
    if ctx.batched:
        return x.reshape(x.shape[0], x.shape[1], -1) if x.ndim > 3 else x
    return x.reshape(x.shape[0], -1) if x.ndim > 2 else x


def _c(ctx: Ctx, c, like: Tensor):
    """``c`` as a number or a tensor broadcastable against per-member matrices ``like``."""
    if isinstance(c, torch.Tensor):
        c = c.to(like.dtype)
        if c.ndim == 1 and ctx.batched:
            return c.reshape(-1, *([1] * (like.ndim - 1)))
    return c


def inv_sqrt_coupled_ns(A: Tensor, alpha: Tensor, iters: int) -> Tensor:
    """``A^{−1/2}`` of SPD ``A`` (last two dims) by the coupled Newton–Schulz iteration
    (``matrix_inv_sqrt_NS`` of SPECTRA's ``src/optim/post_process.py``).

    ``Â = A/α`` (α ≥ λ_max, so eig(Â) ⊂ (0, 1]); ``Y₀ = Â, Z₀ = I``; repeat
    ``T = ½(3I − ZY); Y ← YT; Z ← TZ``; then ``Z → Â^{−1/2}`` and ``A^{−1/2} ≈ Z/sqrt(α)``.
    """
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    Y = A / alpha
    Z = eye.expand_as(A)
    for _ in range(iters):
        T = 0.5 * (3.0 * eye - Z @ Y)
        Y = Y @ T
        Z = T @ Z
    return Z / alpha.sqrt()


@primitive(family="spectral", elementwise=False, shape=shapes.same,
           examples=("clip_spectral", "clip_spectral(0.5)", "clip_spectral(5.0, 10)",
                     "clip_spectral(0.05, 20, dtype = \"float64\")"))
def clip_spectral(ctx: Ctx, x: Tensor, c: Positive = 1.0, iters: Iters = 10,
                  dtype: Dtype = "float32") -> Tensor:
    """SPECTRA soft spectral clip ``H_c(X) = (I + XXᵀ/c²)^{−1/2} X`` (arXiv 2603.14315).

    Each singular value ``σ ↦ σ / sqrt(1 + σ²/c²)`` (≈ σ for σ ≪ c, → c for σ ≫ c), singular
    vectors unchanged. As ``clip_sigvals`` in mlolab/llm-spectral-clipping
    ``src/optim/post_process.py``: wide orientation; ``S = XXᵀ``;
    ``s = min(max_i Σ_j |S_ij|, ‖S‖_F)`` (Gershgorin / Frobenius bound on σ_max², per matrix:
    one parameter per call, as the official optimizer calls it); ``A = I + S/c²``,
    ``α = 1 + s/c²``; ``iters`` coupled Newton–Schulz steps give ``A^{−1/2}``; output
    ``A^{−1/2} X``. Runs in ``dtype`` (SPECTRA's default is bfloat16).
    Accuracy is limited by ``iters`` when ``σ_max/c`` is large: the smallest eigenvalue of
    ``A/α`` is ``λ ≈ c²/s``, which the iteration grows by ≈ 9/4 per step before it converges
    quadratically, so it needs ≈ ``ln(1/λ)/ln(9/4) + 3`` steps: 10 suffice up to
    ``σ_max/c ≈ 10`` (float64 error ~1e-11), ``σ_max/c = 100`` needs ≈ 15 (measured with 10:
    9% relative Frobenius error; with 20: 1e-14; docs/derivations.md#spectral-clipping-iterations).
    Vectors (members with one dim): ``g / sqrt(1 + (‖g‖/c)²)`` if ``‖g‖ > c``, else ``g`` (as the
    official code). Higher-dim members are clipped as ``(shape[0], −1)`` matrices.
    """
    work = getattr(torch, dtype)
    if _member_ndim(ctx, x) <= 1:
        v = x.to(work)
        dims = ctx.reduce_dims(v)
        norm = torch.linalg.vector_norm(v, dim=dims, keepdim=True)
        cc = _c(ctx, c, v)
        out = torch.where(norm > cc, v / torch.sqrt(1 + (norm / cc) ** 2), v)
        return out.to(x.dtype)

    def clip(X):
        S = X @ X.transpose(-2, -1)
        gersh = S.abs().sum(dim=-1).amax(dim=-1, keepdim=True)[..., None]
        fro = torch.linalg.vector_norm(S, dim=(-2, -1), keepdim=True)
        s = torch.minimum(gersh, fro)
        c2 = _c(ctx, c, X) ** 2
        eye = torch.eye(S.shape[-1], dtype=S.dtype, device=S.device)
        return inv_sqrt_coupled_ns(eye + S / c2, 1 + s / c2, iters) @ X

    return oriented(clip, _as_mats(ctx, x).to(work)).reshape(x.shape).to(x.dtype)


@clip_spectral.reference
def _(ctx, x, c, iters, dtype):
    if x.ndim <= 1:
        n = float(x.norm())
        return x / (1 + (n / c) ** 2) ** 0.5 if n > c else x

    def clip(X):
        S = X @ X.T
        s = min(float(S.abs().sum(1).max()), float(S.norm()))
        I = torch.eye(S.shape[0], dtype=S.dtype)
        alpha = 1 + s / c ** 2
        Y, Z = (I + S / c ** 2) / alpha, I
        for _ in range(iters):
            T = (3 * I - Z @ Y) / 2
            Y, Z = Y @ T, T @ Z
        return (Z / alpha ** 0.5) @ X

    return oriented(clip, x.reshape(x.shape[0], -1).to(getattr(torch, dtype))).reshape(x.shape).to(x.dtype)


@primitive(family="spectral", elementwise=False, shape=shapes.same,
           examples=("hard_clip_spectral", "hard_clip_spectral(0.5)", "hard_clip_spectral(3.0)"))
def hard_clip_spectral(ctx: Ctx, x: Tensor, c: Positive = 1.0) -> Tensor:
    """Hard spectral clip ``U diag(min(σ, c)) Vᵀ`` by SVD (SPECTRA's conceptual target, arXiv
    2603.14315).

    Float32 or better. Vectors: ``g · min(1, c/‖g‖)``. Higher-dim members as ``(shape[0], −1)``.
    """
    work = compute_dtype(x)
    if _member_ndim(ctx, x) <= 1:
        v = x.to(work)
        norm = torch.linalg.vector_norm(v, dim=ctx.reduce_dims(v), keepdim=True)
        return (v * torch.clamp(_c(ctx, c, v) / norm.clamp(min=1e-30), max=1.0)).to(x.dtype)
    X = _as_mats(ctx, x).to(work)
    U, sv, Vh = torch.linalg.svd(X, full_matrices=False)
    cc = _c(ctx, c, sv)
    sv = torch.minimum(sv, cc if isinstance(cc, torch.Tensor) else torch.full_like(sv, cc))
    return ((U * sv.unsqueeze(-2)) @ Vh).reshape(x.shape).to(x.dtype)


@hard_clip_spectral.reference
def _(ctx, x, c):
    if x.ndim <= 1:
        return x * min(1.0, c / float(x.norm()))
    X = x.reshape(x.shape[0], -1)
    U, sv, Vh = torch.linalg.svd(X, full_matrices=False)
    return (U @ torch.diag(sv.clamp(max=c)) @ Vh).reshape(x.shape)


@primitive(family="spectral", elementwise=False, output="scalar",
           examples=("warmup_threshold(5.0, 1e-3, 2.5e-4, 2)", "warmup_threshold(1.0, 1e-3, 0.0, 5)",
                     "warmup_threshold(2.0, 1e-3, 1e-3)"))
def warmup_threshold(ctx: Ctx, c: Positive = 1.0, peak_lr: Positive = 1e-3, lr: NonNegative = 1e-3,
                     warmup_steps: WarmupSteps = 0) -> Tensor:
    """A clip threshold tied to the lr schedule during warm-up (SPECTRA, arXiv 2603.14315;
    mlolab/llm-spectral-clipping ``src/optim/spectra.py``, ``_get_current_clip_c``).

    ``c_t = c·η₀/η_t`` while ``step ≤ warmup_steps`` (keeps ``c_t·η_t`` constant), ``c_t = c``
    afterwards; ``η₀ = peak_lr`` (the schedule's peak), ``η_t = lr`` (the current lr, as a
    scheduler sets it). ``step`` is the 1-based step count, so steps ``1 … warmup_steps`` are
    warm-up. ``lr = 0`` during warm-up gives ``c_t = ∞`` (no clipping), never NaN (the official
    code divides by ``max(lr, 1e-10)``; docs/derivations.md#warm-up-threshold). Call it as a value, e.g.
    ``clip_spectral(c = warmup_threshold(c, peak_lr, lr, warmup_steps))``.
    Example: ``c = 5``, ``peak_lr = 1e-3``, ``lr = 2.5e-4`` at step 100 of 2000 → ``20``.
    """
    step = torch.as_tensor(ctx.step)
    c, peak_lr, lr = (torch.as_tensor(v, dtype=torch.float64, device=step.device) for v in (c, peak_lr, lr))
    return torch.where(step <= warmup_steps, c * peak_lr / lr, c)


@warmup_threshold.reference
def _(ctx, c, peak_lr, lr, warmup_steps):
    if float(ctx.step) <= warmup_steps:
        return c * peak_lr / lr if lr > 0 else math.inf
    return c
