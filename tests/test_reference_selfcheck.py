"""Self-checks of the reference oracles (tests/reference) against independent ground truth:
torch.optim (SGD, AdamW, Muon), pytorch_optimizer 4.1.0 (Lion, SignSGD, Conda; skipped if absent),
scipy's DCT, exact SVD identities, and the numerical facts argued in docs/derivations.md.

Every test draws fresh random inputs (seeded per test for reproducibility, no zeros); tolerances
are justified next to each assertion. Nothing here imports optloom.
"""
from __future__ import annotations

import math

import pytest
import torch

import tests.reference as R
from tests.reference.aro import ARO, aro_rotation, rotated_update, base_map
from tests.reference.muon_family import ROOT_COEFFS, root_clip, root_coeffs, column_select
from tests.reference.spectral import soft_spectral_clip_eigh
from tests.reference.subspace import coordinate_basis

F64 = torch.float64
SHAPES = {"wide": (8, 12), "tall": (12, 8), "square": (10, 10)}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny matrices: one thread is faster and spares the shared 2-core machine; restored after."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _rand_params(shapes, gen_seed, vectors=()):
    g = torch.Generator().manual_seed(gen_seed)
    ps = {k: torch.randn(*s, generator=g) for k, s in shapes.items()}
    for k, n in vectors:
        ps[k] = torch.randn(n, generator=g)
    return ps


