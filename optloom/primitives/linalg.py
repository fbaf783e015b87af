"""Linear-algebra helpers shared by the matrix primitives: orientation, compute dtypes, the
Householder Q factor and the side of a matrix a basis acts on.

Matrices live in the last two dimensions, so every helper works alike on one parameter
``(m, n)`` and on a stacked bucket ``(B, m, n)``.
"""
from __future__ import annotations

from typing import Callable, Literal

import torch

Tensor = torch.Tensor
Side = Literal["auto", "std", "left", "right"]


# ---- orientation --------------------------------------------------------------------------------

def is_tall(x: Tensor) -> bool:
    """Whether the matrices in ``x``'s last two dims have more rows than columns."""
    return x.shape[-2] > x.shape[-1]


def wide(x: Tensor) -> Tensor:
    """The wide orientation (rows ≤ cols): tall matrices transposed, others as they are."""
    return x.mT if is_tall(x) else x


def oriented(fn: Callable[[Tensor], Tensor], x: Tensor, *, tall: bool = False) -> Tensor:
    """``fn`` run on the wide orientation of ``x`` (``tall=True``: the tall one, rows ≥ cols),
    its result transposed back: ``fn(xᵀ)ᵀ`` when ``x`` has the other orientation, else ``fn(x)``.
    Square matrices are never transposed."""
    flip = x.shape[-2] < x.shape[-1] if tall else is_tall(x)
    return fn(x.mT).mT if flip else fn(x)


# ---- compute dtypes -----------------------------------------------------------------------------

def compute_dtype(x: Tensor, least: torch.dtype = torch.float32) -> torch.dtype:
    """The dtype a decomposition of ``x`` (QR, SVD, eigh) runs in: float64 when ``x`` or ``least``
    is float64, else float32. LAPACK has no bf16/fp16 kernels, and a half-precision spectrum is
    too coarse to invert."""
    return torch.float64 if torch.float64 in (x.dtype, least) else torch.float32


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """A matmul iteration's dtype by name; ``"auto"``: bf16 where matmuls run natively in bf16
    (CUDA, CPUs with AVX512-BF16/AMX), float32 elsewhere (a CPU without bf16 units multiplies
    bf16 20–50× slower than fp32)."""
    if dtype != "auto":
        return getattr(torch, dtype)
    if device.type == "cpu":
        return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else torch.float32
    return torch.bfloat16


# ---- factorizations ------------------------------------------------------------------------------

def householder_q(x: Tensor) -> Tensor:
    """Q of the reduced Householder QR (LAPACK via ``torch.linalg.qr``) of the last two dims, in
    :func:`compute_dtype`, with column signs fixed so that ``diag(R) ≥ 0`` (the unique QR of a
    full-rank matrix: Q is then a function of x, whatever the LAPACK build)."""
    Q, R = torch.linalg.qr(x.to(compute_dtype(x)), mode="reduced")
    d = torch.diagonal(R, dim1=-2, dim2=-1)
    return Q * torch.where(d < 0, -1.0, 1.0).to(Q.dtype).unsqueeze(-2)


# ---- the side of a matrix a basis acts on -------------------------------------------------------

def side_right(rows: int, cols: int, side: str) -> bool:
    """Whether ``side`` is the right side (``X q``, a basis of ``Rⁿ``) for a ``rows × cols`` matrix
    ``X``. ``"right"`` / ``"left"`` force it; the automatic rules differ on square ``X`` only:
    ``"auto"`` is right iff ``rows > cols`` (the wide orientation: left when square) and ``"std"``
    right iff ``rows ≥ cols`` (GaLore's ``std`` rule, arXiv 2403.03507, as Conda's
    ``conda_torch/projector.py``: right when square). The one side rule of the subspace family."""
    if side == "auto":
        return rows > cols
    if side == "std":
        return rows >= cols
    if side in ("left", "right"):
        return side == "right"
    raise ValueError(f"unknown side {side!r} (auto | std | left | right)")
