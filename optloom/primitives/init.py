"""State initializers: what a feedback state (``state NAME = init``) starts from.

An initializer reads only the *shape* (and dtype) of its input, never its values, and gives the
same result when applied to its own output's shape — the compiler allocates a state buffer by
applying the initializer to zeros of the state's shape.
"""
from __future__ import annotations

from typing import Literal

import torch

from .. import shapes
from .context import Ctx
from .registry import Tensor, primitive


@primitive(family="init", examples=("zeros",))
def zeros(ctx: Ctx, x: Tensor) -> Tensor:
    """Zeros shaped like ``x``: ``state E = zeros(grad)``."""
    return torch.zeros_like(x)


@zeros.reference
def _(ctx, x):
    return torch.zeros_like(x)


@primitive(family="init", elementwise=False, needs_matrix=True, shape=shapes.square("side"),
           examples=("eye", "eye(\"cols\")"))
def eye(ctx: Ctx, x: Tensor, side: Literal["rows", "cols"] = "rows") -> Tensor:
    """Identity ``I_m`` (``side="rows"``, m = rows of ``x``) or ``I_n`` (``"cols"``), one per matrix:
    ``state P = eye(g, "rows")`` starts a left Kronecker factor at the identity."""
    d = x.shape[-2] if side == "rows" else x.shape[-1]
    i = torch.eye(d, dtype=x.dtype, device=x.device)
    return i.expand(*x.shape[:-2], d, d).contiguous()


@eye.reference
def _(ctx, x, side):
    return torch.eye(x.shape[0] if side == "rows" else x.shape[1], dtype=x.dtype)


@primitive(family="init", elementwise=False, output="scalar", examples=("fill(1.0)",))
def fill(ctx: Ctx, x: Tensor, value: float = 0.0) -> Tensor:
    """One number per parameter, all equal to ``value``: ``state v = 0.0`` is ``fill(grad, 0.0)``."""
    shape = (x.shape[0],) if ctx.layout == "stacked" else ()
    return torch.full(shape, float(value), dtype=x.dtype, device=x.device)


@fill.reference
def _(ctx, x, value):
    return torch.full((), float(value), dtype=x.dtype)
