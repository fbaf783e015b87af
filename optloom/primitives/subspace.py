"""Subspaces and rotations: seeded range sketches, project/lift, ARO's rotated frame
(algorithms.md §2, §5, §17.7).

Randomness is *counter-based*: every random number is a pure function of
``(seed, step, parameter id, index)`` computed with int64 tensor ops (murmur3's 32-bit finalizer
over a Weyl sequence). No ``torch.Generator``: the sketch traces into torch.fx / torch.compile
graphs, needs no RNG state in ``state_dict``, and a run resumed at the same step count with the
same parameter ids draws the same columns.
"""
from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
from pydantic import Field

from .context import Ctx
from .normalizers import base_map_fn
from .polar import compute_dtype, householder_q
from .registry import Frame, State, Tensor, primitive

M32 = 0xFFFFFFFF
GOLDEN = 0x9E3779B9
Side = Literal["auto", "std", "left", "right"]
Rank = Annotated[int, Field(ge=1, le=65536)]
Seed = Annotated[int, Field(ge=0, le=2**31 - 1)]
Iters = Annotated[int, Field(ge=1, le=100)]


# ---- counter-based hashing (tensor version and the plain-int version it must equal) --------------

def _mul32(x: Tensor, c: int) -> Tensor:
    """``(x·c) mod 2³²`` for ``0 ≤ x < 2³²`` without int64 overflow (16-bit split)."""
    lo = (x & 0xFFFF) * c
    hi = (((x >> 16) * c) & 0xFFFF) << 16
    return (lo + hi) & M32


def _fmix(h: Tensor) -> Tensor:
    h = h ^ (h >> 16)
    h = _mul32(h, 0x85EBCA6B)
    h = h ^ (h >> 13)
    h = _mul32(h, 0xC2B2AE35)
    return h ^ (h >> 16)


def hash_key(seed: int, step, ids) -> Tensor:
    """Per-parameter 32-bit key from ``(seed, step, id)``: shape of ``ids`` (``(B,)`` or ``()``)."""
    ids = torch.as_tensor(ids, dtype=torch.int64)
    step = torch.as_tensor(step).to(torch.int64)
    h = _fmix(torch.full_like(ids, (seed ^ GOLDEN) & M32))
    h = _fmix(h ^ (ids & M32))
    return _fmix(h ^ (step & M32))


def hash_stream(key: Tensor, count: int) -> Tensor:
    """``count`` 32-bit values per key: ``fmix(key + GOLDEN·j)``, shape ``(*key.shape, count)``."""
    j = torch.arange(count, dtype=torch.int64, device=key.device)
    return _fmix((key.unsqueeze(-1) + _mul32(j, GOLDEN)) & M32)


def py_hash_stream(seed: int, step: int, pid: int, count: int) -> list[int]:
    """The same stream in plain Python integers (used by the references)."""
    def fmix(h: int) -> int:
        h ^= h >> 16
        h = (h * 0x85EBCA6B) & M32
        h ^= h >> 13
        h = (h * 0xC2B2AE35) & M32
        return h ^ (h >> 16)
    key = fmix(fmix(fmix((seed ^ GOLDEN) & M32) ^ (pid & M32)) ^ (int(step) & M32))
    return [fmix((key + GOLDEN * j) & M32) for j in range(count)]


def _uniform(bits: Tensor, dtype: torch.dtype) -> Tensor:
    """Uniform in (0, 1) from the top 24 bits."""
    return ((bits >> 8).to(dtype) + 0.5) / float(1 << 24)


# ---- the side of a matrix a basis acts on ------------------------------------------------------

def side_right(rows: int, cols: int, side: str) -> bool:
    """Whether ``side`` is the right side (``X q``, a basis of ``Rⁿ``) for a ``rows × cols`` matrix
    ``X``. ``"right"`` / ``"left"`` force it; the automatic rules differ on square ``X`` only:
    ``"auto"`` is right iff ``rows > cols`` (the wide orientation: left when square) and ``"std"``
    right iff ``rows ≥ cols`` (GaLore's std side: right when square). The one side rule of the
    subspace family (``project``, ``lift``, ``range_sketch``, ``dct_basis``, ``dct_select``, ``take``,
    ``svd_basis``)."""
    if side == "auto":
        return rows > cols
    if side == "std":
        return rows >= cols
    if side in ("left", "right"):
        return side == "right"
    raise ValueError(f"unknown side {side!r} (auto | std | left | right)")