def _run_pair(torch_opt, ref, tparams, steps, seed):
    """Feed identical fresh random grads to a torch optimizer (fp32) and a reference."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        grads = {k: torch.randn(p.shape, generator=g) for k, p in tparams.items()}
        for k, p in tparams.items():
            p.grad = grads[k].clone()
        torch_opt.step()
        ref.step(grads)


def _rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


# ------------------------------------------------------------------------------------------------
# Baselines vs torch.optim / pytorch_optimizer
# ------------------------------------------------------------------------------------------------
# fp32 vs float64: unit roundoff 6e-8; each step is O(10) elementwise ops on O(1) values, errors
# do not feed back (gradients are fresh data), so 30 steps accumulate at worst 30·10·6e-8 ≈ 2e-5
# absolute on O(1) parameters (random-sign errors grow like √steps, typically ~50x less).
FP32_TOL = dict(rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("kw", [
    dict(lr=0.05, momentum=0.9, dampening=0.0, weight_decay=0.01, nesterov=True),
    dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.0, nesterov=False),
    dict(lr=0.05, momentum=0.0, weight_decay=0.1),
])
def test_sgd_matches_torch(kw):
    init = _rand_params(SHAPES, 1, vectors=[("bias", 7)])
    tp = {k: torch.nn.Parameter(v.clone()) for k, v in init.items()}
    opt = torch.optim.SGD(list(tp.values()), **kw)
    ref = R.SGD(list(init.items()), **kw)
    _run_pair(opt, ref, tp, 30, seed=11)
    for k, p in tp.items():
        torch.testing.assert_close(ref.params[k], p.detach().double(), **FP32_TOL)


@pytest.mark.parametrize("amsgrad", [False, True])
def test_adamw_matches_torch(amsgrad):
    init = _rand_params(SHAPES, 2, vectors=[("bias", 7)])
    tp = {k: torch.nn.Parameter(v.clone()) for k, v in init.items()}
    kw = dict(lr=0.01, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, amsgrad=amsgrad)
    opt = torch.optim.AdamW(list(tp.values()), **kw)
    ref = R.AdamW(list(init.items()), **kw)
    _run_pair(opt, ref, tp, 30, seed=12)
    for k, p in tp.items():
        torch.testing.assert_close(ref.params[k], p.detach().double(), **FP32_TOL)


@pytest.mark.parametrize("adjust_lr_fn", [None, "match_rms_adamw"])
@pytest.mark.parametrize("ns_dtype", [torch.bfloat16, F64])
def test_muon_matches_torch(adjust_lr_fn, ns_dtype):
    init = _rand_params(SHAPES, 3)
    tp = {k: torch.nn.Parameter(v.clone()) for k, v in init.items()}
    kw = dict(lr=0.02, weight_decay=0.1, momentum=0.95, nesterov=True, adjust_lr_fn=adjust_lr_fn)
    opt = torch.optim.Muon(list(tp.values()), **kw)
    ref = R.Muon(list(init.items()), ns_dtype=ns_dtype, **kw)
    _run_pair(opt, ref, tp, 30, seed=13)
    decay = (1 - 0.02 * 0.1) ** 30
    for k, p in tp.items():
        # Compare the accumulated displacement (params minus pure decay), i.e. the sum of NS outputs.
        disp_ref = ref.params[k] - init[k].double() * decay
        err = _rel(p.detach().double() - init[k].double() * decay, disp_ref)
        if ns_dtype == torch.bfloat16:
            # Same bf16 op sequence as torch (cast, norm clamp, addmm); only the fp32-vs-fp64 momentum
            # differs (~1e-7 rel), which flips a bf16 rounding (spacing 2^-8) only rarely: the sum
            # of 30 updates must agree far below one bf16 ulp (0.4%); we allow 1e-3.
            assert err < 1e-3, err
        else:
            # Exact (float64) NS vs torch's bf16 NS: every matmul input is rounded to 8 significant
            # bits (rel. error 2^-9 ≈ 0.2%) over 15 chained matmuls, so each step's update differs by
            # O(1%) with random sign; 30 independent steps average to ≲ 1%/√30·few. Allow 3%.
            assert err < 3e-2, err


def test_muon_aux_adamw_routing():
    """Embeddings/head/1-D go to the aux AdamW: compare them with torch.optim.AdamW."""
    init = _rand_params({"embed.weight": (9, 6), "h": (8, 12)}, 4, vectors=[("ln.bias", 6)])
    ref = R.Muon(list(init.items()), lr=0.02, weight_decay=0.1, adam_lr=3e-3, adam_betas=(0.9, 0.95),
                 adam_eps=1e-10)
    assert ref.hidden == {"embed.weight": False, "h": True, "ln.bias": False}
    aux = {k: torch.nn.Parameter(init[k].clone()) for k in ("embed.weight", "ln.bias")}
    opt = torch.optim.AdamW(list(aux.values()), lr=3e-3, betas=(0.9, 0.95), eps=1e-10, weight_decay=0.1)
    g = torch.Generator().manual_seed(14)
    for _ in range(30):
        grads = {k: torch.randn(v.shape, generator=g) for k, v in init.items()}
        for k, p in aux.items():
            p.grad = grads[k].clone()
        opt.step()
        ref.step(grads)
    for k, p in aux.items():
        torch.testing.assert_close(ref.params[k], p.detach().double(), **FP32_TOL)


def _pytorch_optimizer():
    return pytest.importorskip("pytorch_optimizer")


def test_lion_signum_match_pytorch_optimizer():
    po = _pytorch_optimizer()
    init = _rand_params(SHAPES, 5, vectors=[("bias", 7)])
    for make_t, make_r in [
        (lambda ps: po.Lion(ps, lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1),
         lambda ps: R.Lion(ps, lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)),
        (lambda ps: po.SignSGD(ps, lr=1e-3, momentum=0.9, weight_decay=0.1, foreach=False),
         lambda ps: R.Signum(ps, lr=1e-3, beta=0.9, weight_decay=0.1)),
    ]:
        tp = {k: torch.nn.Parameter(v.clone()) for k, v in init.items()}
        opt, ref = make_t(list(tp.values())), make_r(list(init.items()))
        _run_pair(opt, ref, tp, 30, seed=15)
        for k, p in tp.items():
            # sign() updates: only fp32 rounding of the (1−lrλ) products; a sign flip would need an
            # EMA entry within ~1e-7 of zero (probability ~1e-6 per entry for Gaussian data).
            torch.testing.assert_close(ref.params[k], p.detach().double(), **FP32_TOL)


def test_conda_matches_pytorch_optimizer():
    """pytorch_optimizer refreshes the basis at 1-based steps 1, T, 2T…; the reference (official
    code, jie040109/Conda conda_torch/projector.py; arXiv 2509.24218) at t % T == 0 for 0-based t, i.e. 1, T+1, …: compare within the first period."""
    po = _pytorch_optimizer()
    init = _rand_params(SHAPES, 6, vectors=[("bias", 7)])
    tp = {k: torch.nn.Parameter(v.clone()) for k, v in init.items()}
    kw = dict(lr=1e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
    opt = po.Conda(list(tp.values()), update_proj_gap=1000, scale=0.25, foreach=False, **kw)
    ref = R.Conda(list(init.items()), update_proj_gap=1000, scale=0.25, **kw)
    _run_pair(opt, ref, tp, 30, seed=16)
    for k, p in tp.items():
        # fp32 SVD of m (distinct singular values for Gaussian data) plus the Adam tolerance above.
        torch.testing.assert_close(ref.params[k], p.detach().double(), rtol=1e-4, atol=1e-4)


def test_conda_refresh_schedule():
    """Basis refreshed exactly at t % T == 0 (t = 0-based step), equal to the SVD basis of m."""
    T = 3
    init = _rand_params({"tall": (12, 8), "wide": (8, 12)}, 7)
    ref = R.Conda(list(init.items()), lr=1e-2, update_proj_gap=T)
    g = torch.Generator().manual_seed(17)
    prev = {}
    for t in range(8):
        ref.step({k: torch.randn(v.shape, generator=g) for k, v in init.items()})
        for k in init:
            st = ref.state[k]
            P = st["P"]
            if t % T == 0:
                U, _, Vh = torch.linalg.svd(st["exp_avg"], full_matrices=False)
                expect = Vh if k == "tall" else U
                # up to the sign of each singular vector
                torch.testing.assert_close(P.abs(), expect.abs(), rtol=0, atol=1e-10)
                if k in prev:
                    assert not torch.allclose(P, prev[k])
            else:
                assert torch.equal(P, prev[k])
            prev[k] = P.clone()


# ------------------------------------------------------------------------------------------------
# Newton–Schulz presets, ROOT, PolarGrad, soft clip
# ------------------------------------------------------------------------------------------------
def _known_spectrum(m, n, sigma, seed):
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(m, m, generator=g, dtype=F64))
    V, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=F64))
    k = len(sigma)
    return U[:, :k] @ torch.diag(sigma) @ V[:, :k].T, U[:, :k], V[:, :k]


# Ranges of docs/derivations.md#newton-schulz for normalised σ ∈ [1e-3, 1]; "≈" there means 2 printed digits,
# so we widen each end by 0.01.
NS_RANGES = {"muon": (0.47, 1.20), "polar_express": (0.85, 1.14)}


@pytest.mark.parametrize("preset", ["muon", "you5", "polar_express"])
@pytest.mark.parametrize("shape", [(12, 20), (20, 12)])
def test_newton_schulz_presets(preset, shape):
    k = min(shape)
    # log grid on [10^-2.5, 1]; after Frobenius normalisation (‖σ‖₂ ≈ 1.3) and the 1.02 safety the
    # values stay within [1e-3, 1], where docs/derivations.md#newton-schulz states the ranges.
    sigma = torch.logspace(-2.5, 0, k, dtype=F64)
    X, U, V = _known_spectrum(*shape, sigma, seed=21)
    O = R.newton_schulz(X, preset)
    s = 1.02 if preset == "polar_express" else 1.0
    normalised = sigma / (sigma.norm() * s + R.common.NS_NORMALIZATION[preset][1])
    assert normalised.min() >= 1e-3 and normalised.max() <= 1
    # docs/derivations.md#newton-schulz oracle: NS(UΣVᵀ) = U p(σ̂) Vᵀ (float64: only roundoff, 1e-10 is generous).
    expect = U @ torch.diag(R.ns_scalar_map(normalised, preset)) @ V.T
    torch.testing.assert_close(O, expect, rtol=0, atol=1e-10)
    if preset in NS_RANGES:
        lo, hi = NS_RANGES[preset]
        sv = torch.linalg.svdvals(O)
        assert lo - 0.01 <= sv.min() and sv.max() <= hi + 0.01, (sv.min(), sv.max())
        # the full scalar composition over a fine grid of [1e-3, 1] also lands in the stated range
        grid = R.ns_scalar_map(torch.logspace(-3, 0, 2001, dtype=F64), preset)
        assert lo - 0.01 <= grid.min() <= lo + 0.01 and grid.max() <= hi + 0.01


def test_root_shape_table_and_hazard():
    # table lookup by (min, max) in both orientations; unknown shapes fall back to Muon's
    assert root_coeffs(2048, 8192) == root_coeffs(8192, 2048) == ROOT_COEFFS[(2048, 8192)]
    assert root_coeffs(10, 10) == R.common.MUON_COEFFS
    # docs/derivations.md#root-coefficients hazard: square coefficients send a top normalised singular value ≈ 0.559 to ≈ 3.31.
    rest = math.sqrt((1 - 0.559**2) / 9)
    sigma = torch.tensor([0.559] + [rest] * 9, dtype=F64) * 7.3  # arbitrary overall scale
    X, U, V = _known_spectrum(10, 10, sigma, seed=22)
    O = R.newton_schulz(X, [ROOT_COEFFS[(2048, 2048)]], 5, safety=1.0, eps=1e-7)
    top = torch.linalg.svdvals(O).max().item()
    assert abs(top - 3.31) < 0.02, top  # "≈3.31" quoted to 3 digits
    # ...whereas Muon's preset keeps it within its stated range
    assert torch.linalg.svdvals(R.newton_schulz(X, "muon")).max() <= 1.21


def test_root_quantile_clip():
    g = torch.Generator().manual_seed(23)
    N = torch.randn(10, 10, generator=g, dtype=F64)
    Bc, eps = root_clip(N, 0.9)
    a = N.abs().flatten().sort().values
    # linear-interpolation quantile at position 0.9·99 = 89.1 lies between the 90th and 91st values
    assert a[89] <= eps - 1e-9 <= a[90]
    clipped = (Bc != N)
    assert clipped.sum() == 10  # the 10 largest |entries|
    torch.testing.assert_close(Bc, N.clamp(-eps, eps), rtol=0, atol=1e-15)


def _polar_eigh(M):
    """Independent polar factor: M (MᵀM)^{-1/2} (wide: (MMᵀ)^{-1/2} M)."""
    if M.shape[0] <= M.shape[1]:
        lam, V = torch.linalg.eigh(M @ M.T)
        return V @ torch.diag(lam.rsqrt()) @ V.T @ M
    lam, V = torch.linalg.eigh(M.T @ M)
    return M @ V @ torch.diag(lam.rsqrt()) @ V.T


@pytest.mark.parametrize("polar_first", [False, True])
def test_polargrad_nu_is_nuclear_norm(polar_first):
    init = _rand_params(SHAPES | {"conv": (4, 3, 3, 3)}, 24)
    a = R.PolarGrad(list(init.items()), lr=0.01, momentum=0.9, weight_decay=0.05, polar_first=polar_first)
    b = R.PolarGrad(list(init.items()), lr=0.01, momentum=0.9, weight_decay=0.05, polar_first=polar_first,
                    polar=_polar_eigh)
    g = torch.Generator().manual_seed(25)
    for _ in range(5):
        grads = {k: torch.randn(v.shape, generator=g) for k, v in init.items()}
        a.step(grads)
        b.step(grads)
        for k, v in grads.items():
            src = v.double() if polar_first else a.state[k]["momentum_buffer"]
            nuc = torch.linalg.matrix_norm(src.reshape(src.shape[0], -1), "nuc")
            torch.testing.assert_close(a.state[k]["nu"], nuc, rtol=1e-12, atol=0)
    for k in init:  # SVD and eigh polar agree (well-conditioned random matrices: ~1e-13)
        torch.testing.assert_close(a.params[k], b.params[k], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("ratio", [0.1, 1.0, 10.0, 100.0])
def test_soft_spectral_clip(ratio):
    c = 0.7
    sigma = torch.linspace(1.0, 0.05, 8, dtype=F64) * ratio * c  # σ_max / c = ratio
    X, U, V = _known_spectrum(8, 12, sigma, seed=26)
    H = R.soft_spectral_clip(X, c)
    torch.testing.assert_close(H, U @ torch.diag(sigma / torch.sqrt(1 + sigma**2 / c**2)) @ V.T,
                               rtol=0, atol=1e-12)
    torch.testing.assert_close(H, soft_spectral_clip_eigh(X, c), rtol=0, atol=1e-10)
    # vectors (arXiv 2603.14315, as written): g/sqrt(1 + (‖g‖/c)²) only when ‖g‖ > c — the rule jumps at
    # ‖g‖ = c, so probe 1% on either side of the requested ratio.
    v = torch.randn(9, generator=torch.Generator().manual_seed(27), dtype=F64)
    for r in (ratio * 0.99, ratio * 1.01):
        w = v / v.norm() * r * c
        expect = w / math.sqrt(1 + r**2) if r > 1 else w
        torch.testing.assert_close(R.soft_spectral_clip(w, c), expect, rtol=1e-14, atol=0)


def test_spectra_with_huge_c_is_adamw():
    """H_c → identity as c → ∞, and α = 1 for wide/square matrices and vectors: SPECTRA-AdamW
    must then reproduce torch.optim.AdamW (relative change of the clip ≤ σ²/(2c²) ≈ 1e-16)."""
    init = _rand_params({"wide": (8, 12), "square": (10, 10)}, 27, vectors=[("bias", 7)])
    tp = {k: torch.nn.Parameter(v.clone()) for k, v in init.items()}
    opt = torch.optim.AdamW(list(tp.values()), lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
    ref = R.SPECTRA(list(init.items()), lr=0.01, c=1e8, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
    _run_pair(opt, ref, tp, 30, seed=28)
    for k, p in tp.items():
        torch.testing.assert_close(ref.params[k], p.detach().double(), **FP32_TOL)


def test_auon_head_brake_is_negligible_on_large_gaussian():
    """docs/derivations.md#auon-brake: for N ≥ 6e5 Gaussian entries r − 1 < 2e-6 (γ ∈ {1, 1.5}), so one HEAD step equals
    W − lr·N (Nesterov momentum) to 2e-6 relative; v1's update has ‖U‖_F = 1/(r+1e-8) ≈ 1."""
    g = torch.Generator().manual_seed(29)
    W = torch.randn(800, 800, generator=g, dtype=F64)
    G = torch.randn(800, 800, generator=g, dtype=F64)
    head = R.AuON([("w", W)], lr=0.1, momentum=0.95, version="head")
    head.step({"w": G})
    N = (1 - 0.95) * G + 0.95 * (1 - 0.95) * G
    assert _rel(W - head.params["w"], 0.1 * N) < 2e-6
    v1 = R.AuON([("w", W)], lr=1.0, momentum=0.95, version="v1")
    v1.step({"w": G})
    assert abs((W - v1.params["w"]).norm().item() - 1.0) < 2e-6  # square: shape factor 1


