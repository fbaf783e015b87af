"""The subspace specs — Conda (``conda.opt``), FRUGAL block (``frugal``) and FRUGAL with the
GaLore/SVD projector (``frugal_svd``, both in ``frugal.opt``) — against the independent float64
oracles of ``tests/reference/subspace.py`` (written from algorithms.md §9–§10, sharing no code with
optloom), plus the ``svd_basis`` primitive's properties, training and bitwise resume.

Agreement runs: tall (12×8), wide (8×12), square (10×10) and conv (4×3×3×3) weights plus a bias,
20 steps, fresh random gradients each step; the refresh period is T = 4, so bases are recomputed
(Conda, FRUGAL-SVD) and the active set moves with an Adam reset (FRUGAL) at steps 1, 5, 9, 13, 17,
and step 10 (the resume point) is mid-period. Displacements ``W_t − W_0`` are compared norm-wise,
relative to the reference's.

Tolerances (from the arithmetic, not from measured output):
* FP64 = 1e-9, for runs with float64 parameters: both sides compute in float64 (unit roundoff
  1.1e-16). The SVD-dependent paths move a singular vector by ≤ ‖E‖/gap (Wedin) for an input
  perturbation E ~ 1e-15·‖M‖; we assert the relative singular gaps at the refreshes are ≥ 1e-3,
  so a basis moves ≤ 1e-12, amplified ≤ 10× through u' = m'/sqrt(v) and summed over 20 steps:
  ≲ 2e-10 < 1e-9. This is the semantic check: it sees any wrong side, order, reset or scale.
* FP32 = 2e-5 for float32 runs: unit roundoff 6e-8, each step rounds the moments and the update
  at ~1e-7 relative, Adam's division can amplify one step's input error ~10×, 20 steps add up
  linearly. A float32 SVD, though, moves a singular vector by ~u/δ (δ the relative singular
  gap, ~1e-3 for these random matrices), and both Conda's first step (Adam is then a sign of g')
  and FRUGAL's residual sign are discontinuous: an entry of g' or of the residual smaller than
  the basis error may flip. So the float32 runs feed the reference the basis the spec cached
  (state ``q``, read after each refresh step) and assert that no entry is within 10× of its
  float32 rounding (~10·u·‖G‖); the bases themselves are checked by the float64 runs and by the
  svd_basis tests.
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
from tests.reference.subspace import svd_std_basis
from tests.spec_harness import (MATRICES, SHAPES, SPECS, STEPS, Composite, assert_close, check_bitwise_resume,
                                check_trains, displacement_errors, one_thread, params)  # noqa: F401 (one_thread: autouse)

FP64 = 1e-9
FP32 = 2e-5
U32 = 2.0**-24
T = 4  # refreshes at steps 1, 5, 9, 13, 17; step 10 mid-period


def run(spec: str, hyper: dict, side, name: str | None = None, dtype=torch.float32, steps: int = STEPS,
        seed: int = 0, on_step=None):
    """The spec (parameters in ``dtype``) next to the reference side on the same fresh gradients;
    ``on_step(t, opt, ps)`` runs after the spec's step t, before the reference's. Returns the
    displacement errors and the optimizer."""
    init = {k: v.to(dtype) for k, v in params(seed).items()}
    ps = {k: torch.nn.Parameter(v.clone()) for k, v in init.items()}
    path = spec if spec.endswith(".opt") else f"{SPECS}/{spec}.opt"
    opt = optloom.optimizer(path, list(ps.items()), name=name, **hyper)
    gen = torch.Generator().manual_seed(1000 + seed)
    for t in range(1, steps + 1):
        grads = {k: torch.randn(s, generator=gen).to(dtype) for k, s in SHAPES.items()}
        for k, p in ps.items():
            p.grad = grads[k].clone()
        opt.step()
        if on_step is not None:
            on_step(t, opt, ps)
        side.step({k: g.double() for k, g in grads.items()})
    return displacement_errors(ps, init, side.params), opt


def rel_gap(M: torch.Tensor) -> float:
    """Smallest gap between consecutive singular values, relative to the largest."""
    s = torch.linalg.svdvals(M.double())
    return float((s[:-1] - s[1:]).min() / s[0])


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


# ---- Conda ------------------------------------------------------------------------------------

CONDA = dict(lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1, update_proj_gap=T, scale=0.25)


class CondaWatch(R.Conda):
    """The reference, recording the conditioning of each refresh's SVD (from its own float64
    momentum) and, at step 1 (where Adam is sign-like), the smallest |g'| relative to ‖G‖_F.
    With ``given`` (name -> the spec's cached basis Q), a refresh uses that basis instead of its
    own SVD: P = Qᵀ (right, rows ≥ cols) or Q (left)."""

    def __init__(self, *a, given=None, **k):
        super().__init__(*a, **k)
        self.gaps: list[float] = []
        self.first: list[float] = []
        self.given = given

    def _update(self, name, W, G, st):
        t0 = int(st.get("step", 0))
        refresh = self.projected[name] and t0 % self.update_proj_gap == 0
        if refresh and self.given is not None:
            Q = self.given[name]
            svd, torch.linalg.svd = torch.linalg.svd, lambda M, full_matrices=False: (Q, None, Q.T)
            try:
                out = super()._update(name, W, G, st)
            finally:
                torch.linalg.svd = svd
        else:
            out = super()._update(name, W, G, st)
        if refresh:
            self.gaps.append(rel_gap(st["exp_avg"]))
            if t0 == 0:
                P = st["P"]
                gp = G @ P.T if G.shape[0] >= G.shape[1] else P.T @ G
                self.first.append(float(gp.abs().min() / G.norm()))
        return out


def conda_side(h, given=None):
    kw = {k: h[k] for k in ("lr", "betas", "eps", "weight_decay", "update_proj_gap", "scale")}
    return Composite(params(0), lambda ps: CondaWatch(ps, given=given, **kw), lambda ps: R.Conda(ps, **kw))


def spec_bases(store: dict, period: int):
    """``on_step`` hook: after each refresh step, copy the spec's cached basis of each matrix."""
    def hook(t, opt, ps):
        if (t - 1) % period == 0:
            for k in MATRICES[:3]:
                store[k] = opt.state[ps[k]]["q"].double()
    return hook


def test_conda_matches_reference_float64():
    side = conda_side(CONDA)
    errs, _ = run("conda", CONDA, side, dtype=torch.float64)
    assert min(side.mat.gaps) >= 1e-3, side.mat.gaps  # the comparison is well-posed (see FP64)
    assert_close(errs, FP64)


def test_conda_matches_reference_float32_given_the_basis():
    h = dict(CONDA, betas=(0.9, 0.999), weight_decay=0.0)
    given: dict[str, torch.Tensor] = {}
    side = conda_side(h, given)
    errs, _ = run("conda", h, side, on_step=spec_bases(given, T))
    assert min(side.mat.first) > 10 * 10 * U32, side.mat.first  # no sign-like entry near 0 at step 1
    assert_close(errs, FP32)


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


def test_conda_trains():
    check_trains("conda", None, dict(lr=0.02, update_proj_gap=T))


def test_conda_resumes_bitwise():
    check_bitwise_resume("conda", None, dict(CONDA, weight_decay=0.01))


# ---- FRUGAL block ---------------------------------------------------------------------------

FRUGAL = dict(lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1, update_gap=T,
              inactive_lr_scale=0.5, proj_params_lr_scale=0.8)


def frugal_kw(h):
    return {k: h[k] for k in ("lr", "betas", "eps", "weight_decay", "update_gap", "density",
                              "inactive_lr_scale", "proj_params_lr_scale")}


def frugal_block_side(h):
    kw = frugal_kw(h)
    return Composite(params(0), lambda ps: R.FRUGALBlock(ps, **kw),
                     lambda ps: R.AdamW(ps, lr=h["lr"], betas=h["betas"], eps=h["eps"],
                                        weight_decay=h["weight_decay"]))


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


@pytest.mark.parametrize("density", [0.25, 0.5], ids=["one-active", "two-active"])
def test_frugal_block_matches_reference(density):
    h = dict(FRUGAL, density=density)
    errs, _ = run("frugal", h, frugal_block_side(h))
    assert_close(errs, FP32)


def test_frugal_block_trains():
    check_trains("frugal", None, dict(lr=0.01, density=0.5, update_gap=T))


def test_frugal_block_resumes_bitwise():
    check_bitwise_resume("frugal", None, dict(FRUGAL, density=0.5))


# ---- FRUGAL, SVD projector ------------------------------------------------------------------

class ProjectedWatch(R.FRUGALProjected):
    """The reference, recording each refresh's relative singular gap of G and, per matrix, how
    many residual entries lie within ``near`` of 0 relative to ‖G‖_F (the residual's sign is
    discontinuous at 0: those entries may take the other sign in float32)."""

    near = 10 * 10 * U32  # 10× the float32 rounding of G − GQQᵀ (~10·u·‖G‖, d ≤ 12 terms)

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.gaps: list[float] = []
        self.close_to_zero: dict[str, int] = {}

    def _update(self, name, W, G, st):
        t0 = int(st.get("step", 0))
        out = super()._update(name, W, G, st)
        if self.proj[name]:
            if t0 % self.update_gap == 0:
                self.gaps.append(rel_gap(G))
            P, right = st["P"], bool(st["right"])
            res = G - (G @ P.T @ P if right else P @ P.T @ G)
            n = int((res.abs() < self.near * G.norm()).sum())
            self.close_to_zero[name] = self.close_to_zero.get(name, 0) + n
        return out


SVD = dict(FRUGAL, density=0.25)


def test_frugal_svd_matches_reference_float64():
    kw = frugal_kw(SVD)
    side = Composite(params(0), lambda ps: ProjectedWatch(ps, basis_fn=svd_std_basis, **kw),
                     lambda ps: R.FRUGALProjected(ps, **kw))
    errs, _ = run("frugal", SVD, side, name="frugal_svd", dtype=torch.float64)
    assert min(side.mat.gaps) >= 1e-3, side.mat.gaps
    assert_close(errs, FP64)


def test_frugal_svd_matches_reference_float32_given_the_basis():
    """Float32 spec; the reference is fed the basis the spec cached at each refresh (its columns
    past r are zero by construction), so the comparison measures the Adam/sign arithmetic.
    The residual's sign can differ only where |residual| is within 10× of its float32 rounding
    (~10·u·‖G‖); each such entry may move the displacement by at most 2·lr·ρ_p·ρ_i (one sign
    flip, lr·ρ_p·ρ_i each way), so the tolerance of a matrix with n such entries (counted by the
    reference) is FP32 + n·2·lr·ρ_p·ρ_i / ‖reference displacement‖."""
    kw = frugal_kw(SVD)
    latest: dict[str, torch.Tensor] = {}

    def basis_fn(name, G, density):
        Q = latest[name]
        r = max(1, round(density * min(G.shape)))
        assert torch.all(Q[:, r:] == 0) and torch.all(Q[:, :r].norm(dim=0) > 0.5)
        return ("right", Q[:, :r].T) if G.shape[0] >= G.shape[1] else ("left", Q[:, :r])

    side = Composite(params(0), lambda ps: ProjectedWatch(ps, basis_fn=basis_fn, **kw),
                     lambda ps: R.FRUGALProjected(ps, **kw))
    errs, _ = run("frugal", SVD, side, name="frugal_svd", on_step=spec_bases(latest, T))
    init = params(0)
    flip = 2 * SVD["lr"] * SVD["proj_params_lr_scale"] * SVD["inactive_lr_scale"]
    for k, e in errs.items():
        n = side.mat.close_to_zero.get(k, 0)
        disp = float((side.params[k] - init[k].double()).norm())
        assert n <= 3, (k, n)  # the comparison stays informative: at most a few ambiguous signs
        tol = FP32 + n * flip / disp
        assert e < tol, (k, e, tol, n)


def test_frugal_svd_trains():
    check_trains("frugal", "frugal_svd", dict(lr=0.01, density=0.5, update_gap=T))


def test_frugal_svd_resumes_bitwise():
    check_bitwise_resume("frugal", "frugal_svd", SVD)
