"""Properties of ARO (specs/aro.opt; arXiv 2602.09006, microsoft/dion branch dev/aro
``dion/aro.py``) beyond the contract (tests/contract: agreement with ``tests/reference/aro.py``,
resume, training, compile), and the rotated-frame construct `rotate` with the state-in-frame rule.
The arguments are in docs/derivations.md#aro-on-tall-matrices."""
from __future__ import annotations

import math

import pytest
import torch

import optloom
from optloom.primitives.rotation import frame_back, frame_in
from tests.reference.common import newton_schulz as ref_ns


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def _update_direction(shape, grads, base="sinkhorn"):
    torch.manual_seed(11)
    w = torch.randn(shape, dtype=torch.float64)
    opt = optloom.optimizer("aro", [("x.weight", w)], base=base, weight_decay=0.0)
    before = w.detach().clone()
    for g in grads:
        before = w.detach().clone()
        w.grad = g.clone()
        opt.step()
    return (w - before).flatten()


@pytest.mark.parametrize("shape", [(80, 48), (48, 80), (40, 40)])
def test_tall_matrices_are_well_posed(shape):
    """The official code's row-side rule loses its direction on tall matrices under a 1e-6
    relative perturbation (cosine ≈ 0.6 measured); the wide orientation keeps it
    (docs/derivations.md#aro-on-tall-matrices)."""
    torch.manual_seed(3)
    grads = [torch.randn(shape, dtype=torch.float64) for _ in range(3)]
    noisy = [g * (1 + 1e-6 * torch.randn_like(g)) for g in grads]
    a, b = _update_direction(shape, grads), _update_direction(shape, noisy)
    assert float(a @ b / (a.norm() * b.norm())) > 1 - 1e-6


def test_qr_column_signs_do_not_change_the_update():
    """Rᵀ → D Rᵀ (D = diag(±1)) flips rows of the rotated matrix; every base map commutes with row
    sign flips, so U = R f(Rᵀ M) is unchanged (docs/derivations.md, "Sign freedom is harmless")."""
    torch.manual_seed(5)
    shape = (8, 12)
    w1 = torch.randn(shape, dtype=torch.float64)
    w2 = w1.clone()
    o1 = optloom.optimizer("aro", [("x.weight", w1)])
    o2 = optloom.optimizer("aro", [("x.weight", w2)])
    for _ in range(3):
        g = torch.randn(shape, dtype=torch.float64)
        w1.grad, w2.grad = g.clone(), g.clone()
        o1.step()
        o2.step()
    flips = torch.tensor([1.0, -1.0] * 4)
    o2.state[w2]["rotation"].mul_(flips)  # flip column signs of R in place (a view into the bucket)
    g = torch.randn(shape, dtype=torch.float64)
    w1.grad, w2.grad = g.clone(), g.clone()
    o1.step()
    o2.step()
    assert _rel(w2, w1) < 1e-12


def test_left_singular_rotation_with_row_normalize_is_muon_direction():
    """With R = U (left singular vectors of M), Rᵀ M = Σ Vᵀ, row-normalizing gives √n Vᵀ, and
    rotating back gives √n U Vᵀ: Muon's direction up to scale (arXiv 2602.09006, Appendix A)."""
    torch.manual_seed(9)
    M = torch.randn(1, 6, 9, dtype=torch.float64)
    U, _, Vh = torch.linalg.svd(M[0], full_matrices=False)
    from optloom.primitives.normalizers import base_map_fn

    out = frame_back(base_map_fn(frame_in(M, U[None]), "row_normalize"), U[None])[0]
    assert torch.allclose(out, math.sqrt(9) * U @ Vh, atol=1e-10)


FRAME_SPEC = """
optimizer framed(lr = 0.01, norm_policy: str = "row_normalize") {
  mats: ndim == 2 =>
    rotate(norm_policy) |> momentum(0.9) |> newton_schulz(5, dtype = "float64") |> apply(lr)
}
"""


