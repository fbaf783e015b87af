"""Adaptive step-size helpers: per-column statistics and their clamp (NAMO / NAMO-D, arXiv
2602.17080, algorithms.md §7), per-parameter shape factors and kind casts, and SPECTRA's
lr-tied clip threshold (arXiv 2603.14315, algorithms.md §8.1).

Conventions (see :mod:`.context`): on a stacked bucket a matrix value is ``(B, m, n)``, a
per-parameter scalar ``(B,)``; "keepdim" statistics such as column norms are ``(B, 1, n)`` and
broadcast against the matrices directly. References see one parameter (``(m, n)``, ``()``).
"""
from __future__ import annotations

import math
from typing import Annotated

import torch
from pydantic import Field

from .context import Ctx
from .registry import NonNegative, Positive, Tensor, primitive
from .shape import ShapeKind, shape_factor as _factor

ClampC = Annotated[float, Field(gt=0.0, le=1.0)]
WarmupSteps = Annotated[int, Field(ge=0)]


@primitive(family="reductions", elementwise=False, needs_matrix=True,
           examples=("col_norms",))
def col_norms(ctx: Ctx, x: Tensor) -> Tensor:
    """Euclidean norm of every column of a matrix, kept as a row: ``‖X[:, j]‖₂``, shape ``(…, 1, n)``.

    ``c_j = sqrt(Σ_i X_ij²)``. The kept row dimension makes the result broadcast against the
    ``m × n`` matrix (``X / col_norms(X)`` normalizes columns; ``O * d`` is ``O · diag(d)``).
    NAMO-D's per-column statistics (algorithms.md §7.2): ``col_norms(g) ** 2 |> ema(0.99)`` is
    ``V``, ``col_norms(N) / (V ** 0.5 + eps)`` is ``d``. Range: ``c_j ≥ 0``. Conv weights must be
    viewed as matrices first (``as_matrix``), so columns are ``in·kh·kw`` positions.
    Example: ``[[3, 0], [4, 1]]`` → ``[[5, 1]]``.
    """
    return torch.linalg.vector_norm(x, dim=-2, keepdim=True)


@col_norms.reference
def _(ctx, x):
    return (x ** 2).sum(dim=0, keepdim=True).sqrt()


@primitive(family="reductions", elementwise=False,
           examples=("clamp_to_mean(0.75)", "clamp_to_mean(0.1)", "clamp_to_mean(1.0)"))
def clamp_to_mean(ctx: Ctx, d: Tensor, c: ClampC = 0.75) -> Tensor:
    """Clamp each entry toward the parameter's mean: ``d ← clamp(d, c·d̄, d̄/c)``, ``d̄ = nanmean(d)``.

    NAMO-D's column clamp (algorithms.md §7.2, minxin-zhg/namo ``col_state_clamp_c``): ``c ∈ (0, 1]``;
    ``c = 1`` makes every entry equal to ``d̄`` (NAMO-like), ``c → 0`` leaves ``d`` free. The mean
    is over one parameter's entries, ignoring NaNs. The clamp is skipped (``d`` returned as is)
    when ``d̄`` is not finite or ``d̄ ≤ 0``, as the official code. Example (``c = 0.5``):
    ``[1, 2, 9]`` (mean 4) → ``[2, 2, 8]``.
    """
    dims = ctx.reduce_dims(d)
    mean = torch.nanmean(d, dim=dims, keepdim=True) if dims else d
    cc = ctx.bcast(c, d)
    clamped = torch.minimum(torch.maximum(d, cc * mean), mean / cc)
    ok = torch.isfinite(mean) & (mean > 0)
    return torch.where(ok, clamped, d)


@clamp_to_mean.reference
def _(ctx, d, c):
    mean = torch.nanmean(d)
    if not (bool(torch.isfinite(mean)) and float(mean) > 0):
        return d
    return d.clamp(min=float(c * mean), max=float(mean / c))


@primitive(family="shape", elementwise=False, needs_matrix=True, output="scalar",
           examples=("shape_factor(\"moonlight\")", "shape_factor(\"muon\")", "shape_factor(\"spectral\")"))
def shape_factor(ctx: Ctx, x: Tensor, kind: ShapeKind = "muon", coeff: Positive = 0.2) -> Tensor:
    """The shape-dependent factor of an ``m × n`` matrix as a per-parameter scalar (algorithms.md §0.2).

    ``muon``/``original``: ``max(1, m/n)^½``; ``moonlight``/``match_rms_adamw``: ``coeff·max(m, n)^½``;
    ``spectral``: ``(m/n)^½``; ``none``: 1. The same numbers ``scale_by_shape`` multiplies by, but
    returned (one per parameter) so that they can enter a step size before a clamp, as NAMO's
    ``min(α·0.2·max(m, n)^½, 1)`` (§7.1). Example: a ``12 × 8`` matrix, ``"moonlight"`` → ``0.2·√12``.
    """
    rows, cols = ctx.mat_shape(x)
    lead = x.shape[:-2]
    if kind in ("moonlight", "match_rms_adamw"):
        return torch.ones(lead, dtype=x.dtype, device=x.device) * (coeff * math.sqrt(max(rows, cols)))
    return torch.full(lead, _factor(kind, rows, cols), dtype=x.dtype, device=x.device)


@shape_factor.reference
def _(ctx, x, kind, coeff):
    return torch.tensor(_factor(kind, x.shape[-2], x.shape[-1], float(coeff)), dtype=x.dtype)


@primitive(family="math", elementwise=False, output="scalar")
def as_scalar(ctx: Ctx, x: Tensor) -> Tensor:
    """Mark a value that holds one number per parameter as a per-parameter scalar (identity).

    An elementwise primitive applied to a per-parameter scalar (``ema(fro_norm(g) ** 2)``,
    ``min(alpha, 1.0)``) is typed as a tensor by the checker; ``|> as_scalar`` restores the
    scalar type, so the value broadcasts per parameter against tensors and is accepted where a
    scalar argument is expected (``apply``'s or ``decay``'s ``lr``). Refuses (at build time) a
    value that has more than one number per parameter. Range: any.
    """
    if x.ndim != (1 if ctx.batched else 0):
        raise ValueError(f"as_scalar: expected one value per parameter, got shape {tuple(x.shape)}")
    return x


@as_scalar.reference
def _(ctx, x):
    if x.ndim != 0:
        raise ValueError(f"as_scalar: expected one value per parameter, got shape {tuple(x.shape)}")
    return x


@primitive(family="spectral", elementwise=False, output="scalar")
def warmup_threshold(ctx: Ctx, c: Positive = 1.0, peak_lr: Positive = 1e-3, lr: NonNegative = 1e-3,
                     warmup_steps: WarmupSteps = 0) -> Tensor:
    """A clip threshold tied to the lr schedule during warm-up (SPECTRA, algorithms.md §8.1).

    ``c_t = c·η₀/η_t`` while ``step ≤ warmup_steps`` (keeps ``c_t·η_t`` constant), ``c_t = c``
    afterwards; ``η₀ = peak_lr`` (the schedule's peak), ``η_t = lr`` (the current lr, as a
    scheduler sets it). ``step`` is the 1-based step count, so steps ``1 … warmup_steps`` are
    warm-up. ``lr = 0`` during warm-up gives ``c_t = ∞`` (no clipping), never NaN.
    Takes no tensor input: call it as a value, e.g.
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


__all__ = ["as_scalar", "clamp_to_mean", "col_norms", "shape_factor", "warmup_threshold"]
