"""ARO's adaptively rotated frame (Adaptively Rotated Optimization, arXiv 2602.09006; official
code microsoft/dion, branch ``dev/aro``, ``dion/aro.py``).

``rotate`` opens a frame (:class:`.registry.Frame`): its output is its input in a rotated basis,
the rest of the pipeline runs there, and the compiler rotates the result back with
:func:`frame_back` before the first parameter-side stage.
"""
from __future__ import annotations

from typing import Literal

import torch

from .. import shapes
from .context import Ctx
from .linalg import compute_dtype, householder_q, is_tall, wide
from .normalizers import base_map_fn
from .registry import Frame, Iters, State, Tensor, primitive


def aro_rotation(M: Tensor, R_prev: Tensor, policy: str, iters: int = 5) -> Tensor:
    """One step of ARO's norm-informed rotation policy on *wide* matrices (last two dims):
    ``R = qr_q(M f(R_prevᵀ M)ᵀ)`` with ``f`` the base map."""
    F = base_map_fn(R_prev.transpose(-2, -1) @ M, policy, iters)
    return householder_q(M @ F.transpose(-2, -1))


def frame_in(x: Tensor, R: Tensor) -> Tensor:
    """``x`` in the rotated frame: ``Rᵀ x`` for wide/square members, ``x R`` for tall ones."""
    R = R.to(x.dtype)
    return x @ R if is_tall(x) else R.transpose(-2, -1) @ x


def frame_back(y: Tensor, R: Tensor) -> Tensor:
    """Inverse of :func:`frame_in`: ``R y`` for wide/square members, ``y Rᵀ`` for tall ones."""
    R = R.to(y.dtype)
    return y @ R.transpose(-2, -1) if is_tall(y) else R @ y


def _eye_like_wide(ctx, x: Tensor) -> Tensor:
    k = min(x.shape[-2], x.shape[-1])
    eye = torch.eye(k, dtype=torch.float32, device=x.device)
    return eye.expand(*x.shape[:-2], k, k).clone()


@primitive(family="rotation", elementwise=False, needs_matrix=True, shape=shapes.matrix,
           state=(State("rotation", init=_eye_like_wide, dtype="float32",
                        doc="ARO's rotation R (min(m,n)², float32, identity at start)"),),
           examples=("rotate", "rotate(\"row_normalize\")", "rotate(\"sign\")", "rotate(\"sinkhorn\", 3)"))
def rotate(ctx: Ctx, x: Tensor, policy: Literal["sinkhorn", "row_normalize", "sign"] = "sinkhorn",
           iters: Iters = 5) -> Tensor:
    """Enter ARO's adaptively rotated frame (arXiv 2602.09006; microsoft/dion ``dev/aro``
    ``dion/aro.py``).

    One step of the norm-informed rotation policy, in the wide orientation (``M`` is the input,
    transposed when tall): ``R_t = qr_q(M f(R_{t−1}ᵀ M)ᵀ)`` with the base map ``f`` = ``policy``
    (``sinkhorn(iters)``, ``row_normalize`` or ``sign``). ``R`` (``min(m,n)²``, float32, identity
    at start) is this stage's state. Returns the input in the rotated frame: ``R_tᵀ x``
    (wide/square) or ``x R_t`` (tall). The rest of the pipeline runs in that frame and its result
    is rotated back (``R_t y`` / ``y R_tᵀ``) before it reaches the parameter — that half is done by
    the compiler (:func:`frame_back`), so ``grad |> ema(0.95) |> rotate("sinkhorn") |>
    sinkhorn(orient = "wide")`` is ARO's ``U = R_t f(R_tᵀ M)``. Base maps inside the frame should
    use ``orient = "wide"`` so that tall matrices see ARO exactly as their transposes would.
    The official code rotates the row side of every matrix; on a tall one the last ``m − n``
    columns of ``Q`` are then arbitrary (set by rounding) and row-normalizing base maps amplify
    them, so this primitive rotates the wide orientation instead (docs/derivations.md, "ARO on
    tall matrices").
    """
    cd = compute_dtype(x)
    R_prev = ctx.state("rotation", x).to(cd)
    R = aro_rotation(wide(x).to(cd), R_prev, policy, iters).to(torch.float32)
    ctx.set_state("rotation", R)
    return frame_in(x, R)


@rotate.reference
def _(ctx, x, policy, iters):
    M = wide(x)
    R_prev = ctx.state("rotation", x).to(x.dtype)
    X1 = R_prev.T @ M
    if policy == "sign":
        F = torch.sign(X1)
    else:
        F = X1
        for _ in range(iters if policy == "sinkhorn" else 1):
            F = F / F.norm(dim=1, keepdim=True).clamp(min=1e-8) * F.shape[1] ** 0.5
            if policy == "sinkhorn":
                F = F / F.norm(dim=0, keepdim=True).clamp(min=1e-8) * F.shape[0] ** 0.5
    R = householder_q(M @ F.T).to(torch.float32)
    ctx.set_state("rotation", R)
    Rd = R.to(x.dtype)
    return x @ Rd if is_tall(x) else Rd.T @ x


# the compiler maps the rest of the pipeline back out of the rotated frame (registry.Frame)
rotate.frame = Frame(state="rotation", enter=frame_in, leave=frame_back)
