"""Float64 oracles for the well-known optimizers of issue 14 ("Any optimizer a researcher knows"):
an optimizer of torch.optim or pytorch_optimizer (4.1.0, a test-only dependency) run on float64
copies of the parameters, so that a comparison with a float32 spec sees the spec's rounding and
nothing of the oracle's. Shares no code with ``optloom``.

``Float64Optim(params: list[(name, tensor)], make)`` with ``make(list of float64 leaf tensors)`` →
an optimizer; ``.step(grads: dict[name, tensor])``, ``.params: dict[name, tensor]``, ``.state``
(the wrapped optimizer's per-parameter state, by name)."""
from __future__ import annotations

from typing import Any, Callable

import torch


class Float64Optim:
    def __init__(self, params: list[tuple[str, torch.Tensor]], make: Callable[[list[torch.Tensor]], Any]):
        self.w = {k: v.detach().double().clone().requires_grad_(True) for k, v in params}
        self.opt = make(list(self.w.values()))

    def step(self, grads: dict[str, torch.Tensor]) -> None:
        for k, w in self.w.items():
            w.grad = grads[k].detach().double().clone().reshape(w.shape)
        self.opt.step()

    @property
    def params(self) -> dict[str, torch.Tensor]:
        return {k: w.detach() for k, w in self.w.items()}

    @property
    def state(self) -> dict[str, dict[str, Any]]:
        return {k: self.opt.state[w] for k, w in self.w.items()}


def float64_part(make: Callable[[list[torch.Tensor]], Any]) -> Callable[[list], Float64Optim]:
    """A contract part (``part(named_params)``): ``make`` run on float64 copies."""
    return lambda named: Float64Optim(named, make)
