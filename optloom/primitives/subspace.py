"""Subspaces of a matrix's row or column space: bases (random sketches, singular vectors, the
DCT), the selection of basis vectors, and the coordinates of a matrix in a basis and back.

A basis ``q`` with orthonormal columns acts on one side of an ``m × n`` matrix ``X``: the right
(``X q``, ``q`` spans part of ``Rⁿ``) or the left (``qᵀ X``, part of ``Rᵐ``). ``side`` picks it
with the one rule of :func:`.linalg.side_right`: ``"right"``/``"left"`` force it, ``"auto"`` is
right iff ``m > n`` (the wide orientation) and ``"std"`` right iff ``m ≥ n`` (GaLore's rule).
Give a basis and its uses the same side: ``let q = svd_basis(x, side = s)``, then
``project(y, q, s)`` and ``lift(z, q, s)``. Bases that cost a decomposition belong inside
``every(T, ...)``, which refreshes them every ``T`` steps and caches them.

The DCT basis (Modoranu et al., arXiv 2505.17967; IST-DASLab/ISTA-DASLab-Optimizers
``ista_daslab_optimizers/fft_low_rank/``) is fixed, and a subset of it is selected per step: with
``Q`` the orthogonal ``d × d`` DCT matrix of the std side, the coordinates are ``S = A Q`` (right,
``d = n``) or ``S = Qᵀ A`` (left, ``d = m``); ``let S = project(A, Q, "std")``,
``let idx = dct_select(S, r)``, ``take(S, idx)`` (= ``project(A, take(Q, idx, "right"), "std")``,
at ``r/d`` of the cost) and back with ``lift(y, take(Q, idx, "right"), "std")``. Indices are
int64 tensors (``(r,)`` per parameter) in descending order of score, so the ``k``-th low-rank
coordinate belongs to the basis vector ``idx[k]``: a state kept in these coordinates (DCT-AdamW's
Adam moments) is ordered.
"""
from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import torch
from pydantic import Field

from .context import Ctx
from .linalg import Side, compute_dtype, householder_q, side_right
from .registry import Fraction, Tensor, primitive, sample_normal
from .streams import Seed, hash_key, hash_stream, py_hash_stream, uniform

Rank = Annotated[int, Field(ge=1, le=65536)]
BasisRank = Annotated[int, Field(ge=0, le=65536)]
BasisSide = Literal["std", "left", "right"]
EllNorm = Annotated[int, Field(ge=1, le=16)]


def _side_dim(shape: tuple[int, ...], side: str) -> int:
    """The dimension of the space a basis on ``side`` of an ``m × n`` matrix spans."""
    return shape[-1] if side_right(shape[-2], shape[-1], side) else shape[-2]


# ---- random range sketches -----------------------------------------------------------------------

@primitive(family="subspace", elementwise=False, needs_matrix=True,
           examples=("range_sketch(3)", "range_sketch(2, seed = 7)", "range_sketch(3, \"gaussian\")",
                     "range_sketch(2, \"gaussian\", power_iters = 1, side = \"right\")",
                     "range_sketch(4, side = \"left\")", "range_sketch(3, side = \"std\")"))
def range_sketch(ctx: Ctx, x: Tensor, rank: Rank, method: Literal["col_select", "gaussian"] = "col_select",
                 seed: Seed = 0, power_iters: Annotated[int, Field(ge=0, le=10)] = 0,
                 side: Side = "auto") -> Tensor:
    """Orthonormal basis ``Q`` of a random ``r``-dim subspace of a range (Low-rank Muon, He, Deng &
    Lu, arXiv 2509.11983; dengzhanwang/Low-rank-Muon ``train_gpt_*.py``).

    ``side="auto"`` sketches the wide orientation (``range(X) ⊂ Rᵐ`` if ``m ≤ n``, else
    ``range(Xᵀ) ⊂ Rⁿ``), ``"std"`` the same except that a square ``X`` sketches ``range(Xᵀ)``,
    ``"left"``/``"right"`` force one (``side_right``); ``Q`` is ``(d, r)``, ``d`` that side's
    dimension, ``r = min(rank, m, n)``. ``col_select`` (the paper's code): ``r`` distinct random
    columns ``Y = X[:, idx]``; ``gaussian`` (details ours: docs/derivations.md#gaussian-range-sketch):
    ``Y = (XXᵀ)^q X Ω`` with ``Ω`` standard normal (``q = power_iters``, re-orthonormalized
    between steps). ``Q = qr(Y).Q`` in float32+, signs with ``diag(R) ≥ 0``. Randomness is a pure
    function of ``(seed, step, parameter id)`` (:mod:`.streams`).
    """
    X = x.transpose(-2, -1) if side_right(x.shape[-2], x.shape[-1], side) else x
    X = X.to(compute_dtype(x))
    n = X.shape[-1]
    r = min(rank, x.shape[-2], x.shape[-1])
    key = hash_key(seed, ctx.step, ctx.ids).to(X.device)
    if method == "col_select":
        idx = torch.argsort(hash_stream(key, n), dim=-1, stable=True)[..., :r]
        Y = X.gather(-1, idx.unsqueeze(-2).expand(*X.shape[:-1], r))
    else:
        bits = hash_stream(key, 2 * n * r)
        u1, u2 = uniform(bits[..., 0::2], X.dtype), uniform(bits[..., 1::2], X.dtype)
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


