"""Normalizers and robust statistics of matrix updates (algorithms.md §2.2, §3, §4, §17.4–17.5).

Row/column normalization and SR-Sinkhorn are ARO's base maps; ``cosh_brake`` is AuON's scalar
rescale; ``quantile`` is ROOT's outlier threshold. Matrix primitives act on the last two dims, so
a stacked bucket ``(B, m, n)`` is handled with the same code as one ``(m, n)`` parameter.
"""
from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
from pydantic import Field

from .context import Ctx
from .registry import Positive, Tensor, primitive

CLAMP = 1e-8  # ARO (dion dev/aro): norms are clamped from below at 1e-8 before dividing
Iters = Annotated[int, Field(ge=1, le=100)]
Orient = Literal["as_is", "wide"]
Unit = Annotated[float, Field(ge=0.0, le=1.0)]


def _rows(X: Tensor) -> Tensor:
    """Each row of the last two dims to L2 norm sqrt(cols)."""
    return X * (math.sqrt(X.shape[-1]) / torch.linalg.vector_norm(X, dim=-1, keepdim=True).clamp(min=CLAMP))


def _cols(X: Tensor) -> Tensor:
    """Each column of the last two dims to L2 norm sqrt(rows)."""
    return X * (math.sqrt(X.shape[-2]) / torch.linalg.vector_norm(X, dim=-2, keepdim=True).clamp(min=CLAMP))


def _oriented(X: Tensor, orient: str, fn) -> Tensor:
    """Apply ``fn`` to ``X`` (``as_is``) or to its wide orientation (transpose tall matrices)."""
    if orient == "wide" and X.shape[-2] > X.shape[-1]:
        return fn(X.transpose(-2, -1)).transpose(-2, -1)
    return fn(X)


def sinkhorn_map(X: Tensor, iters: int = 5) -> Tensor:
    """SR-Sinkhorn on the last two dims: ``iters`` alternations of rows then columns."""
    for _ in range(iters):
        X = _cols(_rows(X))
    return X


def base_map_fn(X: Tensor, policy: str, iters: int = 5) -> Tensor:
    """ARO's base map ``f`` (§2.2) on the last two dims, as written (no reorientation)."""
    if policy == "sinkhorn":
        return sinkhorn_map(X, iters)
    if policy == "row_normalize":
        return _rows(X)
    if policy == "sign":
        return torch.sign(X)
    raise ValueError(f"unknown ARO base map {policy!r}")


@primitive(family="reductions", elementwise=False, needs_matrix=True,
           examples=("sinkhorn", "sinkhorn(3)", "sinkhorn(5, orient = \"wide\")"))
def sinkhorn(ctx: Ctx, x: Tensor, iters: Iters = 5, orient: Orient = "as_is") -> Tensor:
    """SR-Sinkhorn normalization (ARO's recommended base map, algorithms.md §2.2; arXiv 2502.06742).

    Repeat ``iters`` times: every row to L2 norm ``sqrt(n)``, then every column to L2 norm
    ``sqrt(m)`` (norms clamped at 1e-8) for an ``m × n`` matrix. ``orient="wide"`` runs it on the
    transpose of tall matrices (rows ≤ cols), the orientation ARO uses to stay well-posed.
    """
    return _oriented(x, orient, lambda X: sinkhorn_map(X, iters))


@sinkhorn.reference
def _(ctx, x, iters, orient):
    X = x.T if orient == "wide" and x.shape[0] > x.shape[1] else x
    m, n = X.shape
    for _ in range(iters):
        X = torch.stack([r * n ** 0.5 / max(float(r.norm()), CLAMP) for r in X])
        X = torch.stack([X[:, j] * m ** 0.5 / max(float(X[:, j].norm()), CLAMP) for j in range(n)], dim=1)
    return X.T if orient == "wide" and x.shape[0] > x.shape[1] else X


@primitive(family="reductions", elementwise=False, needs_matrix=True,
           examples=("row_normalize", "row_normalize(orient = \"wide\")"))
def row_normalize(ctx: Ctx, x: Tensor, orient: Orient = "as_is") -> Tensor:
    """Row normalization ``f(X)_i = sqrt(n) · x_i / max(‖x_i‖₂, 1e-8)`` (ARO ``row_norm``, §2.2).

    ``orient="wide"`` normalizes the rows of the wide orientation (the columns of a tall matrix).
    """
    return _oriented(x, orient, _rows)


@row_normalize.reference
def _(ctx, x, orient):
    X = x.T if orient == "wide" and x.shape[0] > x.shape[1] else x
    out = torch.stack([r * X.shape[1] ** 0.5 / max(float(r.norm()), CLAMP) for r in X])
    return out.T if orient == "wide" and x.shape[0] > x.shape[1] else out


@primitive(family="reductions", elementwise=False, needs_matrix=True,
           examples=("col_normalize", "col_normalize(orient = \"wide\")"))
def col_normalize(ctx: Ctx, x: Tensor, orient: Orient = "as_is") -> Tensor:
    """Column normalization: each column of an ``m × n`` matrix to L2 norm ``sqrt(m)`` (clamp 1e-8)."""
    return _oriented(x, orient, _cols)


