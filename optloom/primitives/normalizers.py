"""Normalizers: divide an update by a statistic of itself — its norm (``normalize``), its row or
column norms (``row_normalize``, ``col_normalize``, SR-Sinkhorn, ARO's base maps), a cosh
"brake" (AuON) — or pull a statistic toward its mean (``clamp_to_mean``, NAMO-D).

Matrix normalizers act on the last two dims, so a stacked bucket ``(B, m, n)`` is handled with
the same code as one ``(m, n)`` parameter. ``orient = "wide"`` runs them on the wide orientation
(the transpose of tall matrices).
"""
from __future__ import annotations

import math
from typing import Callable, Literal

import torch

from .. import shapes
from .context import Ctx
from .linalg import oriented
from .registry import Fraction, Iters, Positive, Tensor, primitive

CLAMP = 1e-8  # ARO (microsoft/dion dev/aro, dion/aro.py): norms are clamped from below before dividing
Orient = Literal["as_is", "wide"]
Policy = Literal["sinkhorn", "row_normalize", "sign"]


def _oriented(x: Tensor, orient: str, fn: Callable[[Tensor], Tensor]) -> Tensor:
    """``fn`` on ``x`` as it is (``as_is``) or on its wide orientation (``wide``)."""
    return oriented(fn, x) if orient == "wide" else fn(x)


def _rows(X: Tensor) -> Tensor:
    """Each row of the last two dims to L2 norm sqrt(cols)."""
    return X * (math.sqrt(X.shape[-1]) / torch.linalg.vector_norm(X, dim=-1, keepdim=True).clamp(min=CLAMP))


def _cols(X: Tensor) -> Tensor:
    """Each column of the last two dims to L2 norm sqrt(rows)."""
    return X * (math.sqrt(X.shape[-2]) / torch.linalg.vector_norm(X, dim=-2, keepdim=True).clamp(min=CLAMP))


def sinkhorn_map(X: Tensor, iters: int = 5) -> Tensor:
    """SR-Sinkhorn on the last two dims: ``iters`` alternations of rows then columns."""
    for _ in range(iters):
        X = _cols(_rows(X))
    return X


def base_map_fn(X: Tensor, policy: str, iters: int = 5) -> Tensor:
    """ARO's base map ``f`` on the last two dims, as written (no reorientation)."""
    if policy == "sinkhorn":
        return sinkhorn_map(X, iters)
    if policy == "row_normalize":
        return _rows(X)
    if policy == "sign":
        return torch.sign(X)
    raise ValueError(f"unknown ARO base map {policy!r}")


# the references normalize one row (or column) at a time
def _ref_rows(X: Tensor) -> Tensor:
    return torch.stack([r * X.shape[1] ** 0.5 / max(float(r.norm()), CLAMP) for r in X])


def _ref_cols(X: Tensor) -> Tensor:
    return torch.stack([c * X.shape[0] ** 0.5 / max(float(c.norm()), CLAMP) for c in X.T], dim=1)


def _ref_base_map(X: Tensor, policy: str, iters: int) -> Tensor:
    if policy == "sign":
        return torch.sign(X)
    for _ in range(iters if policy == "sinkhorn" else 1):
        X = _ref_rows(X)
        if policy == "sinkhorn":
            X = _ref_cols(X)
    return X


@primitive(family="normalizers", elementwise=False, needs_matrix=True, shape=shapes.matrix,
           examples=("sinkhorn", "sinkhorn(3)", "sinkhorn(5, orient = \"wide\")"))
def sinkhorn(ctx: Ctx, x: Tensor, iters: Iters = 5, orient: Orient = "as_is") -> Tensor:
    """SR-Sinkhorn normalization (arXiv 2502.06742), ARO's recommended base map (arXiv 2602.09006;
    microsoft/dion branch ``dev/aro``, ``dion/aro.py``).

    Repeat ``iters`` times: every row to L2 norm ``sqrt(n)``, then every column to L2 norm
    ``sqrt(m)`` (norms clamped at 1e-8) for an ``m × n`` matrix. ``orient="wide"`` runs it on the
    transpose of tall matrices (rows ≤ cols), the orientation ARO uses to stay well-posed.
    """
    return _oriented(x, orient, lambda X: sinkhorn_map(X, iters))


@sinkhorn.reference
def _(ctx, x, iters, orient):
    return _oriented(x, orient, lambda X: _ref_base_map(X, "sinkhorn", iters))


@primitive(family="normalizers", elementwise=False, needs_matrix=True, shape=shapes.matrix,
           examples=("row_normalize", "row_normalize(orient = \"wide\")"))
def row_normalize(ctx: Ctx, x: Tensor, orient: Orient = "as_is") -> Tensor:
    """Row normalization ``f(X)_i = sqrt(n) · x_i / max(‖x_i‖₂, 1e-8)`` (ARO's ``row_norm`` base
    map, microsoft/dion ``dev/aro`` ``dion/aro.py``).

    ``orient="wide"`` normalizes the rows of the wide orientation (the columns of a tall matrix).
    """
    return _oriented(x, orient, _rows)


@row_normalize.reference
def _(ctx, x, orient):
    return _oriented(x, orient, _ref_rows)


@primitive(family="normalizers", elementwise=False, needs_matrix=True, shape=shapes.matrix,
           examples=("col_normalize", "col_normalize(orient = \"wide\")"))
