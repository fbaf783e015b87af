"""Lowering: one rule on one bucket layout -> a ``torch.fx.GraphModule``.

The graph's inputs are the bucket's parameter buffer, gradients, step count (0-d), per-member
ids, its state buffers and the runtime hyperparameters (0-d tensors); it writes the new
parameters and state into those buffers in place (``copy_`` at the end).
Structural hyperparameters are baked in. Tracing runs the interpreter under fake tensors
(``make_fx``), so no real data is touched; then CSE and DCE run on the graph.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.proxy_tensor import make_fx

from ..primitives.context import Ctx
from ..check import ir
from . import passes
from .interpret import phases, run_rule


@dataclass(frozen=True)
class StateSpec:
    """A state buffer discovered by running the rule once on fake tensors."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    init: Any  # the primitive's State declaration

    def allocate(self, layout: str, device: torch.device, ids: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        like = torch.zeros(self.shape, dtype=self.dtype, device=device)
        ctx = Ctx(layout=layout, param=like, step=step, states={}, ids=ids)  # type: ignore[arg-type]
        return self.init.initial(ctx, like).to(device)


@dataclass
class BucketMeta:
    layout: str  # flat | stacked
    shape: tuple[int, ...]  # shape of the bucket's param buffer
    dtype: torch.dtype
    device: torch.device


def discover_states(rule: ir.RuleIR, meta: BucketMeta, hypers: dict[str, Any],
                    group: tuple[int, ...] = ()) -> list[StateSpec]:
    """Which state buffers the rule needs on this layout, in first-use order (found on a step
    where every period starts, so every cached value is computed)."""
    found: list[StateSpec] = []

    def init_state(full: str, like: torch.Tensor, spec: Any) -> torch.Tensor:
        value = spec.initial(ctx, like)
        found.append(StateSpec(full, tuple(value.shape), value.dtype, spec))
        return value

    with FakeTensorMode(allow_non_fake_inputs=True):
        p = torch.zeros(meta.shape, dtype=meta.dtype, device=meta.device)
        g = torch.zeros(meta.shape, dtype=meta.dtype, device=meta.device)
        ctx = Ctx(layout=meta.layout, param=p, step=torch.ones((), dtype=torch.float64, device=meta.device),  # type: ignore[arg-type]
                  states={}, init_state=init_state, ids=_fake_ids(meta, group), group=group,
                  phases={t: True for t, _ in phases(rule, hypers, 1)})
        run_rule(rule, ctx, g, _fake_hypers(hypers, meta.device))
    return found


def _fake_ids(meta: BucketMeta, group: tuple[int, ...]) -> torch.Tensor:
    ids = torch.zeros(meta.shape[0], dtype=torch.int64, device=meta.device)  # (a list of N zeros: seconds at 124M)
    head = list(group[: meta.shape[0]])
    if head:
        ids[: len(head)] = torch.tensor(head, dtype=torch.int64, device=meta.device)
    return ids


def _fake_hypers(hypers: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: torch.tensor(float(v), dtype=torch.float64, device=device) if _is_runtime(v) else v
            for k, v in hypers.items()}


def _is_runtime(v: Any) -> bool:
    return isinstance(v, torch.Tensor) or (isinstance(v, float))


def lower(rule: ir.RuleIR, meta: BucketMeta, states: list[StateSpec], structural: dict[str, Any],
          runtime: list[str], phase: tuple[tuple[int, bool], ...] = (), group: tuple[int, ...] = (),
          probe: bool = False) -> fx.GraphModule:
    """Trace the rule into a GraphModule ``f(param, grad, step, ids, *states, *runtime, *reduced)``
    that updates ``param`` and the state buffers in place. ``phase``: which periods start this step
    (one graph per phase pattern); ``group``: the ids of the rule's parameters (samplers);
    ``reduced``: one 0-d input per group reduction (the value reduced over all buckets).
    ``probe=True`` traces the pure graph ``f(param, grad, step, ids, *states, *runtime)`` that
    returns each group reduction's per-member input instead (nothing is written)."""
    names = [s.name for s in states]
    n_reduced = 0 if probe else len(rule.reductions)

    def step_fn(param, grad, step, ids, *rest):
        bufs = dict(zip(names, rest[: len(names)]))
        hyp = dict(structural)
        hyp.update(zip(runtime, rest[len(names): len(names) + len(runtime)]))
        ctx = Ctx(layout=meta.layout, param=param, step=step, states=dict(bufs), ids=ids,  # type: ignore[arg-type]
                  phases=dict(phase), group=group)
        if probe:
            ctx.probe = {}
            run_rule(rule, ctx, grad, hyp)
            return tuple(ctx.probe[c.reduction] for c in rule.reductions)  # type: ignore[index]
        if n_reduced:
            ctx.reduced = list(rest[len(names) + len(runtime):])
        run_rule(rule, ctx, grad, hyp)
        for name, buf in bufs.items():
            if ctx.states[name] is not buf:
                buf.copy_(ctx.states[name])
        param.copy_(ctx.param)

    dev = meta.device
    # fake examples (make_fx picks up their mode): real zeros of a 124M-entry bucket cost seconds
    with FakeTensorMode(allow_non_fake_inputs=True):
        example = [torch.zeros(meta.shape, dtype=meta.dtype, device=dev), torch.zeros(meta.shape, dtype=meta.dtype, device=dev),
                   torch.ones((), dtype=torch.float64, device=dev), torch.zeros(meta.shape[0], dtype=torch.int64, device=dev)]
        example += [torch.zeros(s.shape, dtype=s.dtype, device=dev) for s in states]
        example += [torch.ones((), dtype=torch.float64, device=dev) for _ in runtime]
        example += [torch.ones((), dtype=meta.dtype, device=dev) for _ in range(n_reduced)]
    gm = make_fx(step_fn, tracing_mode="fake")(*example)
    passes.optimize(gm)
    return gm
