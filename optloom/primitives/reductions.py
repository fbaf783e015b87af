"""Per-parameter reductions and normalizers (algorithms.md §17.4–17.5). Outputs are
per-parameter scalars: one value per member of the bucket."""
from __future__ import annotations

from typing import Literal

import torch

from .context import Ctx
from .registry import Positive, Tensor, primitive


@primitive(family="reductions", elementwise=False, output="scalar", examples=("fro_norm",))
def fro_norm(ctx: Ctx, x: Tensor) -> Tensor:
    """Frobenius (ℓ2) norm of each parameter: ``‖x‖_F = sqrt(Σ x²)``."""
    return torch.linalg.vector_norm(x, dim=ctx.reduce_dims(x))


@fro_norm.reference
def _(ctx, x):
    return (x ** 2).sum().sqrt()


@primitive(family="reductions", elementwise=False, output="scalar", examples=("l1_norm",))
def l1_norm(ctx: Ctx, x: Tensor) -> Tensor:
    """Entrywise ℓ1 norm of each parameter: ``‖x‖₁ = Σ |x|`` (the dual of the max-entry norm of sign
    updates, LANTON §13)."""
    return x.abs().sum(dim=ctx.reduce_dims(x))


@l1_norm.reference
def _(ctx, x):
    return x.abs().sum()


GroupOp = Literal["min", "max", "mean", "sum", "none"]
_GROUP_OPS = {"min": torch.amin, "max": torch.amax, "mean": torch.mean, "sum": torch.sum}


def group_combine(values: Tensor, op: str) -> Tensor:
    """Reduce the per-parameter values of a whole group (a 1-D tensor) to one 0-d value."""
    return torch.ones((), dtype=values.dtype, device=values.device) if op == "none" else _GROUP_OPS[op](values)


@primitive(family="reductions", elementwise=False, output="scalar", reduces_group=True,
           examples=("fro_norm |> group_reduce(\"min\")", "group_reduce(\"mean\")"))
def group_reduce(ctx: Ctx, x: Tensor, op: GroupOp = "min") -> Tensor:
    """Reduce one value per parameter over the rule's whole parameter group — every parameter the
    rule steps this step, across buckets — and give the result to each of them:
    ``ρ = min_ℓ x_ℓ`` (``min``), ``max``, ``mean``, ``sum``, or ``1`` (``none``). LANTON's
    group-normalized layer learning rates (§13). A tensor input is first summed per parameter."""
    v = x if x.ndim <= 1 else x.sum(dim=ctx.reduce_dims(x))
    return group_combine(v.reshape(-1), op).expand(v.shape)


@group_reduce.reference
def _(ctx, x, op):
    return group_combine(x.sum().reshape(1), op).reshape(())


@primitive(family="reductions", elementwise=False, output="scalar", examples=("rms",))
def rms(ctx: Ctx, x: Tensor) -> Tensor:
    """Root mean square of each parameter: ``sqrt(mean(x²))``."""
    return x.square().mean(dim=ctx.reduce_dims(x)).sqrt()


@rms.reference
def _(ctx, x):
    return (x ** 2).mean().sqrt()


@primitive(family="reductions", elementwise=False, output="scalar", examples=("inner(grad)",))
def inner(ctx: Ctx, x: Tensor, y: Tensor) -> Tensor:
    """Frobenius inner product ``⟨x, y⟩ = Σ x⊙y`` per parameter (PolarGrad's ν, algorithms.md §6)."""
    return (x * y).sum(dim=ctx.reduce_dims(x))


@inner.reference
def _(ctx, x, y):
    return (x * y).sum()


@primitive(family="reductions", elementwise=False, examples=("normalize", "normalize(by = \"rms\")"))
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
