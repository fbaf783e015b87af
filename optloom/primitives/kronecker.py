"""Kronecker-factored preconditioner algebra: Shampoo's factors (Gupta, Koren & Singer, arXiv
1802.09568) and FISMO's Fisher factors (arXiv 2601.21750, Algorithm 1; no official code).

A Kronecker factor is a small symmetric positive definite matrix per parameter — ``P`` (m×m)
acting on the rows of an ``m × n`` gradient, ``Q`` (n×n) on its columns — kept as feedback
state (``state P = eye(g, "rows")``). These primitives are what updating and applying such a
factor needs: the factor statistics ``gram``, ``trace``, ``sym`` and the inverse roots
``inv_root`` (an eigendecomposition, batched over a stacked bucket ``(B, d, d)``).

Eigendecompositions run in float32 or better (``torch.linalg.eigh`` has no bf16 kernel and a
bf16 spectrum is too coarse to invert); results are returned in the input's dtype, so that they
multiply the gradient they precondition (bf16 parameters: bf16 factors, rounded once).
"""
from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field

from .. import shapes
from .context import Ctx
from .linalg import compute_dtype
from .registry import Tensor, primitive, sample_normal

Side = Literal["rows", "cols"]
EighDtype = Literal["float32", "float64"]
RootOrder = Annotated[int, Field(ge=1, le=16)]


def _square(x: Tensor, what: str) -> None:
    if x.ndim < 2 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"{what} needs square matrices, got {tuple(x.shape[-2:])}")


@primitive(family="kronecker", elementwise=False, needs_matrix=True, shape=shapes.matrix,
           examples=("inv_root", "inv_root(2)", "inv_root(1, dtype = \"float64\")", "inv_root(4)"))
def inv_root(ctx: Ctx, x: Tensor, p: RootOrder = 1, dtype: EighDtype = "float32") -> Tensor:
    """Inverse ``p``-th root ``A^{−1/p}`` of a symmetric positive definite matrix, one per
    member: ``p = 1`` the inverse, ``p = 2`` the inverse square root (FISMO's ``P^{−1/2}``).

    ``A = sym(x)`` (the symmetric part, so rounding asymmetry does not matter) is diagonalized
    by ``torch.linalg.eigh`` in ``dtype`` or better (float64 inputs stay float64),
    ``A = V diag(λ) Vᵀ``, and ``A^{−1/p} = V diag(λ^{−1/p}) Vᵀ``. Eigenvalues below
    ``ε·max|λ|`` (ε the machine epsilon of the compute dtype) are raised to it: they are
    indistinguishable from 0 at that precision, and a singular or (by rounding) slightly
    indefinite input then gives a large but finite result instead of NaN. Damp the factor (add
    ``μI``) so that this never happens in normal use. Returned in the input's dtype.
    """
    _square(x, "inv_root")
    cd = compute_dtype(x, getattr(torch, dtype))
    a = x.to(cd)
    a = (a + a.transpose(-2, -1)) * 0.5
    lam, V = torch.linalg.eigh(a)
    top = lam.abs().amax(dim=-1, keepdim=True)
    floor = torch.clamp(top * torch.finfo(cd).eps, min=torch.finfo(cd).tiny)
    lam = torch.maximum(lam, floor)
    d = lam.reciprocal() if p == 1 else lam.rsqrt() if p == 2 else lam.pow(-1.0 / p)
    return ((V * d.unsqueeze(-2)) @ V.transpose(-2, -1)).to(x.dtype)


@inv_root.reference
def _(ctx, x, p, dtype):
    _square(x, "inv_root")
    cd = compute_dtype(x, getattr(torch, dtype))
    a = x.to(cd)
    a = (a + a.T) / 2
    lam, V = torch.linalg.eigh(a)
    floor = max(float(lam.abs().max()) * torch.finfo(cd).eps, torch.finfo(cd).tiny)
    out = torch.zeros_like(a)
    for i in range(a.shape[0]):  # Σᵢ f(λᵢ) vᵢvᵢᵀ, one eigenpair at a time
        li = max(float(lam[i]), floor)
        out = out + li ** (-1.0 / p) * torch.outer(V[:, i], V[:, i])
    return out.to(x.dtype)


@primitive(family="kronecker", elementwise=False, needs_matrix=True, output="scalar",
           examples=("trace", "trace(mean = true)"))
def trace(ctx: Ctx, x: Tensor, mean: bool = False) -> Tensor:
    """Trace ``tr(X) = Σᵢ Xᵢᵢ`` of each matrix, a per-parameter scalar; ``mean = true`` divides
    by the number of diagonal entries (``tr(X)/d`` for a d×d factor: its mean eigenvalue, so
    ``x / trace(x, mean = true)`` normalizes a factor to trace d)."""
    t = torch.diagonal(x, dim1=-2, dim2=-1).sum(dim=-1)
    return t / min(x.shape[-2:]) if mean else t