def test_state_inside_a_frame_lives_in_the_parameter_frame():
    """The documented rule: a stateful stage inside `rotate` keeps its state in the parameter's
    frame; each step reads Rₜᵀ B (frame_in) and stores Rₜ B' (frame_back). Float64 reference
    written here from that rule with SGD momentum (torch semantics) and an independent NS."""
    torch.manual_seed(13)
    for shape in [(6, 9), (9, 6)]:
        w = torch.randn(shape, dtype=torch.float64)
        ref_w = w.clone()
        opt = optloom.optimizer(FRAME_SPEC, [w])
        R = torch.eye(min(shape), dtype=torch.float32)
        B = torch.zeros(shape, dtype=torch.float64)
        for step in range(1, 8):
            g = torch.randn(shape, dtype=torch.float64)
            w.grad = g.clone()
            opt.step()
            # reference: ARO rotation of the incoming gradient (wide orientation), row_normalize base map
            tall = shape[0] > shape[1]
            X = g.T if tall else g
            F = X.new_tensor(R.double()).T @ X
            F = math.sqrt(F.shape[1]) * F / F.norm(dim=1, keepdim=True).clamp(min=1e-8)
            R = torch.linalg.qr(X @ F.T).Q.float()
            Rd = R.double()
            into = (lambda Y: Y @ Rd) if tall else (lambda Y: Rd.T @ Y)
            back = (lambda Y: Y @ Rd.T) if tall else (lambda Y: Rd @ Y)
            g_in, B_in = into(g), into(B)
            B_in = g_in.clone() if step == 1 else 0.9 * B_in + g_in
            B = back(B_in)
            ref_w = ref_w - 0.01 * back(ref_ns(B_in, "muon", 5))
            # R is stored in float32 by both: a float64 rounding difference in QR can move one fp32
            # rounding of R (6e-8 relative), which reaches the weights damped by lr — hence 1e-8.
            assert _rel(w, ref_w) < 1e-8
            assert _rel(opt.state[w]["momentum_buffer"], B) < 1e-8


def test_the_founding_line_runs_and_trains():
    spec = """
    optimizer founding(lr = 0.02, norm_policy: str = "sinkhorn") {
      mats: ndim == 2 => rotate(norm_policy) |> momentum |> newton_schulz(5) |> clip_spectral |> apply(lr)
      rest => grad |> adam((0.9, 0.999), 1e-8) |> apply(1e-2)
    }"""
    torch.manual_seed(17)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))
    opt = optloom.optimizer(spec, model.named_parameters())
    x, y = torch.randn(64, 8), torch.randn(64, 4)
    first = torch.nn.functional.mse_loss(model(x), y).item()
    for _ in range(40):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    assert torch.nn.functional.mse_loss(model(x), y).item() < 0.8 * first


def test_non_linear_state_inside_a_frame_is_rejected():
    spec = "optimizer o(lr = 0.1) { m: ndim == 2 => grad |> rotate |> adam((0.9, 0.99), 1e-8) |> apply(lr) }"
    with pytest.raises(optloom.SpecError, match="non-linear state"):
        optloom.compile(spec)


def test_identity_rotation_with_sign_is_signum_direction():
    """With R fixed at the identity, the frame is the parameter's own and the sign base map gives
    sign(M): ARO reduces to Signum with EMA momentum (docs/derivations.md, "Two special cases").
    Checked on the frame primitives, for a wide and a tall matrix (the tall one is rotated on its
    column side)."""
    from optloom.primitives.normalizers import base_map_fn

    torch.manual_seed(19)
    for shape in [(5, 9), (9, 5)]:
        M = torch.randn(1, *shape, dtype=torch.float64)
        eye = torch.eye(min(shape), dtype=torch.float64)[None]
        out = frame_back(base_map_fn(frame_in(M, eye), "sign"), eye)
        assert torch.equal(out, torch.sign(M))
