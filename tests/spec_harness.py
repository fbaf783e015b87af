"""The harness of the spec contract (``tests/contract``) and of the family property tests:
parameter shapes, running a spec next to an independent reference on the same fresh gradients,
training a small model, and bitwise resume."""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable

import pytest
import torch

import optloom

SPECS = "specs"
STEPS = 20
SHAPES = {"tall": (12, 8), "wide": (8, 12), "square": (10, 10), "conv": (4, 3, 3, 3), "bias": (12,)}
MATRICES = ("tall", "wide", "square", "conv")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny matrices: thread-pool overhead dominates on a 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def params(seed: int, keys=tuple(SHAPES)) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ps = {k: torch.randn(s, generator=g) * 0.5 for k, s in SHAPES.items()}
    return {k: ps[k] for k in keys}


class Composite:
    """A reference side in parts: ``matrix_ref`` takes the matrices (the ``MATRICES`` present),
    ``vector_ref`` the rest (the bias). A part is a reference optimizer: ``part(named_params)``
    with ``.step(grads)`` and ``.params``."""

    def __init__(self, init: dict[str, torch.Tensor], matrix_ref: Callable[[list], Any],
                 vector_ref: Callable[[list], Any] | None = None):
        mats = [k for k in init if k in MATRICES]
        vecs = [k for k in init if k not in MATRICES]
        self.mat = matrix_ref([(k, init[k]) for k in mats])
        self.vec = vector_ref([(k, init[k]) for k in vecs]) if vecs else None

    def step(self, grads: dict[str, torch.Tensor], t: int | None = None, lr: float | None = None) -> None:
        self.mat.step({k: g for k, g in grads.items() if k in self.mat.params})
        if self.vec is not None:
            self.vec.step({k: g for k, g in grads.items() if k in self.vec.params})

    @property
    def params(self) -> dict[str, torch.Tensor]:
        return {**self.mat.params, **(self.vec.params if self.vec is not None else {})}


@dataclass
class Run:
    """A spec run next to its reference side: the relative error of each parameter's displacement
    ``W_t − W_0`` (``errs``) and what a tolerance or a precondition may look at."""
    errs: dict[str, float]
    side: Any
    opt: torch.optim.Optimizer
    ps: dict[str, torch.Tensor]
    init: dict[str, torch.Tensor]
    steps: int

    def param_errors(self) -> dict[str, float]:
        """Norm-wise relative error of each final parameter (for oracles stated on the weights)."""
        ref = self.side.params
        return {k: float((p.detach().double() - ref[k]).norm() / ref[k].norm()) for k, p in self.ps.items()}

    def displacement(self, k: str) -> torch.Tensor:
        """The spec's displacement of parameter k, in float64."""
        return self.ps[k].detach().double() - self.init[k].double()


def run_pair(spec: str, hyper: dict, make_side: Callable[[dict], Any], name: str | None = None,
             steps: int = STEPS, seed: int = 0, grad_scale: float = 1.0,
             schedule: Callable[[int], float] | None = None, dtype: torch.dtype = torch.float32,
             keys=tuple(SHAPES)) -> Run:
    """Run the spec and the reference side by side on fresh random gradients. ``make_side(init)``
    builds the side from the (float32) initial values; a side with ``bind(opt, ps)`` is shown the
    spec's optimizer and parameters (to read its state after each of its steps). ``side.step(grads,
    t, lr)`` follows the spec's step t, with the float64 gradients. ``schedule(t)`` (1-based) sets
    ``param_groups[0]["lr"]`` before step t, as an lr scheduler would, and is told to the side.
    ``dtype``: the spec side's parameter dtype (float64 isolates the algorithm from float32
    rounding). ``keys``: which of ``SHAPES`` take part."""
    init = params(seed, keys)
    ps = {k: torch.nn.Parameter(v.clone().to(dtype)) for k, v in init.items()}
    opt = optloom.optimizer(f"{SPECS}/{spec}.opt", list(ps.items()), name=name, **hyper)
    side = make_side(init)
    if hasattr(side, "bind"):
        side.bind(opt, ps)
    gen = torch.Generator().manual_seed(1000 + seed)
    for t in range(1, steps + 1):
        lr = schedule(t) if schedule else None
        if lr is not None:
            opt.param_groups[0]["lr"] = lr
        grads = {k: torch.randn(SHAPES[k], generator=gen) * grad_scale for k in keys}
        for k, p in ps.items():
            p.grad = grads[k].clone().to(dtype)
        opt.step()
        side.step({k: g.double() for k, g in grads.items()}, t, lr)
    return Run(displacement_errors(ps, init, side.params), side, opt, ps, init, steps)


