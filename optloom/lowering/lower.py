"""Lowering: one rule on one bucket layout -> a ``torch.fx.GraphModule`` with a :class:`StepSignature`.

Structural hyperparameters are baked in; runtime ones are graph inputs (0-d tensors). Tracing
runs the interpreter under fake tensors (``make_fx``), so no real data is touched; then CSE and
DCE run on the graph.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.proxy_tensor import make_fx

from ..check import ir
from ..primitives.context import Ctx
from . import passes
from .interpret import Impl, batched, run_rule
from .signature import StepSignature
from .states import BucketMeta, StateSpec


@dataclass(frozen=True)
class StepGraph:
    """A bucket's lowered step, and its probe where the rule reduces across its group: the probe
    ``probe(*inputs without reduced)`` returns each group reduction's per-member values."""

    fn: fx.GraphModule
    signature: StepSignature
    probe: fx.GraphModule | None = None


@dataclass(frozen=True)
class GraphRequest:
    """Everything a step graph is specialized to (its cache key, less the spec's identity)."""

    rule: ir.RuleIR
    meta: BucketMeta
    states: tuple[StateSpec, ...]
    structural: dict[str, Any]
    runtime: dict[str, Any]  # runtime hyperparameters' current values (their form: float or tuple)
    phase: tuple[tuple[int, bool], ...] = ()  # which periods start this step
    group: tuple[int, ...] = ()  # the ids of the rule's parameters (samplers)

    def key(self) -> tuple:
        forms = StepSignature.of([], self.runtime).runtime
        return (self.rule.label, self.meta, tuple(sorted(self.structural.items())),
                tuple((s.name, s.shape, s.dtype) for s in self.states), forms, self.phase, self.group)


def lower_step(req: GraphRequest, impl: Impl = batched) -> StepGraph:
    """The step graph (and probe) of ``req``; ``impl`` picks each primitive's implementation."""
    sig = StepSignature.of([s.name for s in req.states], req.runtime, len(req.rule.reductions))
    fn = _trace(req, sig, impl, probe=False)
    probe = _trace(req, sig, impl, probe=True) if req.rule.reductions else None
    return StepGraph(fn, sig, probe)


def _trace(req: GraphRequest, sig: StepSignature, impl: Impl, probe: bool) -> fx.GraphModule:
    rule, meta = req.rule, req.meta

    def step_fn(*inputs: Any) -> Any:
        a = sig.unpack(inputs)
        hyp = {**req.structural, **a.runtime}
        ctx = Ctx(layout=meta.layout, param=a.param, step=a.step, states=dict(a.states), ids=a.ids,  # type: ignore[arg-type]
                  phases=dict(req.phase), group=req.group)
        if probe:
            ctx.probe = {}
            run_rule(rule, ctx, a.grad, hyp, impl)
            return tuple(ctx.probe[c.reduction] for c in rule.reductions)  # type: ignore[index]
        if sig.n_reduced:
            ctx.reduced = a.reduced
        run_rule(rule, ctx, a.grad, hyp, impl)
        for name, buf in a.states.items():
            if ctx.states[name] is not buf:
                buf.copy_(ctx.states[name])
        a.param.copy_(ctx.param)

    dev = meta.device
    # fake examples (make_fx picks up their mode): real zeros of a 124M-entry bucket cost seconds
    with FakeTensorMode(allow_non_fake_inputs=True):
        def zeros(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
            return torch.zeros(shape, dtype=dtype, device=dev)

        scalar = torch.ones((), dtype=torch.float64, device=dev)
        example = sig.pack(zeros(meta.shape, meta.dtype), zeros(meta.shape, meta.dtype), scalar,
                           zeros((meta.shape[0],), torch.int64), [zeros(s.shape, s.dtype) for s in req.states],
                           [scalar.clone() for _ in range(sig.n_runtime_leaves)],
                           [] if probe else [torch.ones((), dtype=meta.dtype, device=dev) for _ in range(sig.n_reduced)])
    gm = make_fx(step_fn, tracing_mode="fake")(*example)
    passes.optimize(gm)
    return gm
