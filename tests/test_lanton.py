"""LANTON (algorithms.md §13) against the float64 oracle ``tests/reference/frontier.py::LANTON``:
the group reduction ρ spans every parameter of a norm group, across buckets of different shapes
(tall, wide, square, conv in the Muon group; the bias alone in the sign group, plus a second
vector in the test with two sign-group shapes).

The variants run in float64 on both sides, so the comparison sees the algorithm, not float32
rounding: F64 = 1e-6 covers the one convention the two sides differ in, Newton–Schulz's
pre-normalization X/max(‖X‖, ε) (spec, as torch.optim.Muon) vs X/(‖X‖ + ε) (reference), a relative
difference of ε/‖X‖ ≈ 1e-7 per step. The default case also runs in float32: FP32 = 2e-5 as in
tests/test_frontier_specs.py (float32 rounding 6e-8 of momentum, nuclear norm and a 5-step NS,
amplification ~10, summed over 20 steps).
"""
from __future__ import annotations

import pytest
import torch

import optloom
import tests.reference as R
from tests.spec_harness import SHAPES, assert_close, check_bitwise_resume, check_trains, one_thread, run_pair  # noqa: F401

FP32 = 2e-5
F64 = 1e-6


class Whole:
    """A reference optimizer over all parameters, with run_pair's step signature."""

    def __init__(self, ref):
        self.ref = ref

    def step(self, grads, t=None, lr=None):
        self.ref.step(grads)

    @property
    def params(self):
        return self.ref.params


CASES = [
    (dict(), dict()),
    (dict(normalization="mean", eps=1e-3, weight_decay=0.1), dict(normalization="group_mean", eps=1e-3, weight_decay=0.1)),
    (dict(estimator_mix=0.0, normalization="none"), dict(estimator="option2", normalization="none")),
]


@pytest.mark.parametrize("hyper,ref_kw", CASES, ids=["option1-min", "mean-eps-decay", "option2-none"])
def test_lanton_matches_reference_float64(hyper, ref_kw):
    hyper = dict(lr=0.02, ns_dtype="float64", **hyper)
    make = lambda init: Whole(R.LANTON(list(init.items()), lr=0.02, **ref_kw))  # noqa: E731
    errs, _ = run_pair("lanton", hyper, make, dtype=torch.float64)
    assert_close(errs, F64)


def test_lanton_matches_reference_float32():
    make = lambda init: Whole(R.LANTON(list(init.items()), lr=0.02))  # noqa: E731
    errs, _ = run_pair("lanton", dict(lr=0.02), make)
    assert_close(errs, FP32)


def test_group_min_gives_the_least_noisy_layer_the_base_lr():
    """ρ = min over the group: exactly one hidden layer (the least noisy) steps with lr·sqrt(m/n)·NS,
    i.e. its layer lr equals lr; the others get less. Checked through the published state v."""
    torch.manual_seed(0)
    ps = {k: torch.nn.Parameter(torch.randn(s)) for k, s in SHAPES.items()}
    opt = optloom.optimizer("specs/lanton.opt", list(ps.items()))
    for scale in (1.0, 3.0):
        for k, p in ps.items():
            p.grad = torch.randn_like(p) * (scale if k == "wide" else 1.0)
        opt.step()
    roots = {k: float(opt.state[p]["v"]) ** 0.5 for k, p in ps.items() if p.ndim >= 2}
    quiet = min(roots, key=roots.get)
    assert quiet != "wide"  # the layer with 3× noisier gradients is not the reference layer
    assert all(roots[k] >= roots[quiet] for k in roots)


def test_lanton_trains():
    check_trains("lanton", None, dict(lr=0.02))


def test_lanton_resumes_bitwise():
    check_bitwise_resume("lanton", None, dict(lr=0.02))
