"""torch.optim conventions a user relies on: copies and pickles are independent working
optimizers; complex parameters are refused clearly; a scheduler cycling a tuple of floats
(OneCycleLR's betas) never re-traces; zero-size parameters step harmlessly; a parameter whose
dtype changes (``model.double()``) keeps its state. Oracles: torch.optim on the same inputs."""
from __future__ import annotations

import copy
import pickle

import pytest
import torch

import optloom
from optloom import UnsupportedParameterError


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))


def _backward(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(8, 6, generator=g, dtype=next(model.parameters()).dtype)
    model.zero_grad(set_to_none=True)
    model(x).square().mean().backward()


def _step(model: torch.nn.Module, opt: torch.optim.Optimizer, seed: int) -> None:
    _backward(model, seed)
    opt.step()


@pytest.mark.parametrize("spec", ["adamw", "muon"])
@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_copy_is_an_independent_working_optimizer(spec, how):
    model = _model()
    opt = optloom.optimizer(spec, model.named_parameters(), backend="eager", nonfinite="skip")
    for s in range(3):
        _step(model, opt, s)
    both = copy.deepcopy((model, opt)) if how == "deepcopy" else pickle.loads(pickle.dumps((model, opt)))
    model2, opt2 = both
    assert (opt2.backend, opt2.nonfinite, opt2.param_storage) == ("eager", "skip", "bucket")
    for s in range(3, 6):
        _step(model, opt, s)
        _step(model2, opt2, s)
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)  # the copy continues bitwise like the original
    before = [p.detach().clone() for p in model.parameters()]
    _step(model2, opt2, 99)  # stepping the copy leaves the original alone
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), before))


def test_complex_parameter_is_refused_with_its_name():
    w = torch.nn.Parameter(torch.randn(3, 3, dtype=torch.complex64))
    with pytest.raises(UnsupportedParameterError, match=r"'w' is complex.*view_as_real"):
        optloom.optimizer("adamw", [("w", w)], backend="eager")


def test_one_cycle_over_betas_never_retraces_and_equals_torch():
    model, ref = _model(1), _model(1)
    opt = optloom.optimizer("adamw", model.parameters(), backend="eager", lr=1e-2, weight_decay=0.1)
    topt = torch.optim.AdamW(ref.parameters(), lr=1e-2, weight_decay=0.1)
    kw = dict(max_lr=3e-2, total_steps=12, base_momentum=0.8, max_momentum=0.95)  # cycles betas[0]
    sched, tsched = (torch.optim.lr_scheduler.OneCycleLR(o, **kw) for o in (opt, topt))
    graphs = None
    for s in range(12):
        _step(model, opt, s)
        _step(ref, topt, s)
        sched.step()
        tsched.step()
        now = [b.graph for b in opt.buckets()]
        assert graphs is None or all(a is b for a, b in zip(graphs, now)), "a betas change re-traced the step"
        graphs = now
    assert opt.param_groups[0]["betas"][0] != kw["max_momentum"]  # the scheduler did move betas
    for a, b in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_zero_size_matrix_steps_harmlessly():
    torch.manual_seed(0)
    empty = torch.nn.Parameter(torch.randn(0, 5))
    w = torch.nn.Parameter(torch.randn(4, 5))
    opt = optloom.optimizer("muon", [("h.empty", empty), ("h.w", w)], backend="eager")
    before = w.detach().clone()
    empty.grad, w.grad = torch.zeros(0, 5), torch.randn(4, 5)
    opt.step()
    assert empty.shape == (0, 5) and not torch.equal(w, before)


def test_dtype_change_adopts_state_and_matches_torch():
    model, ref = _model(2), _model(2)
    opt = optloom.optimizer("adamw", model.parameters(), backend="eager")
    topt = torch.optim.AdamW(ref.parameters())
    for s in range(2):
        _step(model, opt, s)
        _step(ref, topt, s)
    model.double()
    ref.double()
    for st in topt.state.values():  # torch.optim keeps float32 state and fails on double gradients: convert
        st.update({k: v.double() for k, v in st.items() if k != "step"})
    for s in range(2, 5):
        _step(model, opt, s)
        _step(ref, topt, s)
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert {st["exp_avg"].dtype for st in opt.state.values()} == {torch.float64}
    for a, b in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_device_kernel_runs_in_place_of_the_primitive():
    """A kernel registered for (backend, device) replaces the primitive in graphs lowered after."""
    from optloom.primitives import lookup

    calls = []
    sign = lookup("sign")

    def counting_sign(ctx, x, *args, **kwargs):
        calls.append(tuple(x.shape))
        return sign.fn(ctx, x, *args, **kwargs)

    w = torch.nn.Parameter(torch.randn(3, 4))
    optloom.register_kernel("sign", backend="eager", device="cpu")(counting_sign)
    try:
        opt = optloom.optimizer("signum", [w], backend="eager")
        w.grad = torch.randn(3, 4)
        opt.step()
    finally:
        optloom.backends.unregister_kernel("sign", backend="eager", device="cpu")
    assert calls, "the registered kernel was not traced into the step graph"


def test_swap_params_exchanges_weights_with_a_state_and_back():
    w = torch.nn.Parameter(torch.randn(3, 4))
    opt = optloom.optimizer("adamw", [("w", w)], backend="eager")
    w.grad = torch.randn(3, 4)
    opt.step()
    weights, avg = w.detach().clone(), opt.state[w]["exp_avg"].clone()
    assert opt.swap_params("exp_avg") == 1
    assert torch.equal(w, avg) and torch.equal(opt.state[w]["exp_avg"], weights)
    opt.swap_params("exp_avg")
    assert torch.equal(w, weights) and torch.equal(opt.state[w]["exp_avg"], avg)
    with pytest.raises(KeyError, match="no parameter has state 'x'.*exp_avg"):
        opt.swap_params("x")


def test_stepping_a_meta_parameter_is_refused_with_its_name():
    """Meta parameters route and bucket (cost models use them); a step has no data to change."""
    w = torch.nn.Parameter(torch.empty(3, 3, device="meta"))
    opt = optloom.optimizer("adamw", [("w", w)], backend="eager")
    opt.init_state()
    w.grad = torch.empty(3, 3, device="meta")
    with pytest.raises(UnsupportedParameterError, match=r"'w' is on the meta device"):
        opt.step()