def col_normalize(ctx: Ctx, x: Tensor, orient: Orient = "as_is") -> Tensor:
    """Column normalization: each column of an ``m × n`` matrix to L2 norm ``sqrt(m)`` (clamp 1e-8)."""
    return _oriented(x, orient, _cols)


@col_normalize.reference
def _(ctx, x, orient):
    return _oriented(x, orient, _ref_cols)


@primitive(family="normalizers", elementwise=False, needs_matrix=True, shape=shapes.matrix,
           examples=("base_map", "base_map(\"row_normalize\")", "base_map(\"sign\")",
                     "base_map(\"sinkhorn\", 3, orient = \"wide\")"))
def base_map(ctx: Ctx, x: Tensor, policy: Policy = "sinkhorn", iters: Iters = 5,
             orient: Orient = "as_is") -> Tensor:
    """ARO's base map ``f`` chosen by a structural name (arXiv 2602.09006; microsoft/dion
    ``dev/aro`` ``dion/aro.py``, ``base_opt``).

    ``"sinkhorn"``: ``sinkhorn(iters)``; ``"row_normalize"``: rows to norm ``sqrt(n)``;
    ``"sign"``: elementwise sign. All three commute with sign flips of rows, which makes ARO
    invariant to the column signs of its QR factor.
    """
    return _oriented(x, orient, lambda X: base_map_fn(X, policy, iters))


@base_map.reference
def _(ctx, x, policy, iters, orient):
    return _oriented(x, orient, lambda X: _ref_base_map(X, policy, iters))


@primitive(family="normalizers", elementwise=False, shape=shapes.same, examples=("normalize", "normalize(by = \"rms\")"))
def normalize(ctx: Ctx, x: Tensor, by: Literal["fro", "rms"] = "fro", eps: Positive = 1e-7) -> Tensor:
    """Divide each parameter by its norm: ``x / (‖x‖_F + ε)`` or ``x / (rms(x) + ε)``."""
    dims = ctx.reduce_dims(x)
    n = torch.linalg.vector_norm(x, dim=dims, keepdim=True)
    if by == "rms":
        n = n / (x[0].numel() if ctx.batched else x.numel()) ** 0.5
    return x / (n + eps)


@normalize.reference
def _(ctx, x, by, eps):
    n = (x ** 2).sum().sqrt()
    if by == "rms":
        n = n / x.numel() ** 0.5
    return x / (n + eps)


@primitive(family="normalizers", elementwise=False, shape=shapes.same,
           examples=("cosh_brake", "cosh_brake(1.5)", "cosh_brake(1.0, num = \"normalized\")", "cosh_brake(40.0)"))
def cosh_brake(ctx: Ctx, x: Tensor, gamma: Positive = 1.0,
               num: Literal["raw", "normalized"] = "raw") -> Tensor:
    """AuON's cosh "emergency brake" (arXiv 2509.24320; github ryyzn9/AuON).

    Per parameter: ``X = x / (‖x‖_F + 1e-7)``; ``r = sqrt(mean(cosh(γ·X)²))``; returns
    ``x / (r + 1e-8)`` (``num="raw"``: the repository's HEAD rule, ``auon/optimizer.py``,
    γ = 1.5) or ``X / (r + 1e-8)`` (``num="normalized"``: the paper's first version, §3.1, as
    commit c87b862 ``Auon_Adam_train.py``, γ = 1). Any ndim. ``r − 1 ≤ sinh²(γ)/(2·numel)``
    (docs/derivations.md, "AuON brake").
    """
    dims = ctx.reduce_dims(x)
    X = x / (torch.linalg.vector_norm(x, dim=dims, keepdim=True) + 1e-7)
    r = torch.cosh(ctx.bcast(gamma, x) * X).square().mean(dim=dims, keepdim=True).sqrt()
    return (x if num == "raw" else X) / (r + 1e-8)


@cosh_brake.reference
def _(ctx, x, gamma, num):
    X = x / (float((x ** 2).sum().sqrt()) + 1e-7)
    r = float((torch.cosh(gamma * X) ** 2).mean().sqrt())
    return (x if num == "raw" else X) / (r + 1e-8)


@primitive(family="normalizers", elementwise=False, shape=shapes.same,
           examples=("clamp_to_mean(0.75)", "clamp_to_mean(0.1)", "clamp_to_mean(1.0)"))
def clamp_to_mean(ctx: Ctx, d: Tensor, c: Fraction = 0.75) -> Tensor:
    """Clamp each entry toward the parameter's mean: ``d ← clamp(d, c·d̄, d̄/c)``, ``d̄ = nanmean(d)``.

    NAMO-D's column clamp (arXiv 2602.17080; minxin-zhg/namo ``src/namo.py``,
    ``col_state_clamp_c``): ``c ∈ (0, 1]``; ``c = 1`` makes every entry equal to ``d̄``
    (NAMO-like), ``c → 0`` leaves ``d`` free. The mean is over one parameter's entries, ignoring
    NaNs. The clamp is skipped (``d`` returned as is) when ``d̄`` is not finite or ``d̄ ≤ 0``, as
    the official code. Example (``c = 0.5``): ``[1, 2, 9]`` (mean 4) → ``[2, 2, 8]``.
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
