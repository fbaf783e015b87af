"""Reductions: statistics of each parameter's entries — one number per parameter (a per-parameter
scalar, ``(B,)`` on a stacked bucket) or a kept-dimension row (``col_norms``) — and the group
reduction over a rule's parameters."""
from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
from pydantic import Field

from .. import shapes
from .context import Ctx
from .linalg import compute_dtype, wide
from .registry import Tensor, primitive

Unit = Annotated[float, Field(ge=0.0, le=1.0)]


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
    updates: LANTON's noise estimate for sign layers, arXiv 2510.14009)."""
    return x.abs().sum(dim=ctx.reduce_dims(x))


@l1_norm.reference
def _(ctx, x):
    return x.abs().sum()


@primitive(family="reductions", elementwise=False, output="scalar", examples=("rms",))
def rms(ctx: Ctx, x: Tensor) -> Tensor:
    """Root mean square of each parameter: ``sqrt(mean(x²))``."""
    return x.square().mean(dim=ctx.reduce_dims(x)).sqrt()


@rms.reference
def _(ctx, x):
    return (x ** 2).mean().sqrt()


@primitive(family="reductions", elementwise=False, output="scalar", examples=("inner(grad)",))
def inner(ctx: Ctx, x: Tensor, y: Tensor) -> Tensor:
    """Frobenius inner product ``⟨x, y⟩ = Σ x⊙y`` per parameter (PolarGrad's ``ν = ⟨M, polar(M)⟩``,
    arXiv 2505.21799; timlautk/polargrad ``polar_grad.py``)."""
    return (x * y).sum(dim=ctx.reduce_dims(x))


@inner.reference
def _(ctx, x, y):
    return (x * y).sum()


@primitive(family="reductions", elementwise=False, needs_matrix=True, output="scalar",
           examples=("nuclear_norm",))
def nuclear_norm(ctx: Ctx, x: Tensor) -> Tensor:
    """Nuclear norm ``‖X‖_* = Σᵢ σᵢ(X)`` per matrix (PolarGrad's ν, arXiv 2505.21799: it equals
    ``⟨X, polar(X)⟩`` for the exact polar factor, docs/derivations.md "Nuclear norm via polar"),
    from ``torch.linalg.svdvals`` in float32 or better."""
    return torch.linalg.svdvals(x.to(compute_dtype(x))).sum(dim=-1)


@nuclear_norm.reference
def _(ctx, x):
    # σᵢ² are the eigenvalues of the small Gram matrix
    W = wide(x)
    return torch.linalg.eigvalsh(W @ W.T).clamp(min=0).sqrt().sum()


@primitive(family="reductions", elementwise=False, needs_matrix=True, shape=shapes.keep_axis(-2),
           examples=("col_norms",))
def col_norms(ctx: Ctx, x: Tensor) -> Tensor:
    """Euclidean norm of every column of a matrix, kept as a row: ``‖X[:, j]‖₂``, shape ``(…, 1, n)``.

    ``c_j = sqrt(Σ_i X_ij²)``. The kept row dimension makes the result broadcast against the
    ``m × n`` matrix (``X / col_norms(X)`` normalizes columns; ``O * d`` is ``O · diag(d)``).
    NAMO-D's per-column statistics (arXiv 2602.17080; minxin-zhg/namo ``src/namo.py``):
    ``col_norms(g) ** 2 |> ema(0.99)`` is ``V``, ``col_norms(N) / (V ** 0.5 + eps)`` is ``d``.
    Range: ``c_j ≥ 0``. Conv weights must be viewed as matrices first (``as_matrix``), so
    columns are ``in·kh·kw`` positions. Example: ``[[3, 0], [4, 1]]`` → ``[[5, 1]]``.
    """
    return torch.linalg.vector_norm(x, dim=-2, keepdim=True)


@col_norms.reference
def _(ctx, x):
    return (x ** 2).sum(dim=0, keepdim=True).sqrt()


@primitive(family="reductions", elementwise=False, output="scalar",
           examples=("quantile(0.9)", "quantile(0.5)", "quantile(0.0)", "quantile(1.0)", "quantile(0.37)"))
