"""Properties of the subspace specs — Conda (``conda.opt``; arXiv 2509.24218, jie040109/Conda
``conda_torch/conda.py``), FRUGAL block and FRUGAL-SVD (``frugal.opt``; arXiv 2411.07837,
fzmushko/FRUGAL ``frugal/proj_optimizer_templates.py``) — and of ``svd_basis``, beyond the contract
(tests/contract: agreement with the oracles of ``tests/reference/subspace.py``, resume, training,
compile).

Sign of singular vectors: Conda's update is invariant to flipping a basis vector (it flips a
column of g' and m'; v only sees squares; the back-projection flips it back), FRUGAL-SVD's too
(up(AdamDir(down G)) with AdamDir odd per entry, and the residual projector V_rV_rᵀ), so the spec
(largest entry made positive) and the reference (LAPACK's signs) may pick different signs; a
test below checks the invariance on the reference itself.
"""
from __future__ import annotations

import pytest
import torch

import optloom
import tests.reference as R
from tests.contract.table import CONDA, T_REFRESH as T
from tests.spec_harness import SPECS, one_thread, params  # noqa: F401 (one_thread: autouse)


# ---- svd_basis ------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(12, 8), (8, 12), (10, 10)])
def test_svd_basis_is_the_std_side_singular_basis(shape):
    """Q's columns are orthonormal singular vectors on the std side (right iff rows ≥ cols) in
    descending σ order: XQ = UΣ (right) or QᵀX = ΣVᵀ (left), checked against an float64 SVD up
    to the sign of each vector; density zeroes the columns past max(1, round(density·min))."""
    from optloom.primitives import Ctx, lookup
    prim = lookup("svd_basis")
    X = torch.randn(*shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    U, S, Vh = torch.linalg.svd(X, full_matrices=False)
    right = shape[0] >= shape[1]
    ctx = Ctx(layout="single", param=X, step=1, states={})
    Q = prim.fn(ctx, X, rank=0, side="std", density=1.0)
    ref = Vh.T if right else U
    assert Q.shape == ref.shape
    assert torch.allclose(Q.abs(), ref.abs(), atol=1e-10)  # same vectors up to sign
    assert torch.allclose(Q.T @ Q, torch.eye(Q.shape[1], dtype=Q.dtype), atol=1e-12)
    assert torch.all(Q.gather(0, Q.abs().argmax(0, keepdim=True)) > 0)  # the sign convention
    Qd = prim.fn(ctx, X, rank=0, side="std", density=0.25)
    k = max(1, round(0.25 * min(shape)))
    assert torch.equal(Qd[:, :k], Q[:, :k]) and torch.all(Qd[:, k:] == 0)
    Qr = prim.fn(ctx, X, rank=3, side="std", density=1.0)
    assert torch.equal(Qr, Q[:, :3])


def test_conda_update_invariant_to_basis_signs():
    """The algebra the spec relies on, shown on the reference: flipping the signs of every other
    basis vector of Conda's stored P after each step (so every step, refresh or not, uses a
    differently signed basis) leaves the trajectory unchanged to float64 roundoff."""
    init = params(0)
    mats = [(k, init[k].double()) for k in ("tall", "wide", "square")]
    h = dict(lr=0.01, betas=(0.9, 0.99), weight_decay=0.1, update_proj_gap=T)
    a, b = R.Conda(mats, **h), R.Conda(mats, **h)
    gen = torch.Generator().manual_seed(9)
    for _ in range(11):  # odd: the last stored P is flipped
        g = {k: torch.randn(v.shape, generator=gen, dtype=torch.float64) for k, v in mats}
        a.step(g)
        b.step(g)
        for k, v in mats:  # right basis (rows ≥ cols): P = Vᵀ, vectors are rows; left: P = U, columns
            P = b.state[k]["P"]
            s = torch.tensor([(-1.0) ** i for i in range(P.shape[0])], dtype=P.dtype)
            b.state[k]["P"] = P * s[:, None] if v.shape[0] >= v.shape[1] else P * s[None, :]
    for k, _ in mats:
        assert torch.allclose(a.params[k], b.params[k], rtol=0, atol=1e-12), k
        assert not torch.equal(a.state[k]["P"], b.state[k]["P"])


# ---- Conda ----------------------------------------------------------------------------------

def test_conda_v_is_not_rerotated():
    """Across a refresh the spec keeps v as it was (in the old basis): one step after the refresh
    at step T+1, v = β₂·v_T + (1−β₂)·g'² with g' in the *new* basis."""
    w = torch.nn.Parameter(torch.randn(6, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64))
    opt = optloom.optimizer(f"{SPECS}/conda.opt", [("w", w)], **CONDA)
    gen = torch.Generator().manual_seed(3)
    for t in range(1, T + 2):
        g = torch.randn(6, 4, generator=gen, dtype=torch.float64)
        before = {k: v.clone() for k, v in opt.state[w].items()}
        w.grad = g
        opt.step()
    st = opt.state[w]
    q = st["q"]
    assert not torch.allclose(q.abs(), before["q"].abs())  # the basis was refreshed at step T+1
    b2 = CONDA["betas"][1]
    assert torch.allclose(st["v"], b2 * before["v"] + (1 - b2) * (g @ q) ** 2, rtol=1e-12, atol=0)


# ---- FRUGAL block ---------------------------------------------------------------------------

def test_frugal_block_order_is_the_reference_descending_window():
    """The spec's sample_layers(density, "cyclic") active sets, read back from the optimizer, are
    the reference's cyclic_descending sets over the projectable tensors, draw after draw."""
    names = [f"l{i}.weight" for i in range(5)]
    ps = {n: torch.nn.Parameter(torch.zeros(3, 2)) for n in names}
    h = dict(lr=1.0, betas=(0.5, 0.5), eps=1e-8, density=0.4, update_gap=2, inactive_lr_scale=0.0)
    opt = optloom.optimizer(f"{SPECS}/frugal.opt", list(ps.items()), **h)
    ref = R.FRUGALBlock([(n, torch.zeros(3, 2)) for n in names], density=0.4, update_gap=2)
    for t in range(1, 13):
        for p in ps.values():
            p.grad = torch.ones(3, 2)
        before = {n: p.detach().clone() for n, p in ps.items()}
        opt.step()
        moved = {n for n, p in ps.items() if not torch.equal(p.detach(), before[n])}  # inactive scale 0
        want = ref.cyclic_descending((t - 1) // 2, names)
        assert moved == want, (t, moved, want)
