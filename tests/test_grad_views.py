"""Gradients as views of the bucket's gradient buffer (param_storage="bucket"): after the first
step backward accumulates into the buffer and the step copies nothing; every way a gradient can
stop being its view (None and recomputed, replaced, module.zero_grad) still steps with the right
values. The reference is param_storage="model", which gathers the gradients every step."""
from __future__ import annotations

import pytest
import torch

import optloom
from optloom import NonFiniteGradientError


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))


def _loss(m: torch.nn.Module, i: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(i)
    x, y = torch.randn(5, 6, generator=g), torch.randn(5, 3, generator=g)
    return torch.nn.functional.mse_loss(m(x), y)


def _in_buffer(opt, p: torch.Tensor) -> bool:
    for b in opt.buckets():
        if any(q is p for q in b.params) and b.grad_buf is not None:
            lo = b.grad_buf.data_ptr()
            hi = lo + b.grad_buf.numel() * b.grad_buf.element_size()
            return lo <= p.grad.data_ptr() < hi
    return False


def _pair(spec: str = "adamw"):
    a, b = _model(), _model()
    return a, b, optloom.optimizer(spec, a.named_parameters()), optloom.optimizer(
        spec, b.named_parameters(), param_storage="model")


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("spec", ["adamw", "muon"])
def test_views_after_first_step_and_same_trajectory(spec):
    a, b, oa, ob = _pair(spec)
    for i in range(4):
        for m, o in ((a, oa), (b, ob)):
            o.zero_grad()
            _loss(m, i).backward()
            o.step()
        assert _same(a, b), i
        assert all(_in_buffer(oa, p) for p in a.parameters())
    # zero_grad keeps the views (zeroed in place); backward accumulates into them
    ptrs = [p.grad.data_ptr() for p in a.parameters()]
    oa.zero_grad()
    assert all(p.grad is not None and not p.grad.any() for p in a.parameters())
    _loss(a, 9).backward()
    assert [p.grad.data_ptr() for p in a.parameters()] == ptrs


def test_replaced_and_recomputed_gradients_are_copied_in():
    a, b, oa, ob = _pair()
    for i in range(5):
        for m, o in ((a, oa), (b, ob)):
            if i == 1:
                m.zero_grad()  # nn.Module: set_to_none=True, autograd allocates fresh tensors
            elif i == 2:
                o.zero_grad(set_to_none=True)
            else:
                o.zero_grad()
            _loss(m, i).backward()
            if i == 3:  # the user replaces one gradient with a fresh tensor
                w = m[0].weight
                w.grad = w.grad.clone() * 0.5
            if i == 4:  # ... or with another parameter's gradient view (aliases the buffer)
                m[2].bias.grad = m[2].bias.grad.clone()
            o.step()
        assert _same(a, b), i
    assert all(_in_buffer(oa, p) for p in a.parameters())


def test_gradient_whose_data_is_reassigned_is_copied_in():
    """``p.grad.data = t`` keeps the Python object the optimizer set but moves its memory."""
    a, b, oa, ob = _pair()
    for i in range(3):
        for m, o in ((a, oa), (b, ob)):
            o.zero_grad()
            _loss(m, i).backward()
            if i == 2:
                m[0].weight.grad.data = torch.randn(m[0].weight.shape, generator=torch.Generator().manual_seed(7))
            o.step()
        assert _same(a, b), i


def test_explicit_set_to_none_follows_torch():
    a, _, oa, _ = _pair()
    _loss(a, 0).backward()
    oa.step()
    oa.zero_grad(set_to_none=True)
    assert all(p.grad is None for p in a.parameters())
    _loss(a, 1).backward()
    oa.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in a.parameters())


def _second_backward():
    """A model and optimizer after one step, ``zero_grad()`` and a second backward: the
    gradients are views of the bucket's buffer."""
    a, _, oa, _ = _pair()
    _loss(a, 0).backward()
    oa.step()
    oa.zero_grad()
    _loss(a, 1).backward()
    return a, oa


def test_gradient_set_to_none_is_still_skipped():
    a, oa = _second_backward()
    frozen = a[2].bias
    frozen.grad = None
    before = frozen.detach().clone()
    oa.step()
    assert torch.equal(frozen, before)


def test_nonfinite_gradient_in_a_view_raises_and_changes_nothing():
    a, oa = _second_backward()
    a[0].weight.grad[0, 0] = float("nan")  # written through the view, into the buffer
    params = [p.detach().clone() for p in a.parameters()]
    with pytest.raises(NonFiniteGradientError):
        oa.step()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), params))
