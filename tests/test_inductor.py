"""The inductor backend: eager and compiled steps agree on every shipped spec, and runtime
hyperparameter changes (an LR schedule, weight decay edits) never recompile."""
from __future__ import annotations

import pytest
import torch
import torch._dynamo

import optloom
from optloom.lang.loader import SHIPPED, shipped_names
from optloom.lang.parser import parse

pytestmark = pytest.mark.slow

SHAPES = {"embed.weight": (10, 4), "l1.weight": (6, 4), "l1.bias": (6,), "l2.weight": (4, 6),
          "conv.weight": (3, 2, 2, 2), "head.weight": (3, 4)}


def _optimizers_of(spec: str) -> list[str]:
    return [o.name for o in parse((SHIPPED / f"{spec}.opt").read_text()).optimizers]


CASES = [(spec, name) for spec in shipped_names() for name in _optimizers_of(spec)]


def _params(seed: int) -> list[tuple[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(k, torch.randn(s, generator=g)) for k, s in SHAPES.items()]


@pytest.mark.parametrize("spec, name", CASES, ids=[f"{s}:{n}" for s, n in CASES])
def test_eager_and_inductor_agree(spec, name):
    a, b = _params(0), _params(0)
    kw = {"momentum": 0.9} if spec == "sgd" else {}
    eager = optloom.optimizer(spec, a, name=name, backend="eager", **kw)
    comp = optloom.optimizer(spec, b, name=name, backend="inductor", **kw)
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        for (_, p), (_, q) in zip(a, b):
            g = torch.randn(p.shape, generator=gen)
            p.grad, q.grad = g.clone(), g.clone()
        eager.step()
        comp.step()
    # fp32 rounding: inductor fuses and reorders reductions (~1e-7 relative per op); matrix
    # iterations (Newton–Schulz, QR, Sinkhorn) can grow that by a few orders over 3 steps.
    for (k, p), (_, q) in zip(a, b):
        assert float((p - q).norm() / q.norm()) < 1e-5, k
        for s, v in eager.state[p].items():
            w = comp.state[q][s]
            if not w.is_floating_point():  # integer state (counters, indices): exact
                assert torch.equal(v, w), (k, s)
                continue
            assert float((v - w).norm()) <= 1e-5 * float(w.norm()) + 1e-6, (k, s)


@pytest.mark.parametrize("spec", ["adamw", "muon"])
def test_schedules_and_hyperparameter_edits_never_recompile(spec):
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))
    opt = optloom.optimizer(spec, model.named_parameters(), backend="inductor")
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    x, y = torch.randn(32, 8), torch.randn(32, 4)

    def step():
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        sched.step()

    step()  # compiles once
    lrs = set()
    with torch._dynamo.config.patch(error_on_recompile=True):
        for i in range(30):
            if i == 15:
                opt.param_groups[0]["weight_decay"] = 0.3
            lrs.add(opt.param_groups[0]["lr"])
            step()
    assert len(lrs) == 30


def _cache_run(named_seed: int, shapes: dict, steps: int = 2) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(named_seed)
    named = [(k, torch.randn(s, generator=g)) for k, s in shapes.items()]
    opt = optloom.optimizer("adamw", named, backend="inductor")
    gen = torch.Generator().manual_seed(5)
    for _ in range(steps):
        for _, p in named:
            p.grad = torch.randn(p.shape, generator=gen)
        opt.step()
    return [p.detach().clone() for _, p in named]


def test_compiled_step_cache_saves_loads_and_survives_corruption(tmp_path, monkeypatch):
    """A second build of the same step loads it from OPTLOOM_CACHE_DIR; a corrupted file is
    reported, replaced, and the step still computes the same values; other shapes get another file."""
    from optloom.backends import compile_cache, get_backend

    monkeypatch.setenv("OPTLOOM_CACHE_DIR", str(tmp_path))
    inductor = get_backend("inductor")
    inductor.forget_compiled()
    shapes = {"a.weight": (6, 4), "a.bias": (6,)}
    compile_cache.events.clear()
    first = _cache_run(0, shapes)
    files = list(tmp_path.glob("step-*.bin"))
    assert compile_cache.events == ["saved"] and len(files) == 1

    inductor.forget_compiled()  # as in a new process: nothing compiled in memory
    assert all(torch.equal(x, y) for x, y in zip(first, _cache_run(0, shapes)))
    assert compile_cache.events[-1] == "loaded"

    files[0].write_bytes(files[0].read_bytes()[:-100])  # truncated
    inductor.forget_compiled()
    with pytest.warns(RuntimeWarning, match="compiling the step again"):
        again = _cache_run(0, shapes)
    assert compile_cache.events[-1] == "recompiled"
    assert all(torch.equal(x, y) for x, y in zip(first, again))
    inductor.forget_compiled()
    _cache_run(0, shapes)
    assert compile_cache.events[-1] == "loaded"

    inductor.forget_compiled()
    _cache_run(0, {"a.weight": (5, 4), "a.bias": (5,)})
    assert compile_cache.events[-1] == "saved" and len(list(tmp_path.glob("step-*.bin"))) == 2


def test_compiled_step_cache_can_be_disabled(tmp_path, monkeypatch):
    from optloom.backends import compile_cache, get_backend

    monkeypatch.setenv("OPTLOOM_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("OPTLOOM_COMPILE_CACHE", "0")
    get_backend("inductor").forget_compiled()
    compile_cache.events.clear()
    _cache_run(1, {"b.weight": (3, 5)})
    assert compile_cache.events == ["compiled"] and not list(tmp_path.glob("*"))
