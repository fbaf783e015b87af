"""The reference side of an oracle comparison, built from the initial parameters: ``side(init)``
gives an object with ``step(grads, t, lr)`` and ``params`` (float64), optionally ``bind(opt, ps)``
(shown the spec's optimizer) and ``check(run)`` (the preconditions that make the comparison
well-posed, asserted after the run). A *part* is a reference optimizer over some parameters:
``part(named_params)`` with ``step(grads)`` and ``params`` — a float64 oracle of
``tests/reference`` or a torch.optim class through ``torch_part``."""
from __future__ import annotations

from typing import Any, Callable

import torch

import tests.reference as R
from tests.spec_harness import Composite

Part = Callable[[list], Any]


class Whole:
    """One part over every parameter."""

    def __init__(self, init: dict[str, torch.Tensor], part: Part):
        self.ref = part(list(init.items()))

    def step(self, grads, t=None, lr=None):
        self.ref.step(grads)

    @property
    def params(self):
        return self.ref.params


def whole(part: Part) -> Callable[[dict], Whole]:
    return lambda init: Whole(init, part)


def split(matrix_part: Part, vector_part: Part | None = None) -> Callable[[dict], Composite]:
    """The matrices to ``matrix_part`` (a family oracle), the bias to ``vector_part``."""
    return lambda init: Composite(init, matrix_part, vector_part)


def adamw(lr: float, betas, eps: float, weight_decay: float = 0.0) -> Part:
    return lambda ps: R.AdamW(ps, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


def aux_adamw(h: dict, wd: str | None = "weight_decay") -> Part:
    """The spec's aux AdamW (``adam_lr``, ``adam_betas``, ``adam_eps``, decay ``h[wd]``)."""
    return adamw(h["adam_lr"], h["adam_betas"], h["adam_eps"], h.get(wd, 0.0) if wd else 0.0)


class TorchPart:
    """A torch.optim optimizer as a part: float32 copies of the parameters (the values the spec
    starts from), conv weights as their (out, in·kh·kw) view with ``as_matrix`` (torch.optim.Muon
    is 2-D only)."""

    def __init__(self, cls, named, as_matrix: bool, kw: dict):
        self.shapes = {k: v.shape for k, v in named}
        self.w = {k: (v.reshape(v.shape[0], -1) if as_matrix and v.ndim > 2 else v).float().clone()
                  for k, v in named}
        self.opt = cls(list(self.w.values()), **kw)

    def step(self, grads):
        for k, w in self.w.items():
            w.grad = grads[k].float().reshape(w.shape)
        self.opt.step()

    @property
    def params(self):
        return {k: w.double().reshape(self.shapes[k]) for k, w in self.w.items()}


def torch_part(cls, as_matrix: bool = False, **kw) -> Part:
    return lambda named: TorchPart(cls, named, as_matrix, kw)