@col_normalize.reference
def _(ctx, x, orient):
    X = x.T if orient == "wide" and x.shape[0] > x.shape[1] else x
    out = torch.stack([c * X.shape[0] ** 0.5 / max(float(c.norm()), CLAMP) for c in X.T], dim=1)
    return out.T if orient == "wide" and x.shape[0] > x.shape[1] else out


Policy = Literal["sinkhorn", "row_normalize", "sign"]


@primitive(family="reductions", elementwise=False, needs_matrix=True,
           examples=("base_map", "base_map(\"row_normalize\")", "base_map(\"sign\")",
                     "base_map(\"sinkhorn\", 3, orient = \"wide\")"))
def base_map(ctx: Ctx, x: Tensor, policy: Policy = "sinkhorn", iters: Iters = 5,
             orient: Orient = "as_is") -> Tensor:
    """ARO's base map ``f`` chosen by a structural name (algorithms.md §2.2).

    ``"sinkhorn"``: ``sinkhorn(iters)``; ``"row_normalize"``: rows to norm ``sqrt(n)``;
    ``"sign"``: elementwise sign. All three commute with sign flips of rows, which makes ARO
    invariant to the column signs of its QR factor.
    """
    return _oriented(x, orient, lambda X: base_map_fn(X, policy, iters))


@base_map.reference
def _(ctx, x, policy, iters, orient):
    t = orient == "wide" and x.shape[0] > x.shape[1]
    X = x.T if t else x
    if policy == "sign":
        out = torch.sign(X)
    else:
        m, n = X.shape
        out = X
        for _ in range(iters if policy == "sinkhorn" else 1):
            out = torch.stack([r * n ** 0.5 / max(float(r.norm()), CLAMP) for r in out])
            if policy == "sinkhorn":
                out = torch.stack([c * m ** 0.5 / max(float(c.norm()), CLAMP) for c in out.T], dim=1)
    return out.T if t else out


@primitive(family="reductions", elementwise=False,
           examples=("cosh_brake", "cosh_brake(1.5)", "cosh_brake(1.0, num = \"normalized\")", "cosh_brake(40.0)"))
def cosh_brake(ctx: Ctx, x: Tensor, gamma: Positive = 1.0,
               num: Literal["raw", "normalized"] = "raw") -> Tensor:
    """AuON's cosh "emergency brake" (algorithms.md §3; arXiv 2509.24320, github ryyzn9/AuON).

    Per parameter: ``X = x / (‖x‖_F + 1e-7)``; ``r = sqrt(mean(cosh(γ·X)²))``; returns
    ``x / (r + 1e-8)`` (``num="raw"``: the repository's HEAD rule, γ = 1.5) or
    ``X / (r + 1e-8)`` (``num="normalized"``: the paper-v1 rule, γ = 1). Any ndim.
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


@primitive(family="reductions", elementwise=False, output="scalar",
           examples=("quantile(0.9)", "quantile(0.5)", "quantile(0.0)", "quantile(1.0)", "quantile(0.37)"))
def quantile(ctx: Ctx, x: Tensor, q: Unit = 0.9) -> Tensor:
    """The ``q``-quantile of each parameter's entries, a per-parameter scalar (ROOT's ε, §4.1).

    Linear interpolation exactly as ``torch.quantile``: with the ``N`` entries sorted,
    ``pos = q·(N−1)``, result ``= v[⌊pos⌋] + (pos − ⌊pos⌋)·(v[⌈pos⌉] − v[⌊pos⌋])``. Unlike
    ``torch.quantile`` it accepts more than 2^24 entries (ROOT's 2048×16384 shape has 2^25):
    ``kthvalue`` when ``q`` is a Python number, sort + gather when ``q`` is a (traced) tensor.
    """
    flat = x.reshape(x.shape[0], -1) if ctx.batched else x.reshape(1, -1)
    n = flat.shape[-1]
    if isinstance(q, (int, float)):
        pos = float(q) * (n - 1)
        lo, hi = math.floor(pos), min(math.floor(pos) + 1, n - 1)
        v_lo = torch.kthvalue(flat, lo + 1, dim=-1).values
        v_hi = torch.kthvalue(flat, hi + 1, dim=-1).values if hi != lo else v_lo
        out = torch.lerp(v_lo, v_hi, pos - lo)
    else:
        qt = torch.as_tensor(q, dtype=flat.dtype, device=flat.device).reshape(-1, 1).expand(flat.shape[0], 1)
        pos = qt * (n - 1)
        lo = pos.floor().clamp(0, n - 1)
        hi = (lo + 1).clamp(max=n - 1)
        srt = flat.sort(dim=-1).values
        v_lo = srt.gather(-1, lo.long())
        v_hi = srt.gather(-1, hi.long())
        out = torch.lerp(v_lo, v_hi, pos - lo).squeeze(-1)
    return out if ctx.batched else out.reshape(())


@quantile.reference
def _(ctx, x, q):
    v = x.flatten().sort().values
    pos = float(q) * (v.numel() - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, v.numel() - 1)
    return v[lo] + (pos - lo) * (v[hi] - v[lo])
