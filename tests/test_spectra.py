"""Properties of SPECTRA (arXiv 2603.14315; mlolab/llm-spectral-clipping ``src/optim/spectra.py``,
``src/optim/base.py``) beyond the contract (tests/contract: agreement with ``R.SPECTRA`` through
the warm-up, resume, training, compile): the warm-up rule of the threshold and the pre-clip of raw
gradients."""
from __future__ import annotations

import math

import pytest
import torch

import optloom
from optloom.primitives import Ctx, lookup
from tests.spec_harness import one_thread  # noqa: F401 (one_thread: autouse)


def _ctx(step=1.0):
    return Ctx(layout="stacked", param=torch.zeros(2, 1), step=torch.tensor(step, dtype=torch.float64),
               states={})


def test_warmup_threshold_rule():
    prim = lookup("warmup_threshold")
    f64 = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    for step, lr, want in [(1, 2.5e-4, 20.0), (2000, 1e-3, 5.0), (2001, 2.5e-4, 5.0), (5, 0.0, math.inf)]:
        got = prim.fn(_ctx(float(step)), c=f64(5.0), peak_lr=f64(1e-3), lr=f64(lr), warmup_steps=2000)
        assert float(got) == pytest.approx(want), (step, lr)
        ctx = Ctx(layout="single", param=torch.zeros(1), step=step, states={})
        assert prim.ref(ctx, 5.0, 1e-3, lr, 2000) == pytest.approx(want)


def test_spectral_preclip_matches_svd_and_skips_vectors():
    """SPECTRA's pre-clip (src/optim/base.py) on raw gradients: every singular value σ ↦ σ/sqrt(1 + σ²/c²)
    (SVD oracle, float64), conv gradients as (out, −1) matrices, vectors untouched. c is chosen
    so σ_max/c ≈ 5, where 10 coupled-NS iterations converge (spectral.py docstring); float32
    compute leaves ~1e-6 relative (roundoff 6e-8 × ~20 matrix products), so 1e-5."""
    g = torch.Generator().manual_seed(11)
    ps = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in [(8, 12), (12, 8), (4, 3, 3, 3), (12,)]]
    for p in ps:
        p.grad = torch.randn(p.shape, generator=g)
    before = [p.grad.clone() for p in ps]
    c = max(float(torch.linalg.matrix_norm(b.reshape(b.shape[0], -1), ord=2)) for b in before[:3]) / 5
    optloom.spectral_preclip_(ps, c=c, dtype="float32")
    for p, b in zip(ps[:3], before[:3]):
        U, S, Vh = torch.linalg.svd(b.reshape(b.shape[0], -1).double(), full_matrices=False)
        want = (U * (S / torch.sqrt(1 + S**2 / c**2))) @ Vh
        got = p.grad.reshape(b.shape[0], -1).double()
        assert float((got - want).norm() / want.norm()) < 1e-5
    assert torch.equal(ps[3].grad, before[3])
    with pytest.raises(ValueError, match="argument 'c'"):
        optloom.spectral_preclip_(ps, c=-1.0)
