"""A fixed orthogonal basis with dynamic column selection: DCT-AdamW and Trion (algorithms.md §14.1;
Modoranu et al., arXiv 2505.17967; github IST-DASLab/ISTA-DASLab-Optimizers ``fft_low_rank/``).

For an ``m × n`` matrix ``A`` the *std side* is the right one when ``m ≥ n`` (``d = n``) and the
left one otherwise (``d = m``). With ``Q`` an orthogonal ``d × d`` basis:

* right: coordinates ``S = A Q`` (``m × d``); a subset ``idx`` of ``r`` columns gives the low-rank
  ``a = S[:, idx] = A Q[:, idx]`` (``m × r``), mapped back by ``y ↦ y Q[:, idx]ᵀ``;
* left: ``S = Qᵀ A`` (``d × n``), ``a = S[idx, :] = Q[:, idx]ᵀ A`` (``r × n``), back by ``y ↦ Q[:, idx] y``.

``side`` is the subspace family's (``subspace.side_right``): ``"std"`` (the default here),
``"auto"`` (right iff ``m > n``: square matrices on the left), or ``"left"``/``"right"`` forced.
The coordinates and the way back are ``subspace.project`` / ``lift`` with ``side = "std"``:
``let S = project(A, Q, "std")``, ``let idx = dct_select(S, r)``, ``take(S, idx)`` (=
``project(A, take(Q, idx, "right"), "std")``), ``lift(y, take(Q, idx, "right"), "std")``.
Indices are int64 tensors (``(r,)`` per parameter) in descending order of score, so the ``k``-th
low-rank coordinate belongs to the basis vector ``idx[k]``: a state kept in these coordinates
(DCT-AdamW's Adam moments) is ordered.
"""
from __future__ import annotations

import math
from typing import Annotated

import torch
from pydantic import Field

from .context import Ctx
from .registry import Tensor, primitive
from .subspace import Side, side_right

Rank = Annotated[int, Field(ge=1, le=65536)]
EllNorm = Annotated[int, Field(ge=1, le=16)]


def dct_matrix(d: int, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> Tensor:
    """``Q_ij = sqrt(2/d)·cos(π·i·(2j+1)/(2d))``, row 0 times ``sqrt(1/2)`` (orthogonal; computed in
    float64, returned in ``dtype``)."""
    i = torch.arange(d, dtype=torch.float64, device=device).unsqueeze(1)
    j = torch.arange(d, dtype=torch.float64, device=device).unsqueeze(0)
    scale = torch.where(i == 0, torch.full_like(i, math.sqrt(1.0 / d)), torch.full_like(i, math.sqrt(2.0 / d)))
    return (scale * torch.cos((math.pi / (2 * d)) * i * (2 * j + 1))).to(dtype)


@primitive(family="subspace", elementwise=False, needs_matrix=True,
           examples=("dct_basis", "dct_basis(side = \"left\")", "dct_basis(side = \"right\")",
                     "dct_basis(side = \"auto\")"))
def dct_basis(ctx: Ctx, x: Tensor, side: Side = "std") -> Tensor:
    """The ``d × d`` orthogonal DCT matrix of §14.1 for ``x``'s side (``d = n`` on the right —
    ``rows ≥ cols`` for ``side="std"``, ``rows > cols`` for ``"auto"`` — else ``d = m``):
    ``Q_ij = sqrt(2/d)·cos(π·i(2j+1)/(2d))``, row 0 times ``sqrt(1/2)``. It reads only ``x``'s shape
    (the paper's fixed basis, the same for every layer of that size; ``S = A Q`` applies DCT-III
    to ``A``'s rows). Computed in float64, returned in ``x``'s dtype."""
    d = x.shape[-1] if side_right(x.shape[-2], x.shape[-1], side) else x.shape[-2]
    q = dct_matrix(d, x.dtype, x.device)
    return q.expand(*x.shape[:-2], d, d)


@dct_basis.reference
def _(ctx, x, side):
    d = x.shape[1] if side_right(x.shape[0], x.shape[1], side) else x.shape[0]
    rows = []
    for i in range(d):
        c = math.sqrt(1.0 / d) if i == 0 else math.sqrt(2.0 / d)
        rows.append([c * math.cos(math.pi * i * (2 * j + 1) / (2 * d)) for j in range(d)])
    return torch.tensor(rows, dtype=x.dtype)


@primitive(family="subspace", elementwise=False, needs_matrix=True,
           examples=("dct_select(2)", "dct_select(3, ell_norm = 2)", "dct_select(2, side = \"left\")",
                     "dct_select(100)", "dct_select(2, side = \"auto\")"))
def dct_select(ctx: Ctx, s: Tensor, rank: Rank, ell_norm: EllNorm = 1, side: Side = "std") -> Tensor:
    """Dynamic column selection (§14.1 steps 2–3): the indices of the ``r = min(rank, d)`` columns
    (right side) or rows (left side) of ``s`` with the largest ℓ_p norms (``p = ell_norm``; the
    paper's default 1), in descending order of norm, as an int64 tensor of ``r`` entries. ``s`` is
    normally ``project(A, Q, "std")``; ties (probability 0 for continuous data) are broken by
    ``topk``."""
    right = side_right(s.shape[-2], s.shape[-1], side)
    scores = torch.linalg.vector_norm(s, ord=ell_norm, dim=-2 if right else -1)
    r = min(rank, scores.shape[-1])
    return torch.topk(scores, r, dim=-1, largest=True, sorted=True).indices


@dct_select.reference
def _(ctx, s, rank, ell_norm, side):
    right = side_right(s.shape[0], s.shape[1], side)
    vecs = s.T if right else s  # one row per candidate
    scores = [float(sum(abs(float(v)) ** ell_norm for v in row)) ** (1.0 / ell_norm) for row in vecs]
    order = sorted(range(len(scores)), key=lambda k: -scores[k])
    return torch.tensor(order[: min(rank, len(scores))], dtype=torch.int64)


@primitive(family="subspace", elementwise=False, needs_matrix=True,
           examples=("take(dct_select(grad, 2))", "take(dct_basis(grad), dct_select(grad, 2), \"right\")",
                     "take(dct_select(grad, 2, side = \"auto\"), \"auto\")"))
def take(ctx: Ctx, s: Tensor, idx: Tensor, side: Side = "std") -> Tensor:
    """The columns ``s[:, idx]`` (right side; ``rows ≥ cols`` for ``side="std"``, ``rows > cols``
    for ``"auto"``) or the rows ``s[idx, :]`` (left side) of ``s``, in the order of ``idx`` (from
    ``dct_select``). With ``s = Q`` and ``side="right"`` it gives the selected basis
    ``Q_r = Q[:, idx]`` (``d × r``)."""
    idx = idx.to(torch.int64)
    if side_right(s.shape[-2], s.shape[-1], side):
        return s.gather(-1, idx.unsqueeze(-2).expand(*s.shape[:-1], idx.shape[-1]))
    return s.gather(-2, idx.unsqueeze(-1).expand(*s.shape[:-2], idx.shape[-1], s.shape[-1]))


@take.reference
def _(ctx, s, idx, side):
    cols = [int(k) for k in idx]
    return s[:, cols] if side_right(s.shape[0], s.shape[1], side) else s[cols, :]
