"""Cached orthonormal bases from a matrix's SVD: Conda's rotation (algorithms.md §9) and the
GaLore/SVD projector of FRUGAL (§10). Use with ``every(T, ...)`` so the SVD runs only on refresh
steps, and with ``project`` / ``lift`` (give them the same explicit ``side``).
"""
from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field

from .context import Ctx
from .polar import compute_dtype
from .registry import Tensor, primitive
from .subspace import side_right

BasisSide = Literal["std", "left", "right"]
BasisRank = Annotated[int, Field(ge=0, le=65536)]
Density = Annotated[float, Field(gt=0.0, le=1.0)]


def _fix_signs(Q: Tensor) -> Tensor:
    """Flip each column so that its entry of largest magnitude is positive (first one on ties):
    singular vectors are defined up to sign; this makes the basis a function of the input."""
    idx = Q.abs().argmax(dim=-2, keepdim=True)
    s = torch.where(Q.gather(-2, idx) < 0, -1.0, 1.0).to(Q.dtype)
    return Q * s


def _keep(d: int, density: Tensor | float, r: int, like: Tensor) -> Tensor:
    """0/1 per column: the first ``max(1, round(density·d))`` of ``r`` columns (half to even)."""
    k = torch.clamp(torch.round(torch.as_tensor(density, dtype=torch.float64) * d), 1, r)
    if k.ndim == 1:  # a per-parameter density (B,)
        k = k.unsqueeze(-1)
    j = torch.arange(r, dtype=torch.float64, device=like.device)
    return (j < k.to(like.device)).to(like.dtype).unsqueeze(-2)


@primitive(family="subspace", elementwise=False, needs_matrix=True,
           examples=("svd_basis", "svd_basis(2)", "svd_basis(side = \"left\")", "svd_basis(3, \"right\")",
                     "svd_basis(density = 0.5)", "svd_basis(0, \"left\", 0.25)"))
def svd_basis(ctx: Ctx, x: Tensor, rank: BasisRank = 0, side: BasisSide = "std", density: Density = 1.0) -> Tensor:
    """Orthonormal singular vectors of ``x = UΣVᵀ`` (thin SVD, float32+, descending ``σ``) on one
    side, as the columns of ``Q``: ``V[:, :r]`` (``n × r``, right) or ``U[:, :r]`` (``m × r``, left).

    ``side="std"`` is GaLore's/Conda's ``std`` rule: right when ``rows ≥ cols``, else left.
    ``r = rank`` (``0``: all ``min(m, n)``; clipped to ``min(m, n)``). ``density < 1`` keeps the
    first ``max(1, round(density·min(m, n)))`` columns and zeroes the others (FRUGAL's
    ``r = round(density·dim)`` with a runtime density: the shape stays ``r``). Each column's
    largest-magnitude entry is made positive (singular vectors are defined up to sign).

    With ``q = svd_basis(x, side = s)``, ``project(y, q, s)`` is ``y V`` / ``Uᵀ y`` and ``lift(z, q,
    s)`` is ``z Vᵀ`` / ``U z``: Conda's ``g' = G Pᵀ`` with ``P = Vᵀ`` (or ``Pᵀ G`` with ``P = U``).
    Use ``every(T, svd_basis(...))`` to refresh the basis every ``T`` steps and cache it.
    """
    rows, cols = x.shape[-2], x.shape[-1]
    r = min(rank, rows, cols) if rank > 0 else min(rows, cols)
    U, _, Vh = torch.linalg.svd(x.to(compute_dtype(x)), full_matrices=False)
    Q = Vh.transpose(-2, -1)[..., :r] if side_right(rows, cols, side) else U[..., :r]
    Q = _fix_signs(Q)
    if isinstance(density, Tensor) or density < 1.0:
        Q = Q * _keep(min(rows, cols), density, r, Q)
    return Q


@svd_basis.reference
def _(ctx, x, rank, side, density):
    # eigenvectors of the Gram matrix on the chosen side, sorted by decreasing eigenvalue
    m, n = x.shape
    right = side_right(m, n, side)
    G = x.T @ x if right else x @ x.T
    w, E = torch.linalg.eigh(G.to(torch.float64))
    E = E[:, torch.argsort(w, descending=True)][:, :min(m, n)]
    r = min(rank, m, n) if rank > 0 else min(m, n)
    Q = E[:, :r]
    for j in range(r):
        i = int(Q[:, j].abs().argmax())
        if Q[i, j] < 0:
            Q[:, j] = -Q[:, j]
    k = max(1, min(r, round(float(density) * min(m, n))))
    Q[:, k:] = 0.0
    return Q.to(x.dtype)