@trace.reference
def _(ctx, x, mean):
    t = sum(x[i, i] for i in range(min(x.shape)))
    return t / min(x.shape) if mean else t


@primitive(family="kronecker", elementwise=False, needs_matrix=True, shape=shapes.matrix, examples=("sym",))
def sym(ctx: Ctx, x: Tensor) -> Tensor:
    """Symmetric part ``sym(X) = (X + Xᵀ)/2`` of each square matrix (removes the asymmetry that
    rounding leaves in ``G Q⁻¹ Gᵀ`` and friends)."""
    _square(x, "sym")
    return (x + x.transpose(-2, -1)) * 0.5


@sym.reference
def _(ctx, x):
    _square(x, "sym")
    return torch.stack([torch.stack([(x[i, j] + x[j, i]) / 2 for j in range(x.shape[1])])
                        for i in range(x.shape[0])])


def _gram_samples(gen: torch.Generator, shape: tuple[int, ...], args: dict) -> tuple[Tensor, Tensor]:
    """Contract inputs: a random ``m × n`` matrix and a random metric of the side's size."""
    d = shape[-1] if args["side"] == "rows" else shape[-2]
    return (torch.randn(shape, generator=gen, dtype=torch.float64),
            torch.randn(d, d, generator=gen, dtype=torch.float64))


@primitive(family="kronecker", elementwise=False, needs_matrix=True, samples=_gram_samples, shape=shapes.square("side"),
           examples=("gram(eye(grad, \"cols\"))", "gram(eye(grad, \"rows\"), \"cols\")"))
def gram(ctx: Ctx, x: Tensor, w: Tensor, side: Side = "rows") -> Tensor:
    """Mean weighted Gram matrix of an ``m × n`` matrix ``X`` — a Kronecker factor's statistic:
    ``side = "rows"``: ``(1/n)·X W Xᵀ`` (m×m, ``W`` n×n: the mean outer product of the columns
    in the metric W); ``"cols"``: ``(1/m)·Xᵀ W X`` (n×n, ``W`` m×m). With ``W = I`` these are
    Shampoo's ``GGᵀ/n`` and ``GᵀG/m``; FISMO uses ``W = Q⁻¹`` and ``W = P⁻¹`` (arXiv 2601.21750,
    Algorithm 1, steps 1 and 3)."""
    m, n = x.shape[-2], x.shape[-1]
    w = w.to(x.dtype)
    if side == "rows":
        return (x @ w @ x.transpose(-2, -1)) / n
    return (x.transpose(-2, -1) @ w @ x) / m


@gram.reference
def _(ctx, x, w, side):
    m, n = x.shape
    w = w.to(x.dtype)
    if side == "rows":  # Σ_jk x[:, j] w_jk x[:, k]ᵀ / n
        return torch.einsum("ij,jk,lk->il", x, w, x) / n
    return torch.einsum("ji,jk,kl->il", x, w, x) / m


# ---- outer products ----------------------------------------------------------------------------

def _vector_dims(x: Tensor, batched: bool) -> int:
    return x.ndim - (1 if batched else 0)


def _as_column(x: Tensor, what: str) -> Tensor:
    if x.shape[-1] == 1:
        return x
    if x.shape[-2] == 1:
        return x.transpose(-2, -1)
    raise ValueError(f"outer: {what} must be a column (…, m, 1) or a row (…, 1, m), got {tuple(x.shape[-2:])}")


def _outer_samples(gen: torch.Generator, shape: tuple[int, ...], args: dict) -> tuple[Tensor, Tensor]:
    """Contract inputs: two vectors for a 1-D parameter, else a column (…, m, 1) and a row (…, 1, n)."""
    if len(shape) == 1:
        return sample_normal(gen, shape), sample_normal(gen, (shape[0] + 2,))
    return sample_normal(gen, (*shape[:-1], 1)), sample_normal(gen, (*shape[:-2], 1, shape[-1]))


@primitive(family="kronecker", elementwise=False, samples=_outer_samples, shape=shapes.outer_rule,
           examples=("row_mean |> outer(col_mean(grad))",))
