"""Matrix views and shape-dependent update scales (algorithms.md §0, §0.2)."""
from __future__ import annotations

import math
from typing import Literal

from .context import Ctx
from .registry import Positive, Tensor, primitive


@primitive(family="shape", elementwise=False,
           examples=("as_matrix", "as_matrix(mode = \"batch\")"))
def as_matrix(ctx: Ctx, x: Tensor, mode: Literal["flatten", "batch"] = "flatten",
              split: tuple[int, ...] = ()) -> Tensor:
    """View each parameter as a matrix (or a batch of matrices); ``apply`` views the update back.

    ``flatten``: ``(out, in, kh, kw) → (out, in·kh·kw)`` (conv weights, as KellerJordan/Muon).
    ``batch``: a 3-D weight ``(k, m, n)`` becomes ``k`` matrices ``(m, n)``.
    ``split=(s, s, s)``: a fused weight (QKV) is cut along rows into equal blocks, each
    orthogonalized on its own.
    """
    base = x.shape[1:] if ctx.batched else x.shape
    lead = (x.shape[0],) if ctx.batched else ()
    if len(base) < 2:
        raise ValueError(f"as_matrix needs parameters with at least 2 dims, got shape {tuple(base)}")
    if mode == "batch" and len(base) > 2:
        mats = x.reshape(*lead, -1, base[-2], base[-1])
    else:
        mats = x.reshape(*lead, base[0], -1)
    if split:
        rows = mats.shape[-2]
        if sum(split) != rows or len(set(split)) != 1:
            raise ValueError(f"as_matrix split {split} must be equal blocks summing to {rows} rows")
        mats = mats.reshape(*mats.shape[:-2], len(split), split[0], mats.shape[-1])
    if ctx.batched:
        mats = mats.reshape(-1, mats.shape[-2], mats.shape[-1])
    elif mats.ndim > 2:
        mats = mats.reshape(-1, mats.shape[-2], mats.shape[-1])
    return mats


@as_matrix.reference
def _(ctx, x, mode, split):
    if mode == "batch" and x.ndim > 2:
        m = x.reshape(-1, x.shape[-2], x.shape[-1])
    else:
        m = x.reshape(x.shape[0], -1)
    if split:
        m = m.reshape(len(split), split[0], m.shape[-1])
    return m


ShapeKind = Literal["muon", "original", "moonlight", "match_rms_adamw", "spectral", "none"]


def shape_factor(kind: str, rows: int, cols: int, coeff: float = 0.2) -> float:
    """The factor multiplying an orthogonalized update of a ``rows × cols`` matrix (§0.2)."""
    if kind in ("muon", "original"):
        return math.sqrt(max(1.0, rows / cols))
    if kind in ("moonlight", "match_rms_adamw"):
        return coeff * math.sqrt(max(rows, cols))
    if kind == "spectral":
        return math.sqrt(rows / cols)
    return 1.0


@primitive(family="shape", elementwise=False, needs_matrix=True,
           examples=("scale_by_shape(\"muon\")", "scale_by_shape(\"moonlight\")", "scale_by_shape(\"spectral\")"))
def scale_by_shape(ctx: Ctx, x: Tensor, kind: ShapeKind = "muon", coeff: Positive = 0.2) -> Tensor:
    """Shape-dependent scale of an ``m × n`` update (algorithms.md §0.2).

    ``muon``/``original``: ``max(1, m/n)^½``; ``moonlight``/``match_rms_adamw``: ``coeff·max(m, n)^½``
    (update RMS ≈ AdamW's); ``spectral``: ``(m/n)^½``; ``none``: 1.
    """
    rows, cols = ctx.mat_shape(x)
    if kind in ("moonlight", "match_rms_adamw"):
        return x * (coeff * math.sqrt(max(rows, cols)))
    return x * shape_factor(kind, rows, cols)


@scale_by_shape.reference
def _(ctx, x, kind, coeff):
    return x * shape_factor(kind, x.shape[-2], x.shape[-1], float(coeff))