# ------------------------------------------------------------------------------------------------
# ARO
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("f", ["sinkhorn", "row_norm", "sign"])
def test_aro_qr_column_sign_invariance(f):
    g = torch.Generator().manual_seed(31)
    M = torch.randn(8, 12, generator=g, dtype=F64)
    fm = base_map(f)
    R0 = torch.linalg.qr(torch.randn(8, 8, generator=g, dtype=F64)).Q
    Rt = aro_rotation(M, R0, fm)
    D = torch.diag(torch.randint(0, 2, (8,), generator=g).to(F64) * 2 - 1)
    torch.testing.assert_close(rotated_update(M, Rt @ D, fm), rotated_update(M, Rt, fm), rtol=0, atol=1e-12)
    # the next rotation does not depend on the signs either (f commutes with row sign flips)
    R_next = aro_rotation(M, Rt @ D, fm)
    torch.testing.assert_close(rotated_update(M, R_next, fm), rotated_update(M, aro_rotation(M, Rt, fm), fm),
                               rtol=0, atol=1e-10)


def test_aro_identity_rotation_sign_is_signum():
    init = _rand_params(SHAPES, 32)
    kw = dict(lr=0.01, weight_decay=0.05)
    a = ARO(list(init.items()), momentum=0.9, base_opt="sign", adjust_lr="none", fixed_rotation=True, **kw)
    b = R.Signum(list(init.items()), beta=0.9, **kw)
    g = torch.Generator().manual_seed(33)
    for _ in range(30):
        grads = {k: torch.randn(v.shape, generator=g) for k, v in init.items()}
        a.step(grads)
        b.step(grads)
    for k in init:  # R = I: IᵀM and I·sign(·) are exact in floating point
        torch.testing.assert_close(a.params[k], b.params[k], rtol=0, atol=1e-14)