def outer(ctx: Ctx, x: Tensor, y: Tensor) -> Tensor:
    """Outer product ``x yᵀ`` of two vectors per parameter: ``outer(x, y)ᵢⱼ = xᵢ yⱼ``.

    ``x`` and ``y`` are 1-D values (an ``m``- and an ``n``-vector per member: the result is
    ``m × n``) or kept-dimension statistics of a matrix — a column ``(…, m, 1)`` such as
    ``row_mean(X)`` or a row ``(…, 1, n)`` such as ``col_mean(X)``, either orientation — giving
    ``(…, m, n)`` over the same leading dims. Adafactor's factored second moment
    ``V̂ = R Cᵀ / (1ᵀR)`` (Shazeer & Stern, arXiv 1804.04235, Alg. 4) is
    ``outer(R, C) / col_mean(R)`` in torch.optim.Adafactor's means, stored as its m + n factors.
    Example: ``outer([1, 2], [3, 4, 5]) = [[3, 4, 5], [6, 8, 10]]``.
    """
    if _vector_dims(x, ctx.batched) == 1 and _vector_dims(y, ctx.batched) == 1:
        return x.unsqueeze(-1) * y.unsqueeze(-2)
    if _vector_dims(x, ctx.batched) < 2 or _vector_dims(y, ctx.batched) < 2:
        raise ValueError("outer: give two vectors, or a column/row statistic of a matrix for each side")
    return _as_column(x, "x") * _as_column(y, "y").transpose(-2, -1)


@outer.reference
def _(ctx, x, y):
    if x.ndim == 1 and y.ndim == 1:
        return torch.einsum("i,j->ij", x, y)
    xs = x.reshape(-1, x.shape[-2] * x.shape[-1])
    ys = y.reshape(-1, y.shape[-2] * y.shape[-1])
    out = torch.stack([torch.einsum("i,j->ij", a, b) for a, b in zip(xs, ys)])
    return out.reshape(*x.shape[:-2], xs.shape[-1], ys.shape[-1])


# ---- eigenvectors -------------------------------------------------------------------------------

def _sym_samples(gen: torch.Generator, shape: tuple[int, ...], args: dict) -> tuple[Tensor]:
    """Contract input: a random symmetric positive semidefinite matrix ``X Xᵀ / n`` (a Kronecker
    factor's statistic) — or the raw matrix when it is not square (refused on both sides)."""
    x = sample_normal(gen, shape)
    return (x @ x.transpose(-2, -1) / shape[-1] if shape[-1] == shape[-2] else x,)


@primitive(family="kronecker", elementwise=False, needs_matrix=True, samples=_sym_samples, shape=shapes.matrix,
           examples=("eigh", "eigh(dtype = \"float64\")"))
def eigh(ctx: Ctx, x: Tensor, dtype: EighDtype = "float32") -> Tensor:
    """Orthonormal eigenvectors ``Q`` (columns) of each symmetric matrix ``A = sym(x)``,
    ``A = Q diag(λ) Qᵀ``, in a deterministic order and sign: eigenvalues **descending**
    (``λ₁ ≥ λ₂ ≥ …``; ``torch.linalg.eigh``'s ascending order reversed, as SOAP's
    ``get_orthogonal_matrix``, nikhilvyas/SOAP ``soap.py``) and each column's entry of largest
    magnitude positive (the first such entry on a tie). Computed by ``torch.linalg.eigh`` in
    ``dtype`` or better (float64 inputs stay float64), returned in the input's dtype. A basis
    refreshed every ``T`` steps is ``let Q = every(T, L |> eigh)`` (SOAP's eigenbasis of Shampoo's
    factors, arXiv 2409.11321, Alg. 1; the cached ``Q`` is state). Eigenvectors of (nearly)
    repeated eigenvalues are not unique: a rule that uses them should not depend on the choice
    within such a subspace (SOAP's update does not). Example: ``[[2, 1], [1, 2]]`` →
    ``[[0.707, 0.707], [0.707, −0.707]]`` (λ = 3, 1).
    """
    _square(x, "eigh")
    cd = compute_dtype(x, getattr(torch, dtype))
    a = x.to(cd)
    _, V = torch.linalg.eigh((a + a.transpose(-2, -1)) * 0.5)
    V = V.flip(-1)
    big = V.abs().argmax(dim=-2, keepdim=True)
    signs = torch.where(V.gather(-2, big) < 0, -1.0, 1.0).to(V.dtype)
    return (V * signs).to(x.dtype)


@eigh.reference
def _(ctx, x, dtype):
    _square(x, "eigh")
    a = x.to(torch.float64)
    lam, V = torch.linalg.eigh((a + a.T) / 2)
    order = sorted(range(len(lam)), key=lambda i: -float(lam[i]))
    cols = []
    for i in order:
        v = V[:, i]
        k = max(range(len(v)), key=lambda j: (abs(float(v[j])), -j))
        cols.append(v if v[k] > 0 else -v)
    return torch.stack(cols, dim=1).to(x.dtype)
