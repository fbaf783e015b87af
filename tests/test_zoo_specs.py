"""The well-known optimizers shipped as specs (issue 14: "Any optimizer a researcher knows"), each
run next to an independent oracle — torch.optim or pytorch_optimizer 4.1.0 (a test-only
dependency, pinned in the ``dev`` extra) run on **float64** copies of the parameters, or float64
code in ``tests/reference/zoo.py`` written from the paper — for ≥ 20 steps on the harness's tall,
wide, square and conv weights and a bias (``tests/spec_harness.py``), with fresh random gradients.

Tolerance: the relative error of each parameter's displacement ``W_t − W_0`` (the harness's
``run_pair``) below 2e-5 — the float32 Adam-type bound of ``tests/contract/tolerances.py``
(``ADAM_FP32``): the spec runs in float32 (u = 6e-8), each step rounds the moments and the update at
~1e-7 relative, a division by ``sqrt(v)`` can amplify one step's input error ~10×, and 20 steps
add up linearly. Each oracle is float64, so the comparison sees the spec's rounding and nothing of
the oracle's. A wrong hyperparameter or formula moves the displacement by 1e-3 or more.

Each spec also trains a small model, resumes bitwise from a ``state_dict`` and (slow) compiles to
the same step as eager."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
import torch

import optloom
from tests.spec_harness import (SHAPES, assert_close, check_bitwise_resume, check_trains,  # noqa: F401
                                one_thread, run_pair)

pytorch_optimizer = pytest.importorskip("pytorch_optimizer")
P, O = pytorch_optimizer, torch.optim

ADAM_FP32 = 2e-5
EPS32 = 1.1920928955078125e-07  # torch.finfo(torch.float32).eps: torch Adafactor's ε₁ = None


class Float64Oracle:
    """A torch.optim-style optimizer over float64 copies of the initial parameters."""

    def __init__(self, init: dict[str, torch.Tensor], make: Callable[[list], Any]):
        self.w = {k: v.double().clone().requires_grad_(True) for k, v in init.items()}
        self.opt = make(list(self.w.values()))

    def step(self, grads, t=None, lr=None):
        for k, w in self.w.items():
            w.grad = grads[k].double().clone()
        self.opt.step()

    @property
    def params(self):
        return {k: w.detach() for k, w in self.w.items()}


def oracle(make: Callable[[list], Any]) -> Callable[[dict], Float64Oracle]:
    return lambda init: Float64Oracle(init, make)


# (spec, case id, spec hyperparameters, oracle): the oracle takes the same hyperparameters
CASES = [
    ("nadam", "defaults", dict(lr=1e-2), lambda p: O.NAdam(p, lr=1e-2)),
    ("nadam", "betas-decay-psi", dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=0.1, momentum_decay=0.01),
     lambda p: O.NAdam(p, lr=1e-2, betas=(0.8, 0.99), weight_decay=0.1, momentum_decay=0.01)),
    # β₂ = 0.999: ρ_t ≤ 5 for t ≤ 5 (the SGD branch), rectified after; β₂ = 0.9: rectified from t = 4
    ("radam", "defaults", dict(lr=1e-2), lambda p: O.RAdam(p, lr=1e-2)),
    ("radam", "beta2-0.9-decay", dict(lr=1e-2, betas=(0.9, 0.9), weight_decay=0.1),
     lambda p: O.RAdam(p, lr=1e-2, betas=(0.9, 0.9), weight_decay=0.1)),
    ("adamw_amsgrad", "decay", dict(lr=1e-2, weight_decay=0.1),
     lambda p: O.AdamW(p, lr=1e-2, weight_decay=0.1, amsgrad=True)),
    ("adafactor", "defaults", dict(lr=1e-2), lambda p: O.Adafactor(p, lr=1e-2, eps=(EPS32, 1e-3))),
    ("adafactor", "decay-clip", dict(lr=3e-2, weight_decay=0.1, d=1.5, beta2_decay=-0.6),
     lambda p: O.Adafactor(p, lr=3e-2, weight_decay=0.1, d=1.5, beta2_decay=-0.6, eps=(EPS32, 1e-3))),
    ("lamb", "defaults", dict(lr=1e-2), lambda p: P.Lamb(p, lr=1e-2)),
    ("lamb", "decay-betas", dict(lr=1e-2, weight_decay=0.1, betas=(0.8, 0.99)),
     lambda p: P.Lamb(p, lr=1e-2, weight_decay=0.1, betas=(0.8, 0.99))),
    ("adabelief", "defaults", dict(lr=1e-2), lambda p: P.AdaBelief(p, lr=1e-2)),
    ("adabelief", "decay-eps", dict(lr=1e-2, weight_decay=0.1, eps=1e-8),
     lambda p: P.AdaBelief(p, lr=1e-2, weight_decay=0.1, eps=1e-8)),
    ("adan", "defaults", dict(lr=1e-2), lambda p: P.Adan(p, lr=1e-2)),
    ("adan", "betas-proximal-decay", dict(lr=1e-2, weight_decay=0.1, betas=(0.9, 0.8, 0.95)),
     lambda p: P.Adan(p, lr=1e-2, weight_decay=0.1, betas=(0.9, 0.8, 0.95))),
]

# the hyperparameters of the training, resume and compile checks
TRAIN = {"nadam": dict(lr=1e-2), "radam": dict(lr=1e-2), "adamw_amsgrad": dict(lr=1e-2),
         "adafactor": dict(lr=1e-2), "lamb": dict(lr=1e-2), "adabelief": dict(lr=1e-2), "adan": dict(lr=1e-2)}


@pytest.mark.parametrize("spec, hyper, make", [pytest.param(s, h, m, id=f"{s}-{i}") for s, i, h, m in CASES])
def test_agrees_with_float64_oracle(spec, hyper, make):
    run = run_pair(spec, hyper, oracle(make))
    assert_close(run.errs, ADAM_FP32)


@pytest.mark.parametrize("spec", list(TRAIN))
def test_trains(spec):
    check_trains(spec, None, TRAIN[spec])


@pytest.mark.parametrize("spec", list(TRAIN))
def test_resumes_bitwise(spec):
    check_bitwise_resume(spec, None, TRAIN[spec])


def test_adafactor_state_is_factored():
    """A 12×8 matrix keeps 12 + 8 second-moment numbers (torch.optim.Adafactor's row_var/col_var),
    a conv weight (4, 3, 3, 3) 4·3·(3 + 3), the bias its 12: ``optloom show``'s state bytes."""
    w = {"w": torch.nn.Parameter(torch.randn(12, 8)), "conv": torch.nn.Parameter(torch.randn(4, 3, 3, 3)),
         "b": torch.nn.Parameter(torch.randn(12))}
    opt = optloom.optimizer("adafactor", list(w.items()), backend="eager")
    for p in w.values():
        p.grad = torch.randn_like(p)
    opt.step()
    shapes = {k: {s: tuple(v.shape) for s, v in opt.state[p].items() if s != "step"} for k, p in w.items()}
    assert shapes == {"w": {"row_var": (12, 1), "col_var": (1, 8)},
                      "conv": {"row_var": (4, 3, 3, 1), "col_var": (4, 3, 1, 3)}, "b": {"variance": (12,)}}
    program = optloom.compile((Path(optloom.__file__).parent / "specs" / "adafactor.opt").read_text())
    assert program.state_bytes(list(w.items())) == 4 * (12 + 8 + 4 * 3 * 6 + 12)


@pytest.mark.slow
@pytest.mark.parametrize("spec", list(TRAIN))
def test_eager_equals_inductor(spec):
    shapes = {"l1.weight": (6, 4), "l1.bias": (6,), "conv.weight": (3, 2, 2, 2)}
    g = torch.Generator().manual_seed(0)
    a = [(k, torch.randn(s, generator=g)) for k, s in shapes.items()]
    b = [(k, v.clone()) for k, v in a]
    eager = optloom.optimizer(spec, a, backend="eager", **TRAIN[spec])
    comp = optloom.optimizer(spec, b, backend="inductor", **TRAIN[spec])
    for _ in range(3):
        for (_, p), (_, q) in zip(a, b):
            p.grad = torch.randn(p.shape, generator=g)
            q.grad = p.grad.clone()
        eager.step()
        comp.step()
    for (k, p), (_, q) in zip(a, b):
        assert float((p - q).norm() / q.norm()) < 1e-5, k
