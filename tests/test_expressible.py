"""Optimizers beyond the shipped ones, written from docs/language.md alone, against torch.optim
(float64, 25 steps, fresh random gradients): the language expresses them without tricks. Not
shipped — the specs live here as a check of expressiveness (issue 14)."""
from __future__ import annotations

import pytest
import torch

import optloom

SPECS = {
    "rmsprop": (
        """optimizer rmsprop(lr = 1e-2, alpha = 0.99, eps = 1e-8, weight_decay = 0.0, momentum = 0.0) {
  all =>
    let g = grad |> l2(weight_decay)
    state square_avg = zeros(grad)
    square_avg <- square_avg * alpha + g * g * (1.0 - alpha)
    state momentum_buffer = zeros(grad)
    momentum_buffer <- momentum_buffer * momentum + g / (square_avg ** 0.5 + eps)
    momentum_buffer |> apply(lr)
}""",
        "RMSprop", {'lr': 0.01, 'alpha': 0.99, 'eps': 1e-08, 'weight_decay': 0.1, 'momentum': 0.9}),
    "adamax": (
        """optimizer adamax(lr = 2e-3, betas = (0.9, 0.999), eps = 1e-8, weight_decay = 0.0) {
  all =>
    let g = grad |> l2(weight_decay)
    let exp_avg = g |> ema(betas[0])
    state exp_inf = zeros(grad)
    exp_inf <- maximum(exp_inf * betas[1], abs(g) + eps)
    exp_avg / exp_inf |> apply(lr / (1.0 - betas[0] ** step))
}""",
        "Adamax", {'lr': 0.002, 'betas': (0.9, 0.999), 'eps': 1e-08, 'weight_decay': 0.1}),
    "adadelta": (
        """optimizer adadelta(lr = 1.0, rho = 0.9, eps = 1e-6, weight_decay = 0.0) {
  all =>
    let g = grad |> l2(weight_decay)
    state square_avg = zeros(grad)
    state acc_delta = zeros(grad)
    let sq = square_avg * rho + g * g * (1.0 - rho)
    let delta = (acc_delta + eps) ** 0.5 / (sq + eps) ** 0.5 * g
    square_avg <- sq
    acc_delta <- acc_delta * rho + delta * delta * (1.0 - rho)
    delta |> apply(lr)
}""",
        "Adadelta", {'lr': 1.0, 'rho': 0.9, 'eps': 1e-06, 'weight_decay': 0.1}),
    "rprop": (
        """optimizer rprop(lr = 1e-2, etas = (0.5, 1.2), step_sizes = (1e-6, 50.0)) {
  all =>
    state prev = zeros(grad)
    state step_size = zeros(grad) + lr
    let s = sign(grad * prev)
    let factor = where(s > 0.0, fill(grad, etas[1]), where(s < 0.0, fill(grad, etas[0]), fill(grad, 1.0)))
    let size = minimum(maximum(step_size * factor, fill(grad, step_sizes[0])), fill(grad, step_sizes[1]))
    let g = where(s < 0.0, zeros(grad), grad)
    step_size <- size
    prev <- g
    sign(g) * size |> apply(1.0)
}""",
        "Rprop", {'lr': 0.01, 'etas': (0.5, 1.2), 'step_sizes': (1e-06, 50.0)}),
    "sgd_nesterov": (
        """optimizer sgd_nesterov(lr = 1e-2, momentum = 0.9, weight_decay = 0.0) {
  all =>
    let g = grad |> l2(weight_decay)
    state buf = zeros(grad)
    let b = where(step == 1.0, g, buf * momentum + g)
    buf <- b
    g + b * momentum |> apply(lr)
}""",
        "SGD", {'lr': 0.01, 'momentum': 0.9, 'weight_decay': 0.1, 'nesterov': True}),
}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_written_from_the_docs_equals_torch_optim(name):
    text, cls, hp = SPECS[name]
    torch.manual_seed(0)
    ps = [torch.nn.Parameter(torch.randn(s, dtype=torch.float64)) for s in [(12, 8), (8, 12), (12,)]]
    qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    opt = optloom.optimizer(text, ps, backend="eager", **{k: v for k, v in hp.items() if k != "nesterov"})
    ref = getattr(torch.optim, cls)(qs, **hp)
    g = torch.Generator().manual_seed(1)
    for _ in range(25):
        for p, q in zip(ps, qs):
            p.grad = torch.randn(p.shape, generator=g, dtype=torch.float64)
            q.grad = p.grad.clone()
        opt.step()
        ref.step()
    for p, q in zip(ps, qs):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-12, atol=1e-14)