# ---- singular vectors ----------------------------------------------------------------------------

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
def svd_basis(ctx: Ctx, x: Tensor, rank: BasisRank = 0, side: BasisSide = "std", density: Fraction = 1.0) -> Tensor:
    """Orthonormal singular vectors of ``x = UΣVᵀ`` (thin SVD, float32+, descending ``σ``) on one
    side, as the columns of ``Q``: ``V[:, :r]`` (``n × r``, right) or ``U[:, :r]`` (``m × r``, left).
    Conda's rotation (arXiv 2509.24218; jie040109/Conda ``conda_torch/projector.py``) and FRUGAL's
    GaLore/SVD projector (arXiv 2411.07837; fzmushko/FRUGAL ``frugal/galore_projector.py``).

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


# ---- the DCT basis and dynamic column selection --------------------------------------------------

def dct_matrix(d: int, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> Tensor:
    """``Q_ij = sqrt(2/d)·cos(π·i·(2j+1)/(2d))``, row 0 times ``sqrt(1/2)`` (orthogonal; computed in
    float64, returned in ``dtype``), as ``dct3_matrix`` of ``ista_daslab_optimizers/utils/dct.py``."""
    i = torch.arange(d, dtype=torch.float64, device=device).unsqueeze(1)
    j = torch.arange(d, dtype=torch.float64, device=device).unsqueeze(0)
    scale = torch.where(i == 0, torch.full_like(i, math.sqrt(1.0 / d)), torch.full_like(i, math.sqrt(2.0 / d)))
    return (scale * torch.cos((math.pi / (2 * d)) * i * (2 * j + 1))).to(dtype)


@primitive(family="subspace", elementwise=False, needs_matrix=True,
           examples=("dct_basis", "dct_basis(side = \"left\")", "dct_basis(side = \"right\")",
                     "dct_basis(side = \"auto\")"))
def dct_basis(ctx: Ctx, x: Tensor, side: Side = "std") -> Tensor:
    """The ``d × d`` orthogonal DCT matrix for ``x``'s side (``d = n`` on the right — ``rows ≥ cols``
    for ``side="std"``, ``rows > cols`` for ``"auto"`` — else ``d = m``):
    ``Q_ij = sqrt(2/d)·cos(π·i(2j+1)/(2d))``, row 0 times ``sqrt(1/2)``. It reads only ``x``'s shape
    (the paper's fixed basis, the same for every layer of that size; ``S = A Q`` applies DCT-III
    to ``A``'s rows). Computed in float64, returned in ``x``'s dtype."""
    d = _side_dim(x.shape, side)
    q = dct_matrix(d, x.dtype, x.device)
    return q.expand(*x.shape[:-2], d, d)


@dct_basis.reference
def _(ctx, x, side):
    d = _side_dim(x.shape, side)
    rows = []
    for i in range(d):
        c = math.sqrt(1.0 / d) if i == 0 else math.sqrt(2.0 / d)
        rows.append([c * math.cos(math.pi * i * (2 * j + 1) / (2 * d)) for j in range(d)])
    return torch.tensor(rows, dtype=x.dtype)


@primitive(family="subspace", elementwise=False, needs_matrix=True,
           examples=("dct_select(2)", "dct_select(3, ell_norm = 2)", "dct_select(2, side = \"left\")",
                     "dct_select(100)", "dct_select(2, side = \"auto\")"))
def dct_select(ctx: Ctx, s: Tensor, rank: Rank, ell_norm: EllNorm = 1, side: Side = "std") -> Tensor:
    """Dynamic column selection (arXiv 2505.17967; ``fft_low_rank/dct_adamw.py``): the indices of
    the ``r = min(rank, d)`` columns (right side) or rows (left side) of ``s`` with the largest
    ℓ_p norms (``p = ell_norm``; the paper's default 1), in descending order of norm, as an int64
    tensor of ``r`` entries. ``s`` is normally ``project(A, Q, "std")``; ties (probability 0 for
    continuous data) are broken by ``topk``."""
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
           examples=("argsort", "argsort(descending = false)", "col_sum |> argsort", "row_sum |> argsort"))
def argsort(ctx: Ctx, x: Tensor, descending: bool = True) -> Tensor:
    """The order of each matrix's entries, read row-major (a ``1 × n`` row or ``m × 1`` column
    is its vector): the int64 indices ``idx`` (``(k,)`` per matrix, ``k = m·n``) with
    ``x[idx[0]] ≥ x[idx[1]] ≥ …`` (``descending = false``: ``≤``), ties kept in index order
    (a stable sort). The indices ``take`` uses: SOAP's refresh (arXiv 2409.11321; nikhilvyas/SOAP
    ``soap.py``, ``get_orthogonal_matrix_QR``) orders the basis by its estimated eigenvalues,
    ``let idx = col_sum(Q * (L @ Q)) |> argsort`` (``diag(Qᵀ L Q)`` as a row), then
    ``take(L @ Q, idx, "right")``. Example: ``[[0.5, 2, −1]]`` → ``[1, 0, 2]``."""
    flat = x.reshape(*x.shape[:-2], x.shape[-2] * x.shape[-1])
    return torch.argsort(flat, dim=-1, descending=descending, stable=True)


@argsort.reference
def _(ctx, x, descending):
    vals = [float(v) for v in x.reshape(-1)]
    sign = -1.0 if descending else 1.0
    return torch.tensor(sorted(range(len(vals)), key=lambda k: (sign * vals[k], k)), dtype=torch.int64)


def _take_samples(gen: torch.Generator, shape: tuple[int, ...], args: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """Contract inputs of ``take``: a random matrix and two distinct random indices of its side."""
    return sample_normal(gen, shape), torch.randperm(_side_dim(shape, args["side"]), generator=gen)[:2]


@primitive(family="subspace", elementwise=False, needs_matrix=True, samples=_take_samples,
           examples=("take(dct_select(grad, 2))", "take(dct_select(grad, 2, side = \"auto\"), \"auto\")",
                     "take(dct_select(grad, 2, side = \"right\"), \"right\")",
                     "take(dct_select(grad, 2, side = \"left\"), \"left\")"))
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


# ---- coordinates in a basis and back -------------------------------------------------------------

def _project_samples(gen: torch.Generator, shape: tuple[int, ...], args: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """Contract inputs of ``project``: a random matrix and a random 2-column basis of its side."""
    return sample_normal(gen, shape), sample_normal(gen, (_side_dim(shape, args["side"]), 2))


@primitive(family="subspace", elementwise=False, needs_matrix=True, samples=_project_samples,
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
    """``lift``'s side from ``Y``'s and ``q``'s shapes (derived in docs/derivations.md#lift-side-rule)."""
    if side in ("left", "right"):
        return side == "right"
    return y.shape[-1] == q.shape[-1] and side_right(y.shape[-2], q.shape[-2], side)


def _lift_samples(gen: torch.Generator, shape: tuple[int, ...], args: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """Contract inputs of ``lift``: random coordinates ``Y`` of an ``m × n`` matrix in a random
    2-column basis ``q`` on the side ``project`` chooses for it."""
    m, n = shape[-2], shape[-1]
    if side_right(m, n, args["side"]):
        return sample_normal(gen, (m, 2)), sample_normal(gen, (n, 2))
    return sample_normal(gen, (2, n)), sample_normal(gen, (m, 2))


@primitive(family="subspace", elementwise=False, needs_matrix=True, samples=_lift_samples,
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
    under ``"auto"`` and never left under ``"std"`` (docs/derivations.md#lift-side-rule)."""
    q = q.to(y.dtype)
    if _lift_right(y, q, side):
        return y @ q.transpose(-2, -1)
    return q @ y


@lift.reference
def _(ctx, y, q, side):
    return y @ q.T if _lift_right(y, q, side) else q @ y
