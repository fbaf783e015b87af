"""Group samplers: which parameters of a rule are active this step (Drop-Muon, arXiv
2510.02239; FRUGAL's block projector, arXiv 2411.07837). A sampler returns one boolean per
parameter for ``gate(mask, ...)``.

The population is the rule's parameters in the order they were given (``ctx.group``); a draw is
a pure function of ``(seed, period index, position)`` by the counter-based hash of
:mod:`.streams`, so it traces into graphs, needs no RNG state, and a run resumed at the same step
draws the same sets.
"""
from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field

from .context import Ctx
from .registry import Fraction, Tensor, primitive
from .streams import Seed, hash_key, hash_stream, py_hash_stream

Period = Annotated[int, Field(ge=1)]


def _count(density, b: int):
    """``a = max(1, round(b·density))`` (round half to even, as Python's ``round``); a 0-d tensor
    when ``density`` is a runtime hyperparameter."""
    if isinstance(density, torch.Tensor):
        return torch.clamp(torch.round(density * b), 1, b).to(torch.int64)
    return max(1, min(b, round(b * density)))


@primitive(family="sampling", elementwise=False, output="scalar", group=True,
           examples=("sample_layers(0.25)", "sample_layers(0.5, \"cyclic\", period = 2)",
                     "sample_layers(order = \"suffix\", seed = 4)"))
def sample_layers(ctx: Ctx, density: Fraction = 0.25, order: Literal["random", "cyclic", "suffix"] = "random",
                  period: Period = 1, seed: Seed = 0) -> Tensor:
    """Active parameters of the rule's group of ``b``, re-drawn every ``period`` steps
    (``k = ⌊(t−1)/period⌋`` the draw's index, positions ``0…b−1`` in parameter order):

    * ``random``: ``a = max(1, round(b·density))`` positions, uniformly without replacement
      (the ``a`` smallest hashes of ``(seed, k, j)``);
    * ``cyclic``: FRUGAL's ``descending`` order (fzmushko/FRUGAL
      ``frugal/proj_optimizer_templates.py``, ``BlockOptimizer``) — the list reversed, a window of
      ``a`` positions advancing by ``a`` per draw: active iff ``(b−1−j − k·a) mod b < a``;
    * ``suffix``: Drop-Muon's default scheme (no official code) — ``s`` uniform in ``{0…b−1}``,
      active iff ``j ≥ s`` (``density`` unused).
    """
    pos, b = ctx.group_position()
    a = _count(density, b)
    step = torch.as_tensor(ctx.step)
    k = torch.div(step - 1, period, rounding_mode="floor").to(torch.int64)
    pos_t = torch.as_tensor(pos, device=step.device)
    if order == "cyclic":
        return torch.remainder(b - 1 - pos_t - k * a, b) < a
    key = hash_key(seed, k, 0).to(step.device)
    if order == "suffix":
        s = torch.div(hash_stream(key, 1)[..., 0] * b, 2**32, rounding_mode="floor")
        return pos_t >= s
    rank = torch.argsort(torch.argsort(hash_stream(key, b), stable=True), stable=True)
    return rank[pos_t] < a


@sample_layers.reference
def _(ctx, density, order, period, seed):
    pos, b = ctx.group_position()
    a = _count(density, b)
    k = (int(ctx.step) - 1) // period
    if order == "cyclic":
        return torch.tensor((b - 1 - pos - k * a) % b < a)
    h = py_hash_stream(seed, k, 0, b)
    if order == "suffix":
        return torch.tensor(pos >= h[0] * b // 2**32)
    chosen = sorted(range(b), key=lambda j: (h[j], j))[:a]
    return torch.tensor(pos in chosen)