def _oriented(x: Tensor, side: str) -> tuple[Tensor, bool]:
    """The matrix whose *column space* is sketched, and whether it is ``xᵀ``."""
    right = side_right(x.shape[-2], x.shape[-1], side)
    return (x.transpose(-2, -1) if right else x), right


@primitive(family="subspace", elementwise=False, needs_matrix=True,
           examples=("range_sketch(3)", "range_sketch(2, seed = 7)", "range_sketch(3, \"gaussian\")",
                     "range_sketch(2, \"gaussian\", power_iters = 1, side = \"right\")",
                     "range_sketch(4, side = \"left\")", "range_sketch(3, side = \"std\")"))
def range_sketch(ctx: Ctx, x: Tensor, rank: Rank, method: Literal["col_select", "gaussian"] = "col_select",
                 seed: Seed = 0, power_iters: Annotated[int, Field(ge=0, le=10)] = 0,
                 side: Side = "auto") -> Tensor:
    """Orthonormal basis ``Q`` of a random ``r``-dim subspace of a range (Low-rank Muon, §5.1).

    ``side="auto"`` sketches the wide orientation (``range(X) ⊂ Rᵐ`` if ``m ≤ n``, else
    ``range(Xᵀ) ⊂ Rⁿ``), ``"std"`` the same except that a square ``X`` sketches ``range(Xᵀ)``,
    ``"left"``/``"right"`` force one (``side_right``); ``Q`` is ``(d, r)``, ``d`` that side's
    dimension, ``r = min(rank, m, n)``. ``col_select`` (the paper's code): ``r`` distinct random
    columns ``Y = X[:, idx]``; ``gaussian``: ``Y = (XXᵀ)^q X Ω`` with ``Ω`` standard normal
    (``q = power_iters``, re-orthonormalized between steps). ``Q = qr(Y).Q`` in float32+, signs
    with ``diag(R) ≥ 0``. Randomness is a pure function of ``(seed, step, parameter id)``.
    """
    X, _ = _oriented(x, side)
    X = X.to(compute_dtype(x))
    n = X.shape[-1]
    r = min(rank, x.shape[-2], x.shape[-1])
    key = hash_key(seed, ctx.step, ctx.ids).to(X.device)
    if method == "col_select":
        idx = torch.argsort(hash_stream(key, n), dim=-1, stable=True)[..., :r]
        Y = X.gather(-1, idx.unsqueeze(-2).expand(*X.shape[:-1], r))
    else:
        bits = hash_stream(key, 2 * n * r)
        u1, u2 = _uniform(bits[..., 0::2], X.dtype), _uniform(bits[..., 1::2], X.dtype)
        omega = (torch.sqrt(-2 * torch.log(u1)) * torch.cos(2 * math.pi * u2)).reshape(*key.shape, n, r)
        Y = X @ omega
        for _ in range(power_iters):
            Y = X @ (X.transpose(-2, -1) @ householder_q(Y))
    return householder_q(Y)


@range_sketch.reference
def _(ctx, x, rank, method, seed, power_iters, side):
    X = x.T if side_right(x.shape[0], x.shape[1], side) else x
    d, n = X.shape
    r = min(rank, *x.shape)
    qr = lambda Y: householder_q(Y)  # noqa: E731  (QR itself is checked by qr_q's own test)
    if method == "col_select":
        keys = py_hash_stream(seed, ctx.step, ctx.ids, n)
        idx = sorted(range(n), key=lambda j: (keys[j], j))[:r]
        return qr(X[:, idx])
    bits = py_hash_stream(seed, ctx.step, ctx.ids, 2 * n * r)
    u = [((b >> 8) + 0.5) / 2 ** 24 for b in bits]
    omega = torch.tensor([math.sqrt(-2 * math.log(u[2 * i])) * math.cos(2 * math.pi * u[2 * i + 1])
                          for i in range(n * r)], dtype=X.dtype).reshape(n, r)
    Y = X @ omega
    for _ in range(power_iters):
        Y = X @ (X.T @ qr(Y))
    return qr(Y)


