"""Shapes: views of a value (matrices, per-parameter scalars) and shape-dependent update scales."""
from __future__ import annotations

import math
from typing import Any, Literal

import torch

from .. import shapes
from .context import Ctx
from .registry import Positive, Tensor, primitive


@primitive(family="shape", elementwise=False, shape=shapes.as_matrix_rule,
           examples=("as_matrix", "as_matrix(mode = \"batch\")", "as_matrix(vectors = \"column\")",
                     "as_matrix(vectors = \"row\")"))
def as_matrix(ctx: Ctx, x: Tensor, mode: Literal["flatten", "batch"] = "flatten",
              split: tuple[int, ...] = (), vectors: Literal["refuse", "column", "row"] = "refuse") -> Tensor:
    """View each parameter as a matrix (or a batch of matrices); ``apply`` views the update back.

    ``flatten``: ``(out, in, kh, kw) → (out, in·kh·kw)`` (conv weights, as KellerJordan/Muon
    ``muon.py``: ``update.view(len(update), -1)``). ``batch``: a 3-D weight ``(k, m, n)`` becomes
    ``k`` matrices ``(m, n)``. ``split=(s, s, s)``: a fused weight (QKV) is cut along rows into
    equal blocks, each orthogonalized on its own.

    ``vectors``: how a 1-D parameter (an ``n``-vector) is viewed — ``"column"``: the ``n × 1``
    matrix (Shampoo's factors of a vector are then ``L = ggᵀ``, n×n, and the 1×1 ``R = gᵀg``),
    ``"row"``: ``1 × n``; ``"refuse"`` (the default): an error, as before. A vector is never viewed
    as the diagonal matrix ``diag(g)``: that has n² entries, not a view, and a diagonal
    preconditioner is elementwise arithmetic on the vector itself (Adagrad). Parameters with
    2 or more dims ignore ``vectors``.
    """
    base = x.shape[1:] if ctx.batched else x.shape
    lead = (x.shape[0],) if ctx.batched else ()
    if len(base) == 1 and vectors != "refuse":
        return x.reshape(*lead, *((base[0], 1) if vectors == "column" else (1, base[0])))
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
def _(ctx, x, mode, split, vectors):
    if x.ndim == 1 and vectors in ("column", "row"):
        return x[:, None] if vectors == "column" else x[None, :]
    if x.ndim < 2:
        raise ValueError(f"as_matrix needs parameters with at least 2 dims, got shape {tuple(x.shape)}")
    if mode == "batch" and x.ndim > 2:
        m = x.reshape(-1, x.shape[-2], x.shape[-1])
    else:
        m = x.reshape(x.shape[0], -1)
    if split:
        m = m.reshape(len(split), split[0], m.shape[-1])
    return m


@primitive(family="shape", elementwise=False, output="scalar", shape=shapes.one_per_parameter,
           examples=("fro_norm |> as_scalar",),
           samples=lambda gen, shape, args: (torch.randn((), generator=gen, dtype=torch.float64),))
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


# ---- shape-dependent scales ----------------------------------------------------------------------

ShapeKind = Literal["muon", "original", "moonlight", "match_rms_adamw", "spectral", "none"]


def shape_scale(kind: str, rows: int, cols: int, coeff: Any = 0.2) -> Any:
    """The factor multiplying an orthogonalized update of a ``rows × cols`` matrix:
    ``muon``/``original``: ``max(1, rows/cols)^½`` (KellerJordan/Muon ``muon.py``);
    ``moonlight``/``match_rms_adamw``: ``coeff·max(rows, cols)^½`` (arXiv 2502.16982,
    MoonshotAI/Moonlight ``examples/toy_train.py``: update RMS ≈ AdamW's; a tensor when ``coeff``
    is a runtime hyperparameter); ``spectral``: ``(rows/cols)^½`` (microsoft/dion
    ``dion/megabatch_base.py``, ``adjust_lr_spectral_norm``); ``none``: 1. Why these factors:
    docs/derivations.md, "Shape factors"."""
    if kind in ("muon", "original"):
        return math.sqrt(max(1.0, rows / cols))
    if kind in ("moonlight", "match_rms_adamw"):
        return coeff * math.sqrt(max(rows, cols))
    if kind == "spectral":
        return math.sqrt(rows / cols)
    return 1.0


@primitive(family="shape", elementwise=False, needs_matrix=True, shape=shapes.matrix,
           examples=("scale_by_shape(\"muon\")", "scale_by_shape(\"moonlight\")", "scale_by_shape(\"spectral\")"))
def scale_by_shape(ctx: Ctx, x: Tensor, kind: ShapeKind = "muon", coeff: Positive = 0.2) -> Tensor:
    """Shape-dependent scale of an ``m × n`` update: ``muon``/``original``: ``max(1, m/n)^½``;
    ``moonlight``/``match_rms_adamw``: ``coeff·max(m, n)^½`` (update RMS ≈ AdamW's);
    ``spectral``: ``(m/n)^½``; ``none``: 1 (sources: :func:`shape_scale`)."""
    rows, cols = ctx.mat_shape(x)
    return x * shape_scale(kind, rows, cols, coeff)


@scale_by_shape.reference
def _(ctx, x, kind, coeff):
    return x * shape_scale(kind, x.shape[-2], x.shape[-1], float(coeff))


@primitive(family="shape", elementwise=False, needs_matrix=True, output="scalar",
           examples=("shape_factor(\"moonlight\")", "shape_factor(\"muon\")", "shape_factor(\"spectral\")"))
def shape_factor(ctx: Ctx, x: Tensor, kind: ShapeKind = "muon", coeff: Positive = 0.2) -> Tensor:
    """The shape-dependent factor of an ``m × n`` matrix as a per-parameter scalar.

    ``muon``/``original``: ``max(1, m/n)^½``; ``moonlight``/``match_rms_adamw``: ``coeff·max(m, n)^½``;
    ``spectral``: ``(m/n)^½``; ``none``: 1. The same numbers ``scale_by_shape`` multiplies by, but
    returned (one per parameter) so that they can enter a step size before a clamp, as NAMO's
    ``min(α·0.2·max(m, n)^½, 1)`` (arXiv 2602.17080; minxin-zhg/namo ``src/namo.py``).
    Example: a ``12 × 8`` matrix, ``"moonlight"`` → ``0.2·√12``.
    """
    rows, cols = ctx.mat_shape(x)
    lead = x.shape[:-2]
    factor = shape_scale(kind, rows, cols, coeff)
    if kind in ("moonlight", "match_rms_adamw"):  # coeff, hence the factor, may be a runtime tensor
        return torch.ones(lead, dtype=x.dtype, device=x.device) * factor
    return torch.full(lead, factor, dtype=x.dtype, device=x.device)


@shape_factor.reference
def _(ctx, x, kind, coeff):
    return torch.tensor(shape_scale(kind, x.shape[-2], x.shape[-1], float(coeff)), dtype=x.dtype)
