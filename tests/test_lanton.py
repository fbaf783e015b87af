"""Properties of LANTON (arXiv 2510.14009, Algorithm 1; no official code — the noise estimator
and the lr normalization are options of the spec) beyond the contract (tests/contract: agreement
with ``R.LANTON``, whose group reduction spans every parameter of a norm group across buckets of
different shapes, resume, training, compile)."""
from __future__ import annotations

import torch

import optloom
from tests.spec_harness import SHAPES, SPECS, one_thread  # noqa: F401 (one_thread: autouse)


def test_group_min_gives_the_least_noisy_layer_the_base_lr():
    """ρ = min over the group: exactly one hidden layer (the least noisy) steps with lr·sqrt(m/n)·NS,
    i.e. its layer lr equals lr; the others get less. Checked through the published state v."""
    torch.manual_seed(0)
    ps = {k: torch.nn.Parameter(torch.randn(s)) for k, s in SHAPES.items()}
    opt = optloom.optimizer(f"{SPECS}/lanton.opt", list(ps.items()))
    for scale in (1.0, 3.0):
        for k, p in ps.items():
            p.grad = torch.randn_like(p) * (scale if k == "wide" else 1.0)
        opt.step()
    roots = {k: float(opt.state[p]["v"]) ** 0.5 for k, p in ps.items() if p.ndim >= 2}
    quiet = min(roots, key=roots.get)
    assert quiet != "wide"  # the layer with 3× noisier gradients is not the reference layer
    assert all(roots[k] >= roots[quiet] for k in roots)