def quantile(ctx: Ctx, x: Tensor, q: Unit = 0.9) -> Tensor:
    """The ``q``-quantile of each parameter's entries, a per-parameter scalar (ROOT's ε, arXiv
    2511.20626; huawei-noah/noah-research ``ROOT/examples/example_train.py``).

    Linear interpolation exactly as ``torch.quantile``: with the ``N`` entries sorted,
    ``pos = q·(N−1)``, result ``= v[⌊pos⌋] + (pos − ⌊pos⌋)·(v[⌈pos⌉] − v[⌊pos⌋])``. Unlike
    ``torch.quantile`` it accepts more than 2^24 entries (ROOT's 2048×16384 shape has 2^25):
    ``kthvalue`` when ``q`` is a Python number (as ROOT's code), sort + gather when ``q`` is a
    (traced) tensor.
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


# ---- reductions along one axis of a matrix --------------------------------------------------------

def _axis_input(ctx: Ctx, x: Tensor, name: str) -> None:
    if x.ndim - (1 if ctx.batched else 0) < 2:
        raise ValueError(f"{name} needs parameters with at least 2 dims (a matrix per member), got shape "
                         f"{tuple(x.shape[1:] if ctx.batched else x.shape)}")


_AXIS_OPS = {"sum": lambda x, d: x.sum(dim=d, keepdim=True), "mean": lambda x, d: x.mean(dim=d, keepdim=True),
             "max": lambda x, d: x.amax(dim=d, keepdim=True),
             "norms": lambda x, d: torch.linalg.vector_norm(x, dim=d, keepdim=True)}
_AXIS_MATH = {("sum", True): "Σⱼ Xᵢⱼ", ("mean", True): "(1/n)·Σⱼ Xᵢⱼ", ("max", True): "maxⱼ Xᵢⱼ",
              ("norms", True): "(Σⱼ Xᵢⱼ²)^½", ("sum", False): "Σᵢ Xᵢⱼ", ("mean", False): "(1/m)·Σᵢ Xᵢⱼ",
              ("max", False): "maxᵢ Xᵢⱼ"}


def _axis_ref(x: Tensor, op: str, rows: bool) -> Tensor:
    """Straightforward: sums as products with a ones vector (Adafactor's ``(G²)1ₙ`` and ``1ₘᵀ(G²)``)."""
    if x.ndim < 2:
        raise ValueError(f"needs a matrix, got shape {tuple(x.shape)}")
    X = x if rows else x.transpose(-2, -1)
    ones = torch.ones(X.shape[-1], 1, dtype=x.dtype)
    if op == "max":
        out = torch.stack([torch.stack([max(r) for r in m.reshape(-1, X.shape[-1]).unbind(0)])
                           for m in X.reshape(-1, *X.shape[-2:])]).reshape(*X.shape[:-1], 1)
    elif op == "norms":
        out = ((X * X) @ ones).sqrt()
    else:
        out = (X @ ones) / (X.shape[-1] if op == "mean" else 1)
    return out if rows else out.transpose(-2, -1)


def _axis_prim(op: str, rows: bool):
    name = f"{'row' if rows else 'col'}_{op}"
    dim = -1 if rows else -2
    kept = "``(…, m, 1)``: one value per row, a column" if rows else "``(…, 1, n)``: one value per column, a row"
    doc = (f"{'Row' if rows else 'Column'} {op if op != 'norms' else 'Euclidean norms'} of the matrix in the "
           f"last two dims of each parameter, kept as {kept}: ``{name}(X)_{'i' if rows else 'j'} = "
           f"{_AXIS_MATH[op, rows]}``.\n\n"
           "A parameter of more than 2 dims is a batch of matrices over its leading dims (as torch.optim.Adafactor "
           "factors the last two dims); vectors are refused. The kept dimension broadcasts against the matrix "
           "and makes a factored statistic cost m + n numbers: Adafactor's ``R = row_mean(G²)``, "
           "``C = col_mean(G²)``, ``V̂ = outer(R, C) / col_mean(R)`` (Shazeer & Stern, arXiv 1804.04235, "
           "Alg. 4; torch.optim.Adafactor uses means). Example: ``[[1, 2], [3, 4]]`` → "
           + {("sum", True): "``[[3], [7]]``", ("sum", False): "``[[4, 6]]``",
              ("mean", True): "``[[1.5], [3.5]]``", ("mean", False): "``[[2, 3]]``",
              ("max", True): "``[[2], [4]]``", ("max", False): "``[[3, 4]]``",
              ("norms", True): "``[[√5], [5]]``"}[(op, rows)] + ".")

    def impl(ctx: Ctx, x: Tensor) -> Tensor:
        _axis_input(ctx, x, name)
        return _AXIS_OPS[op](x, dim)

    impl.__doc__ = doc
    impl.__name__ = name
    prim = primitive(family="reductions", name=name, elementwise=False, shape=shapes.keep_axis(dim),
                     examples=(name,))(impl)
    prim.reference(lambda ctx, x: _axis_ref(x, op, rows))
    return prim


row_sum, row_mean, row_max, row_norms = (_axis_prim(op, True) for op in ("sum", "mean", "max", "norms"))
col_sum, col_mean, col_max = (_axis_prim(op, False) for op in ("sum", "mean", "max"))


# ---- group reductions ----------------------------------------------------------------------------

GroupOp = Literal["min", "max", "mean", "sum", "none"]
_GROUP_OPS = {"min": torch.amin, "max": torch.amax, "mean": torch.mean, "sum": torch.sum}


def group_combine(values: Tensor, op: str) -> Tensor:
    """Reduce the per-parameter values of a whole group (a 1-D tensor) to one 0-d value."""
    return torch.ones((), dtype=values.dtype, device=values.device) if op == "none" else _GROUP_OPS[op](values)


@primitive(family="reductions", elementwise=False, output="scalar", reduces_group=True,
           examples=("fro_norm |> group_reduce(\"min\")", "group_reduce(\"mean\")",
                     "rms |> group_reduce(\"max\")", "group_reduce(\"sum\")", "group_reduce(\"none\")"))
def group_reduce(ctx: Ctx, x: Tensor, op: GroupOp = "min") -> Tensor:
    """Reduce one value per parameter over the rule's whole parameter group — every parameter the
    rule steps this step, across buckets — and give the result to each of them:
    ``ρ = min_ℓ x_ℓ`` (``min``), ``max``, ``mean``, ``sum``, or ``1`` (``none``). LANTON's layer
    learning rates normalized within a norm group (arXiv 2510.14009). A tensor input is first
    summed per parameter."""
    v = x if x.ndim <= 1 else x.sum(dim=ctx.reduce_dims(x))
    return group_combine(v.reshape(-1), op).expand(v.shape)


@group_reduce.reference
def _(ctx, x, op):
    return group_combine(x.sum().reshape(1), op).reshape(())
