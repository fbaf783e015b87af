"""The inductor backend: runtime hyperparameter changes (an LR schedule, weight decay edits) never
recompile, and the on-disk compiled-step cache. (Eager == inductor on every shipped optimizer is
part of the contract: tests/contract/test_specs.py::test_eager_equals_inductor.)"""
from __future__ import annotations

import pytest
import torch
import torch._dynamo

import optloom

pytestmark = pytest.mark.slow


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


@pytest.mark.slow
def test_a_state_copied_from_the_parameter_holds_its_value_from_before_the_step():
    """``state p0 = param`` then ``apply``: the compiled step must write p0 before it updates the
    parameter (Inductor drops a ``clone`` and would copy the updated parameter: lowering._fresh)."""
    spec = "optimizer anchored(lr = 0.1) { all => state p0 = param\n grad + (param - p0) |> apply(lr) }"
    runs = {}
    for backend in ("eager", "inductor"):
        torch.manual_seed(0)
        w = torch.nn.Parameter(torch.randn(6, 5))
        start = w.detach().clone()
        opt = optloom.optimizer(spec, [w], backend=backend)
        g = torch.Generator().manual_seed(1)
        for _ in range(3):
            w.grad = torch.randn(6, 5, generator=g)
            opt.step()
        assert torch.equal(opt.state[w]["p0"], start), backend
        runs[backend] = w.detach().clone()
    torch.testing.assert_close(runs["inductor"], runs["eager"], rtol=1e-6, atol=1e-7)