@primitive(family="subspace", elementwise=False, needs_matrix=True,
           examples=("project(dct_basis(grad))", "project(dct_basis(grad), \"std\")",
                     "project(dct_basis(grad, \"left\"), side = \"left\")",
                     "project(range_sketch(grad, 2, side = \"right\"), \"right\")"))
def project(ctx: Ctx, x: Tensor, q: Tensor, side: Side = "auto") -> Tensor:
    """Coordinates of ``X`` (``m × n``) in the orthonormal columns of ``q`` on one side:
    ``X q`` (right: ``q`` is ``n × k``, the result ``m × k``) or ``qᵀ X`` (left: ``q`` is ``m × k``,
    the result ``k × n``); ``lift`` maps them back.

    ``side``: ``"right"`` / ``"left"`` force one; the two automatic rules differ on square matrices
    only:

    * ``"auto"``: right iff ``m > n`` (the wide orientation, as ``range_sketch``): ``X q`` for tall
      ``X``, ``qᵀ X`` for wide and square ones;
    * ``"std"``: right iff ``m ≥ n`` (GaLore's std side, as ``dct_basis`` and ``svd_basis``):
      ``X q`` for tall and square ``X``, ``qᵀ X`` for wide ones.

    Give it the side its basis was built for: ``project(A, dct_basis(A), "std")`` is the DCT
    coordinates ``S = A Q`` (or ``Qᵀ A``); with ``Q_r = take(Q, idx, "right")`` it is the low-rank
    ``a = S[:, idx]`` (or ``S[idx, :]``) at ``k/d`` of the cost."""
    q = q.to(x.dtype)
    if side_right(x.shape[-2], x.shape[-1], side):
        return x @ q
    return q.transpose(-2, -1) @ x


@project.reference
def _(ctx, x, q, side):
    return x @ q if side_right(x.shape[0], x.shape[1], side) else q.T @ x


def _lift_right(y: Tensor, q: Tensor, side: str) -> bool:
    """``lift``'s side from ``Y``'s and ``q``'s shapes (the rule is derived in ``lift``'s docstring)."""
    if side in ("left", "right"):
        return side == "right"
    return y.shape[-1] == q.shape[-1] and side_right(y.shape[-2], q.shape[-2], side)


@primitive(family="subspace", elementwise=False, needs_matrix=True,
           examples=("lift(dct_basis(grad))", "lift(dct_basis(grad), \"std\")",
                     "lift(dct_basis(grad, \"right\"), side = \"right\")",
                     "lift(dct_basis(grad, \"left\"), \"left\")"))
def lift(ctx: Ctx, y: Tensor, q: Tensor, side: Side = "auto") -> Tensor:
    """Back from ``project``'s coordinates: ``Y qᵀ`` (right) or ``q Y`` (left), the adjoint map (the
    inverse when ``q`` is a full orthogonal basis; with ``k < d`` columns ``lift(project(X))`` is
    the orthogonal projection ``X q qᵀ`` / ``q qᵀ X``). Give it ``project``'s ``side``:
    ``"left"`` / ``"right"`` force one; ``"auto"`` and ``"std"`` (which ``lift`` cannot apply to
    ``X``: it sees only ``Y``) recover from the shapes the side ``project`` chose under that rule.
    ``Y`` is ``m × k`` on the right, ``k × n`` on the left, so the side is right iff ``Y`` has
    ``q``'s ``k`` columns and ``Y.rows > q.rows`` (``"auto"``) / ``Y.rows ≥ q.rows`` (``"std"``) —
    the rule applied to the ``Y.rows × q.rows`` matrix ``X`` that the right side implies. This is
    exact for every ``X`` when ``k ≤ d`` (an orthonormal ``q``): on the left ``Y`` is ``k × n`` with
    ``k ≤ m ≤ n``, so it has ``k`` columns only for a square ``X`` with a full basis, which is left
    under ``"auto"`` and never left under ``"std"``."""
    q = q.to(y.dtype)
    if _lift_right(y, q, side):
        return y @ q.transpose(-2, -1)
    return q @ y