def displacement_errors(ps: dict[str, torch.Tensor], init: dict[str, torch.Tensor],
                        ref: dict[str, torch.Tensor]) -> dict[str, float]:
    """Norm-wise relative error of each parameter's displacement ``W_t − W_0`` against the
    reference's (which must have moved, or the comparison would be weak)."""
    errs = {}
    for k in init:
        d_spec = ps[k].detach().double() - init[k].double()
        d_ref = ref[k] - init[k].double()
        assert d_ref.norm() > 1e-3, f"{k}: the reference barely moved; the comparison would be weak"
        errs[k] = float((d_spec - d_ref).norm() / d_ref.norm())
    return errs


def assert_close(errs: dict[str, float], tol: float) -> None:
    bad = {k: e for k, e in errs.items() if not e < tol}
    assert not bad, f"relative displacement error above {tol}: {bad} (all: {errs})"


class Net(torch.nn.Module):
    """A conv layer and a 2-layer MLP (names without embed/head: every weight is a hidden matrix)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.fc1 = torch.nn.Linear(4 * 4 * 4, 32)
        self.fc2 = torch.nn.Linear(32, 3)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(torch.tanh(self.conv(x)).flatten(1))))


def check_trains(spec: str, name: str | None, hyper: dict, lr_at: Callable[[int], float] | None = None,
                 steps: int = 40) -> None:
    """The spec lowers a small conv+MLP's loss below 0.8× its start (eager backend)."""
    torch.manual_seed(0)
    net = Net()
    g = torch.Generator().manual_seed(1)
    X, Y = torch.randn(64, 3, 6, 6, generator=g), torch.randn(64, 3, generator=g)
    opt = optloom.optimizer(f"{SPECS}/{spec}.opt", net.named_parameters(), backend="eager", name=name, **hyper)
    loss0 = None
    for t in range(1, steps + 1):
        if lr_at is not None:
            opt.param_groups[0]["lr"] = lr_at(t)
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(net(X), Y)
        loss.backward()
        opt.step()
        loss0 = float(loss.detach()) if loss0 is None else loss0
    with torch.no_grad():
        final = float(torch.nn.functional.mse_loss(net(X), Y))
    assert math.isfinite(final) and final < 0.8 * loss0, (loss0, final)


def check_bitwise_resume(spec: str, name: str | None, hyper: dict,
                         lr_at: Callable[[int], float] | None = None) -> None:
    """10 steps, state_dict → fresh parameters + fresh optimizer → 10 more == 20 straight, bitwise.
    A tall matrix, the conv and the bias: graph builds dominate the runtime, so the straight run
    is the first optimizer continued."""
    keys = ("tall", "conv", "bias")
    gen = torch.Generator().manual_seed(4)
    grads = [{k: torch.randn(SHAPES[k], generator=gen) for k in keys} for _ in range(20)]
    set_lr = None if lr_at is None else (lambda opt, t: opt.param_groups[0].__setitem__("lr", lr_at(t)))
    assert_resume_equals_straight(
        lambda ps: optloom.optimizer(f"{SPECS}/{spec}.opt", ps, name=name, **hyper), params(3, keys), grads, 10, set_lr)


def assert_resume_equals_straight(build: Callable[[list], Any], init: dict[str, torch.Tensor], grads: list[dict],
                                  split: int, before_step: Callable[[Any, int], None] | None = None) -> None:
    """``grads[:split]`` on a first optimizer, its state_dict loaded into a fresh optimizer over
    copies of its parameters, ``grads[split:]`` on both: the two must end bitwise equal.
    ``before_step(opt, t)`` runs before each (1-based) step ``t``, e.g. an lr schedule."""
    def make(values):
        ps = {k: torch.nn.Parameter(v.clone()) for k, v in values.items()}
        return ps, build(list(ps.items()))

    def run(ps, opt, gs, t0):
        for i, gd in enumerate(gs):
            if before_step is not None:
                before_step(opt, t0 + i)
            for k, p in ps.items():
                p.grad = gd[k].clone()
            opt.step()

    ps_a, opt_a = make(init)
    run(ps_a, opt_a, grads[:split], 1)
    sd = copy.deepcopy(opt_a.state_dict())
    ps_c, opt_c = make({k: p.detach() for k, p in ps_a.items()})
    opt_c.load_state_dict(sd)
    run(ps_a, opt_a, grads[split:], split + 1)  # straight
    run(ps_c, opt_c, grads[split:], split + 1)  # resumed
    for k in init:
        assert torch.equal(ps_a[k], ps_c[k]), k