def test_aro_left_singular_rotation_row_norm_is_muon_direction():
    """docs/derivations.md#aro-on-tall-matrices: R = U (left singular vectors) and f = row_norm give √n·UVᵀ."""
    sigma = torch.linspace(2.0, 0.3, 8, dtype=F64)
    M, U, V = _known_spectrum(8, 12, sigma, seed=34)
    torch.testing.assert_close(rotated_update(M, U, base_map("row_norm")), math.sqrt(12) * U @ V.T,
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", [(80, 48), (48, 80), (40, 40)])
def test_aro_tall_matrix_hazard(shape):
    """docs/derivations.md#aro-on-tall-matrices: perturbing the gradients by 1e-6 (relative) flips the as-written update direction on a
    tall matrix (doc: cosine ≈ 0.6) but not on wide/square ones; the wide-oriented variant is stable
    everywhere. A well-posed map moves by O(1e-6·condition) ⇒ cosine 1 − O(1e-10)."""
    g = torch.Generator().manual_seed(35)
    W = torch.randn(*shape, generator=g, dtype=F64)
    grads = [torch.randn(*shape, generator=g, dtype=F64) for _ in range(3)]
    noise = [torch.randn(*shape, generator=g, dtype=F64) for _ in range(3)]
    for orient in ("as_written", "wide"):
        last = []
        for eps in (0.0, 1e-6):
            opt = ARO([("w", W)], lr=1.0, weight_decay=0.0, orient=orient)
            for G, Z in zip(grads, noise):
                before = opt.params["w"].clone()
                opt.step({"w": G + eps * G.norm() / math.sqrt(G.numel()) * Z})
            last.append(before - opt.params["w"])
        cos = ((last[0] * last[1]).sum() / (last[0].norm() * last[1].norm())).item()
        if orient == "as_written" and shape[0] > shape[1]:
            assert cos < 0.9, cos
        else:
            assert cos > 1 - 1e-6, (orient, cos)


# ------------------------------------------------------------------------------------------------
# Subspace methods
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("d", [5, 8, 12])
def test_dct_matrix(d):
    Q = R.dct_matrix(d)
    I = torch.eye(d, dtype=F64)
    torch.testing.assert_close(Q @ Q.T, I, rtol=0, atol=1e-13)
    torch.testing.assert_close(Q.T @ Q, I, rtol=0, atol=1e-13)
    fft = pytest.importorskip("scipy.fft")
    x = torch.randn(d, generator=torch.Generator().manual_seed(d), dtype=F64)
    # Q x is the orthonormal DCT-II of x (scipy's implementation is independent of ours)
    torch.testing.assert_close(Q @ x, torch.from_numpy(fft.dct(x.numpy(), type=2, norm="ortho")),
                               rtol=0, atol=1e-12)


def test_frugal_projected_coordinates_vs_torch():
    """Coordinate projector on a fixed column subset (no refresh within the run): selected columns
    follow AdamW exactly (Adam is elementwise), the rest follow decoupled-decay sign-SGD."""
    init = _rand_params({"w": (8, 12)}, 41)
    idx = [1, 4, 5, 10]
    ref = R.FRUGALProjected(list(init.items()), lr=0.01, weight_decay=0.1, update_gap=1000,
                            basis_fn=lambda name, G, d: coordinate_basis(idx, 12))
    cols = torch.nn.Parameter(init["w"][:, idx].clone())
    opt = torch.optim.AdamW([cols], lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    rest = [j for j in range(12) if j not in idx]
    W_rest = init["w"][:, rest].double().clone()
    g = torch.Generator().manual_seed(42)
    for _ in range(30):
        G = torch.randn(8, 12, generator=g)
        cols.grad = G[:, idx].clone()
        opt.step()
        ref.step({"w": G})
        W_rest = W_rest * (1 - 0.01 * 0.1) - 0.01 * torch.sign(G[:, rest].double())
    torch.testing.assert_close(ref.params["w"][:, idx], cols.detach().double(), **FP32_TOL)
    torch.testing.assert_close(ref.params["w"][:, rest], W_rest, rtol=0, atol=1e-12)


def test_frugal_block_all_active_is_adamw_and_reset():
    init = _rand_params(SHAPES, 43, vectors=[("bias", 7)])
    tp = {k: torch.nn.Parameter(v.clone()) for k, v in init.items()}
    opt = torch.optim.AdamW(list(tp.values()), lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    ref = R.FRUGALBlock(list(init.items()), lr=0.01, weight_decay=0.1, update_gap=1000,
                        select_active=lambda k, names: set(names))
    _run_pair(opt, ref, tp, 30, seed=44)
    for k, p in tp.items():
        torch.testing.assert_close(ref.params[k], p.detach().double(), **FP32_TOL)
    # refresh every 2 steps with reset: the Adam step counter restarts at each refresh
    blk = R.FRUGALBlock(list(init.items()), lr=0.01, update_gap=2, select_active=lambda k, names: {"wide"})
    g = torch.Generator().manual_seed(144)
    for t in range(5):
        blk.step({k: torch.randn(v.shape, generator=g) for k, v in init.items()})
        assert int(blk.state["wide"]["step"]) == t % 2 + 1
        assert "step" not in blk.state["tall"]  # inactive: state-free


@pytest.mark.parametrize("shape", [(12, 8), (8, 12)])
def test_dct_adamw_rotation_follows_index_order(shape):
    """Full rank, re-selection every step: with rotate_subspace the state is permuted by
    R = Q[:,old]ᵀQ[:,new] (a permutation here), so the topk order (which changes from step to step)
    must give the same trajectory as a fixed index order."""
    init = _rand_params({"w": shape}, 45)
    d = min(shape)
    a = R.DCTAdamW(list(init.items()), lr=0.01, weight_decay=0.1, rank=d, rotate_subspace=True)
    b = R.DCTAdamW(list(init.items()), lr=0.01, weight_decay=0.1, rank=d, rotate_subspace=True,
                   index_fn=lambda name, S, r, right: torch.arange(r))
    g = torch.Generator().manual_seed(46)
    for _ in range(10):
        G = {"w": torch.randn(*shape, generator=g)}
        a.step(G)
        b.step(G)
    torch.testing.assert_close(a.params["w"], b.params["w"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", [(12, 8), (8, 12), (10, 10)])
def test_trion_full_rank_is_muon_without_nesterov(shape):
    """rank = d: lift(m_r) = M, so the EF leaves μ(M+G) — sum momentum; NS is equivariant under the
    orthogonal DCT, hence Trion = Muon(nesterov=False) (NS is scale invariant: EMA vs sum irrelevant).
    Only the NS ε (1e-7 of ‖X‖, scaled differently in the two runs) differs: tolerance 1e-6."""
    init = _rand_params({"w": shape}, 47)
    a = R.Trion(list(init.items()), lr=0.02, momentum=0.9, rank=min(shape), weight_decay=0.1)
    b = R.Muon(list(init.items()), lr=0.02, momentum=0.9, nesterov=False, weight_decay=0.1)
    g = torch.Generator().manual_seed(48)
    for _ in range(10):
        G = {"w": torch.randn(*shape, generator=g)}
        a.step(G)
        b.step(G)
    torch.testing.assert_close(a.params["w"], b.params["w"], rtol=0, atol=1e-6)


def test_low_rank_muon():
    """Full rank: Q spans everything and NS(QᵀX) = QᵀNS(X) ⇒ equals Muon (up to NS ε, 1e-6).
    Rank r: the update lies in range(Q) of the supplied columns."""
    init = _rand_params(SHAPES, 49)
    full = R.LowRankMuon(list(init.items()), lr=0.02, weight_decay=0.1, rank=8,
                         range_finder=column_select(lambda name, X, r: torch.arange(X.shape[1])[-X.shape[0]:]))
    muon = R.Muon(list(init.items()), lr=0.02, weight_decay=0.1)
    g = torch.Generator().manual_seed(50)
    for _ in range(10):
        G = {k: torch.randn(v.shape, generator=g) for k, v in init.items()}
        full.step(G)
        muon.step(G)
    for k in init:
        torch.testing.assert_close(full.params[k], muon.params[k], rtol=0, atol=1e-6)
    idx = torch.tensor([0, 3, 7])
    lr_opt = R.LowRankMuon([("w", init["wide"])], lr=1.0, weight_decay=0.0, rank=3,
                           range_finder=column_select(lambda name, X, r: idx))
    G = torch.randn(8, 12, generator=g, dtype=F64)
    lr_opt.step({"w": G})
    upd = init["wide"].double() - lr_opt.params["w"]
    N = (1 - 0.95) * G + 0.95 * (1 - 0.95) * G
    Q = torch.linalg.qr(N[:, idx]).Q
    torch.testing.assert_close(upd - Q @ (Q.T @ upd), torch.zeros_like(upd), rtol=0, atol=1e-12)
    assert torch.linalg.matrix_rank(upd) == 3


# ------------------------------------------------------------------------------------------------
# Adaptive and frontier rules: structural identities from the equations
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [R.NAMO, R.NAMOD])
def test_namo_gradient_scale_invariance(cls):
    """α (and d_j) are ratios ‖N‖/sqrt(v) of quantities linear in G: scaling all gradients by k
    leaves the trajectory unchanged (up to ε = 1e-8 against sqrt(v) = O(k)): rel. 1e-7."""
    init = _rand_params(SHAPES | {"conv": (4, 3, 3, 3)}, 51)
    a, b = cls(list(init.items()), lr=0.01), cls(list(init.items()), lr=0.01)
    g = torch.Generator().manual_seed(52)
    for _ in range(10):
        G = {k: torch.randn(v.shape, generator=g) for k, v in init.items()}
        a.step(G)
        b.step({k: 37.0 * v for k, v in G.items()})
    for k in init:
        torch.testing.assert_close(a.params[k], b.params[k], rtol=1e-7, atol=1e-7)


def test_drop_muon_freezes_inactive_and_matches_muon():
    init = _rand_params({"l0": (8, 12), "l1": (10, 10)}, 53)
    drop = R.DropMuon(list(init.items()), lr=0.02, beta=0.05, shape="muon")
    muon = R.Muon([("l1", init["l1"])], lr=0.02, momentum=0.95, nesterov=False, weight_decay=0.0)
    g = torch.Generator().manual_seed(54)
    for _ in range(10):
        G = {k: torch.randn(v.shape, generator=g) for k, v in init.items()}
        frozen_W, frozen_M = drop.params["l0"].clone(), drop.state["l0"].get("momentum_buffer")
        drop.step(G, active=R.frontier.suffix_active_set(["l0", "l1"], 1))
        muon.step({"l1": G["l1"]})
        assert torch.equal(drop.params["l0"], frozen_W) and drop.state["l0"].get("momentum_buffer") is frozen_M
    torch.testing.assert_close(drop.params["l1"], muon.params["l1"], rtol=0, atol=1e-6)


def test_fismo_trust_region_and_factor_normalisation():
    """With an exact polar, P^{1/2}ΔW Q^{1/2} = polar(M) has all singular values 1 (arXiv 2601.21750 Alg. 1: the step
    solves the trust region ‖P^{1/2}ΔW Q^{1/2}‖₂ ≤ η); P, Q stay symmetric with tr = m, n."""
    init = _rand_params({"w": (8, 12)}, 55)
    opt = R.FISMO(list(init.items()), lr=1.0, polar="svd", beta=0.9, gamma=0.9, mu=1e-2)
    g = torch.Generator().manual_seed(56)
    for _ in range(5):
        before = opt.params["w"].clone()
        opt.step({"w": torch.randn(8, 12, generator=g)})
        P, Q = opt.state["w"]["P"], opt.state["w"]["Q"]
        assert torch.equal(P, P.T) and torch.equal(Q, Q.T)
        torch.testing.assert_close(torch.trace(P), torch.tensor(8.0, dtype=F64))
        torch.testing.assert_close(torch.trace(Q), torch.tensor(12.0, dtype=F64))
        lp, Vp = torch.linalg.eigh(P)
        lq, Vq = torch.linalg.eigh(Q)
        dW = before - opt.params["w"]
        core = Vp @ torch.diag(lp.sqrt()) @ Vp.T @ dW @ Vq @ torch.diag(lq.sqrt()) @ Vq.T
        torch.testing.assert_close(torch.linalg.svdvals(core), torch.ones(8, dtype=F64), rtol=0, atol=1e-10)


def test_lanton_group_normalisation():
    """Least-noisy layer of a group gets exactly the base lr, others less; a single square layer is
    Scion/D-Muon = Muon without Nesterov (sqrt(m/n) = 1)."""
    init = _rand_params({"a": (10, 10), "b": (10, 10), "embed.weight": (6, 4)}, 57)
    opt = R.LANTON(list(init.items()), lr=0.02, beta1=0.9, beta2=0.99)
    g = torch.Generator().manual_seed(58)
    for _ in range(5):
        G = {k: torch.randn(v.shape, generator=g) * (5.0 if k == "b" else 1.0) for k, v in init.items()}
        opt.step(G)
        lrs = {k: opt.state[k]["lr"].item() for k in init}
        assert lrs["a"] == pytest.approx(0.02, rel=1e-12) and lrs["b"] < 0.02 / 2
        assert lrs["embed.weight"] == pytest.approx(0.02, rel=1e-12)  # alone in the sign group
    single = R.LANTON([("a", init["a"])], lr=0.02, beta1=0.9)
    muon = R.Muon([("a", init["a"])], lr=0.02, momentum=0.9, nesterov=False, weight_decay=0.0)
    for _ in range(5):
        G = {"a": torch.randn(10, 10, generator=g)}
        single.step(G)
        muon.step(G)
    torch.testing.assert_close(single.params["a"], muon.params["a"], rtol=0, atol=1e-6)
