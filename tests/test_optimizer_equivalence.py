"""The baseline specs against torch.optim (AdamW, SGD, Muon) and float64 paper equations (Lion,
Signum), over 50+ steps with fresh random data. Tolerances: fp32 rounding (1e-6 relative, norm-wise)."""
from __future__ import annotations

import pytest
import torch

import optloom

STEPS = 50


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 12), torch.nn.Tanh(),
                               torch.nn.Linear(12, 4))


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def _train_pair(spec_opt, torch_opts, m1, m2, steps=STEPS):
    gen = torch.Generator().manual_seed(1234)
    for _ in range(steps):
        x, y = torch.randn(32, 8, generator=gen), torch.randn(32, 4, generator=gen)
        for m, opts in ((m1, [spec_opt]), (m2, torch_opts)):
            for o in opts:
                o.zero_grad()
            torch.nn.functional.mse_loss(m(x), y).backward()
            for o in opts:
                o.step()


@pytest.mark.parametrize("kw", [dict(lr=1e-2), dict(lr=3e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)])
def test_adamw_matches_torch(kw):
    m1, m2 = _model(0), _model(0)
    _train_pair(optloom.optimizer("adamw", m1.named_parameters(), **kw), [torch.optim.AdamW(m2.parameters(), **kw)], m1, m2)
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert _rel(a, b) < 1e-6


@pytest.mark.parametrize("kw", [
    dict(lr=1e-2),
    dict(lr=1e-2, momentum=0.9),
    dict(lr=1e-2, momentum=0.9, dampening=0.3, weight_decay=1e-2),
    dict(lr=1e-2, momentum=0.9, nesterov=True, weight_decay=1e-2),
])
def test_sgd_matches_torch(kw):
    m1, m2 = _model(1), _model(1)
    _train_pair(optloom.optimizer("sgd", m1.named_parameters(), **kw), [torch.optim.SGD(m2.parameters(), **kw)], m1, m2)
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert _rel(a, b) < 1e-6


@pytest.mark.parametrize("adjust_lr_fn", ["original", "match_rms_adamw"])
def test_muon_matches_torch_muon(adjust_lr_fn):
    """Same gradients into both (so the comparison is not chaotic): torch.optim.Muon runs its NS in
    bf16 with fused addmm; optloom's bf16 NS uses the same fused baddbmm, so the parameters agree
    to fp32 rounding (the bf16 update is exactly representable in fp32; only accumulation differs)."""
    torch.manual_seed(2)
    shapes = [(16, 8), (8, 16), (12, 12), (6, 2, 3, 3)]
    ps = [torch.randn(s) for s in shapes]
    qs = [p.clone() for p in ps]
    opt = optloom.optimizer("muon", [(f"layer{i}.weight", p) for i, p in enumerate(ps)], lr=0.02,
                            weight_decay=0.1, adjust_lr_fn=adjust_lr_fn, ns_dtype="bfloat16")
    ref = torch.optim.Muon(qs[:3], lr=0.02, weight_decay=0.1, adjust_lr_fn=adjust_lr_fn)
    conv_view = qs[3].view(6, -1)  # torch.optim.Muon is 2-D only: the conv weight as (out, in*kh*kw)
    conv_ref = torch.optim.Muon([conv_view], lr=0.02, weight_decay=0.1, adjust_lr_fn=adjust_lr_fn)
    for _ in range(STEPS):
        for p, q in zip(ps, qs):
            g = torch.randn(p.shape)
            p.grad, q.grad = g.clone(), g.clone()
        conv_view.grad = qs[3].grad.view(6, -1)
        opt.step()
        ref.step()
        conv_ref.step()
    for p, q in zip(ps, qs):
        assert _rel(p, q) < 1e-6


def test_muon_routes_vectors_and_embeddings_to_adamw():
    torch.manual_seed(3)
    emb = torch.nn.Embedding(10, 6)
    lin = torch.nn.Linear(6, 6)
    params = [("embed.weight", emb.weight), ("lin.weight", lin.weight), ("lin.bias", lin.bias)]
    opt = optloom.optimizer("muon", params)
    assert [opt.routes()[p].label for _, p in params] == ["rest", "hidden", "rest"]


def _float64_loop(spec: str, ps: list[torch.Tensor], grads: list[list[torch.Tensor]], lr: float, wd: float,
                  b1: float, b2: float) -> list[torch.Tensor]:
    """Lion (Chen et al. 2023, Alg. 2) and Signum (Bernstein et al. 2018, Alg. 3) from the papers."""
    ws = [p.double().clone() for p in ps]
    ms = [torch.zeros_like(w) for w in ws]
    for step in grads:
        for w, m, g in zip(ws, ms, step):
            g = g.double()
            if spec == "lion":
                u = torch.sign(b1 * m + (1 - b1) * g)
                m.mul_(b2).add_((1 - b2) * g)
            else:
                m.mul_(b1).add_((1 - b1) * g)
                u = torch.sign(m)
            w.mul_(1 - lr * wd).sub_(lr * u)
    return ws


@pytest.mark.parametrize("spec", ["lion", "signum"])
def test_sign_methods_match_float64_equations(spec):
    torch.manual_seed(4)
    ps = [torch.randn(7, 5), torch.randn(5), torch.randn(3, 2, 2)]
    start = [p.clone() for p in ps]
    grads = [[torch.randn(p.shape) for p in ps] for _ in range(STEPS)]
    lr, wd = 1e-3, 0.1
    kw = dict(lr=lr, weight_decay=wd, **(dict(betas=(0.9, 0.99)) if spec == "lion" else dict(momentum=0.9)))
    opt = optloom.optimizer(spec, ps, **kw)
    for step in grads:
        for p, g in zip(ps, step):
            p.grad = g.clone()
        opt.step()
    want = _float64_loop(spec, start, grads, lr, wd, 0.9, 0.99)
    for p, w in zip(ps, want):
        # The fp32 weights are rounded once per step (relative 2^-24 each), so after STEPS steps they may
        # drift from the float64 run by up to STEPS·2^-23 relative; sign() flips would show as far more.
        assert _rel(p, w) < STEPS * 2.0 ** -23