@lift.reference
def _(ctx, y, q, side):
    return y @ q.T if _lift_right(y, q, side) else q @ y


# ---- ARO's rotated frame (§2) -------------------------------------------------------------------

def wide(x: Tensor) -> Tensor:
    """The wide orientation of the last two dims (transpose tall matrices)."""
    return x.transpose(-2, -1) if x.shape[-2] > x.shape[-1] else x


def aro_rotation(M: Tensor, R_prev: Tensor, policy: str, iters: int = 5) -> Tensor:
    """One step of ARO's norm-informed rotation policy on *wide* matrices (last two dims):
    ``R = qr_q(M f(R_prevᵀ M)ᵀ)`` with ``f`` the base map (§2.2 steps 2–3)."""
    F = base_map_fn(R_prev.transpose(-2, -1) @ M, policy, iters)
    return householder_q(M @ F.transpose(-2, -1))


def frame_in(x: Tensor, R: Tensor) -> Tensor:
    """``x`` in the rotated frame: ``Rᵀ x`` for wide/square members, ``x R`` for tall ones."""
    R = R.to(x.dtype)
    return (R.transpose(-2, -1) @ x) if x.shape[-2] <= x.shape[-1] else x @ R


def frame_back(y: Tensor, R: Tensor) -> Tensor:
    """Inverse of :func:`frame_in`: ``R y`` for wide/square members, ``y Rᵀ`` for tall ones."""
    R = R.to(y.dtype)
    return (R @ y) if y.shape[-2] <= y.shape[-1] else y @ R.transpose(-2, -1)


def _eye_like_wide(ctx, x: Tensor) -> Tensor:
    k = min(x.shape[-2], x.shape[-1])
    eye = torch.eye(k, dtype=torch.float32, device=x.device)
    return eye.expand(*x.shape[:-2], k, k).clone()


@primitive(family="subspace", elementwise=False, needs_matrix=True,
           state=(State("rotation", init=_eye_like_wide, dtype="float32",
                        doc="ARO's rotation R (min(m,n)², float32, identity at start)"),),
           examples=("rotate", "rotate(\"row_normalize\")", "rotate(\"sign\")", "rotate(\"sinkhorn\", 3)"))
def rotate(ctx: Ctx, x: Tensor, policy: Literal["sinkhorn", "row_normalize", "sign"] = "sinkhorn",
           iters: Iters = 5) -> Tensor:
    """Enter ARO's adaptively rotated frame (arXiv 2602.09006; algorithms.md §2).

    One step of the norm-informed rotation policy, in the wide orientation (``M`` is the input,
    transposed when tall — this keeps ``C`` full rank and avoids the tall-matrix hazard of §2.2):
    ``R_t = qr_q(M f(R_{t−1}ᵀ M)ᵀ)`` with the base map ``f`` = ``policy`` (``sinkhorn(iters)``,
    ``row_normalize`` or ``sign``). ``R`` (``min(m,n)²``, float32, identity at start) is this
    stage's state. Returns the input in the rotated frame: ``R_tᵀ x`` (wide/square) or ``x R_t``
    (tall). The rest of the pipeline runs in that frame and its result is rotated back
    (``R_t y`` / ``y R_tᵀ``) before it reaches the parameter — that half is done by the compiler
    (``subspace.frame_back``), so ``grad |> ema(0.95) |> rotate("sinkhorn") |> sinkhorn(orient =
    "wide")`` is ARO's ``U = R_t f(R_tᵀ M)``. Base maps inside the frame should use
    ``orient = "wide"`` so that tall matrices see ARO exactly as their transposes would.
    """
    cd = compute_dtype(x)
    R_prev = ctx.state("rotation", x).to(cd)
    R = aro_rotation(wide(x).to(cd), R_prev, policy, iters).to(torch.float32)
    ctx.set_state("rotation", R)
    return frame_in(x, R)


@rotate.reference
def _(ctx, x, policy, iters):
    M = x.T if x.shape[0] > x.shape[1] else x
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
    return Rd.T @ x if x.shape[0] <= x.shape[1] else x @ Rd


# the compiler maps the rest of the pipeline back out of the rotated frame (registry.Frame)
rotate.frame = Frame(state="rotation", enter=frame_in, leave=frame_back)
