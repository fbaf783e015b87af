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
from . import passes, precision
from .interpret import Impl, batched, run_rule
from .signature import StepSignature
from .specs import BucketMeta, StateSpec


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
    param_mode: str | None = None  # bf16 parameters: computed in float32, written per precision.PARAM_MODES
    seed: int = 0  # the precision policy's seed (stochastic rounding)

    def key(self) -> tuple:
        forms = StepSignature.of([], self.runtime).runtime
        return (self.rule.label, self.meta, tuple(sorted(self.structural.items())),
                tuple(s.key for s in self.states), forms, self.phase, self.group, self.param_mode, self.seed)


def lower_step(req: GraphRequest, impl: Impl = batched) -> StepGraph:
    """The step graph (and probe) of ``req``; ``impl`` picks each primitive's implementation."""
    sig = StepSignature.of([s.name for s in req.states], req.runtime, len(req.rule.reductions))
    fn = _trace(req, sig, impl, probe=False)
    probe = _trace(req, sig, impl, probe=True) if req.rule.reductions else None
    return StepGraph(fn, sig, probe)


def _trace(req: GraphRequest, sig: StepSignature, impl: Impl, probe: bool) -> fx.GraphModule:
    rule, meta = req.rule, req.meta

    formatted = precision.groups(list(req.states))
    wide = req.param_mode is not None and meta.dtype == torch.bfloat16  # a bf16 parameter computed in float32

    def step_fn(*inputs: Any) -> Any:
        a = sig.unpack(inputs)
        hyp = {**req.structural, **a.runtime}
        # stored states -> float32 values (a formatted state's parts are decoded together)
        states = {k: v for k, v in a.states.items() if k not in precision.STORED_ONLY}
        decoded = {}
        for name, parts in formatted.items():
            for s in parts:
                states.pop(s.name, None)
            decoded[name] = states[name] = precision.decode([a.states[s.name] for s in parts], parts[0], meta.layout)
        param, grad = a.param, a.grad
        if wide:
            param = param.to(torch.float32)
            if precision.KAHAN in a.states:
                param = param + a.states[precision.KAHAN].to(torch.float32)
            grad = grad.to(torch.float32)
        ctx = Ctx(layout=meta.layout, param=param, step=a.step, states=states, ids=a.ids,  # type: ignore[arg-type]
                  phases=dict(req.phase), group=req.group)
        if probe:
            ctx.probe = {}
            run_rule(rule, ctx, grad, hyp, impl)
            return tuple(ctx.probe[c.reduction] for c in rule.reductions)  # type: ignore[index]
        if sig.n_reduced:
            ctx.reduced = a.reduced
        run_rule(rule, ctx, grad, hyp, impl)
        for name, buf in a.states.items():
            if name in ctx.states and name not in decoded and ctx.states[name] is not buf:
                buf.copy_(_fresh(ctx.states[name], inputs).reshape(buf.shape))
        for name, parts in formatted.items():
            if ctx.states[name] is not decoded[name]:  # unchanged (a cached value kept): not re-encoded
                new = precision.encode(ctx.states[name], parts[0], meta.layout, req.seed, a.step, a.ids)
                for s, value in zip(parts, new):
                    a.states[s.name].copy_(value.reshape(s.shape))
        if wide:
            value, low = precision.encode_param(ctx.param, req.param_mode, meta.layout, req.seed, a.step, a.ids)
            a.param.copy_(value.reshape(meta.shape))
            if low is not None:
                a.states[precision.KAHAN].copy_(low.reshape(meta.shape))
        else:
            a.param.copy_(ctx.param.reshape(meta.shape))

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


def _fresh(value: torch.Tensor, inputs: tuple) -> torch.Tensor:
    """``value`` as a computed tensor when it is an input or a view of one: a state written from
    another input (``state p0 = param``) must hold that input's value from before the step's
    writes. Eager writes in program order, but Inductor (torch 2.13) drops a ``clone`` as a no-op
    and then orders the copy after the input's own mutation, so the state would read the updated
    parameter (Prodigy's ``p0``; ``tests/test_torch_conventions.py``). A multiply by one is exact
    for every value and is not dropped."""
    if value._base is not None or any(value is t for t in inputs):
        return value * 1
    return value
