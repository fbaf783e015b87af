"""Evaluate a rule's dataflow DAG on one bucket (batched implementations) or on one parameter
(reference implementations). This is the semantics; ``lower`` traces it into a torch.fx graph."""
from __future__ import annotations

import operator
from typing import Any, Callable

import torch

from ..primitives.context import Ctx
from ..primitives.registry import Primitive, State
from ..check import ir

_BIN = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv, "**": operator.pow,
    "@": operator.matmul, "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge,
}
_COMPARISONS = frozenset({"==", "!=", "<", "<=", ">", ">="})
FIRST_STEP = 0  # the phase key of "this is the parameter's first step" (states that start from a value)


Impl = Callable[[Primitive], Callable[..., Any]]


def batched(prim: Primitive) -> Callable[..., Any]:
    """The primitive's own batched implementation (what a backend without kernels runs)."""
    return prim.fn


def run_rule(rule: ir.RuleIR, ctx: Ctx, grad: torch.Tensor, hypers: dict[str, Any], impl: Impl = batched) -> Any:
    """Run ``rule`` once: updates ``ctx.param`` and ``ctx.states`` functionally; returns the result.
    Subgraphs under an ``every(T, ...)`` that does not refresh this step are not evaluated.
    ``impl(primitive)`` picks each call's implementation: :func:`batched`, or a backend's device
    kernel for it."""
    if rule.first_step and _first_step(ctx):
        _initial_values(rule, ctx, grad, hypers, impl)
    values: dict[int, Any] = {}
    for node in ir.walk(rule.roots, prune=lambda n: _skipped(n, ctx, hypers)):
        values[id(node)] = _eval(node, values, ctx, grad, hypers, impl)
    for name, node in rule.writes:
        ctx.states[name] = values[id(node)]
    return values[id(rule.result)]


def _skipped(node: ir.Node, ctx: Ctx, hypers: dict[str, Any]) -> bool:
    """Whether ``node``'s inputs are not evaluated this step: an ``every`` that does not refresh,
    a state that starts from a value (its initial value is computed once, first), the fallback of
    ``x ?? fallback`` when ``x`` is set."""
    if isinstance(node, ir.Every):
        return not _starts(ctx, node.period, hypers)  # type: ignore[arg-type]
    if isinstance(node, ir.StateRef):
        return node.value is not None
    return isinstance(node, ir.Op) and node.op == "??" and hypers[node.operands[0].name] is not None  # type: ignore[attr-defined]


def _first_step(ctx: Ctx) -> bool:
    if FIRST_STEP in ctx.phases:
        return ctx.phases[FIRST_STEP]
    if isinstance(ctx.step, torch.Tensor):
        raise RuntimeError("internal: the step graph was built without the first-step phase")
    return int(ctx.step) == 1


def _initial_values(rule: ir.RuleIR, ctx: Ctx, grad: torch.Tensor, hypers: dict[str, Any], impl: Impl) -> None:
    """On a parameter's first step, the states that start from a value get it, computed from the
    step's values before anything else runs (``param`` before any update), in declaration order."""
    refs = [n for n in ir.walk(rule.roots) if isinstance(n, ir.StateRef) and n.value is not None]
    for ref in refs:
        values: dict[int, Any] = {}
        for node in ir.walk(ref.value):  # type: ignore[arg-type]
            values[id(node)] = _eval(node, values, ctx, grad, hypers, impl)
        value = values[id(ref.value)]
        if ref.dtype is not None:
            value = value.to(getattr(torch, ref.dtype))
        ctx.bind({ref.name: ref.name}, {ref.name: State(ref.name, dtype=ref.dtype)}).state(ref.name, value)
        ctx.states[ref.name] = value


def period_value(node: ir.Node, hypers: dict[str, Any]) -> int:
    """The T of an every/restart: a literal or a structural int hyperparameter."""
    return int(node.value if isinstance(node, ir.Const) else hypers[node.name])  # type: ignore[attr-defined]


def phases(rule: ir.RuleIR, hypers: dict[str, Any], step: int) -> tuple[tuple[int, bool], ...]:
    """Which periods of ``rule`` start at (1-based) ``step``, and (key :data:`FIRST_STEP`) whether it
    is the first step when a state starts from a value: part of a step graph's identity."""
    first = {(FIRST_STEP, step == 1)} if rule.first_step else set()
    return tuple(sorted(first | {(t, (step - 1) % t == 0) for t in (period_value(p, hypers) for p in rule.periods)}))


def _starts(ctx: Ctx, period: ir.Node, hypers: dict[str, Any]) -> bool:
    t = period_value(period, hypers)
    if t in ctx.phases:
        return ctx.phases[t]
    if isinstance(ctx.step, torch.Tensor):
        raise RuntimeError(f"internal: the step graph was built without the phase of period {t}")
    return (int(ctx.step) - 1) % t == 0


def _eval(node: ir.Node, values: dict[int, Any], ctx: Ctx, grad: torch.Tensor, hypers: dict[str, Any],
          impl: Impl) -> Any:
    get = lambda n: values[id(n)]  # noqa: E731
    if isinstance(node, ir.Input):
        return {"grad": grad, "param": ctx.param, "step": ctx.step}[node.name]
    if isinstance(node, ir.Const):
        return node.value
    if isinstance(node, ir.Hyper):
        return hypers[node.name]
    if isinstance(node, ir.TupleOf):
        return tuple(get(i) for i in node.items)
    if isinstance(node, ir.Op) and node.op == "??":  # the fallback is evaluated only when it is used
        value = hypers[node.operands[0].name]  # type: ignore[attr-defined]
        return value if value is not None else get(node.operands[1])
    if isinstance(node, ir.Op):
        ops = [get(o) for o in node.operands]
        if node.op == "neg":
            return -ops[0]
        if node.op == "not":
            return _not(ops[0])

        if node.op == "index":
            return ops[0][ops[1]]
        if node.op == "transpose":
            return ops[0].transpose(-2, -1)
        a, b = ops
        ka, kb = (o.kind for o in node.operands)
        if ka == "scalar" and kb == "tensor":
            a = ctx.bcast(a, b)
        elif kb == "scalar" and ka == "tensor":
            b = ctx.bcast(b, a)
        out = _BIN[node.op](a, b)
        if node.op in _COMPARISONS and isinstance(out, torch.Tensor):  # 0/1 in the operands' dtype
            out = out.to(torch.result_type(a, b) if isinstance(a, torch.Tensor) else torch.result_type(b, a))
        return out
    if isinstance(node, ir.StateRef):
        if node.value is not None:  # started by _initial_values on the first step
            return ctx.states[node.name]
        init, args = node.init, node.init_args
        spec = State(node.name, init=lambda c, x: init.fn(c, x, **args), dtype=node.dtype)  # type: ignore[union-attr]
        return ctx.bind({node.name: node.name}, {node.name: spec}).state(node.name, get(node.like))
    if isinstance(node, ir.Every):
        if not _starts(ctx, node.period, hypers):  # type: ignore[arg-type]
            return ctx.states[node.name]
        value = get(node.value)
        ctx.bind({node.name: node.name}, {node.name: State(node.name)}).state(node.name, value)
        ctx.states[node.name] = value
        return value
    if isinstance(node, ir.Gate):
        mask, then = get(node.mask), get(node.then)
        other = get(node.other) if node.other is not None else torch.zeros_like(then)
        return torch.where(ctx.bcast(mask, then), then, other)
    if isinstance(node, ir.Leave):
        frame = node.frame
        op = ctx.states[frame.state_names[frame.prim.frame.state]]  # type: ignore[union-attr]
        return frame.prim.frame.leave(get(node.value), op)  # type: ignore[union-attr]
    if isinstance(node, ir.Call):
        prim = node.prim
        assert prim is not None
        fn = impl(prim)
        inputs = [get(i) for i in node.inputs]
        args = {k: get(v) for k, v in node.args.items()}
        if node.reduction is not None and ctx.reduced is not None:
            return ctx.reduced[node.reduction].expand(() if ctx.layout == "single" else inputs[0].shape[:1])
        if node.reduction is not None and ctx.probe is not None:
            x = inputs[0]
            ctx.probe[node.reduction] = x if x.ndim <= 1 or ctx.layout == "single" else x.sum(dim=ctx.reduce_dims(x))
        if node.restart is not None or node.guard is not None:
            return _scoped_call(node, ctx, fn, inputs, args, get, hypers)
        ctx.bind(node.state_names, {s.name: s for s in prim.state})
        if node.prim.state and [f for f in node.frames if f is not node]:
            return _in_frames(node, ctx, fn, inputs, args)
        return fn(ctx, *inputs, **args)
    raise TypeError(f"unknown IR node {type(node).__name__}")


def _not(x: Any) -> Any:
    """``not x``: a mask's complement; on numbers, 1 where ``x`` is 0 and 0 elsewhere (in ``x``'s dtype)."""
    if not isinstance(x, torch.Tensor):
        return not x
    return ~x if x.dtype == torch.bool else (x == 0).to(x.dtype)


def _scoped_call(node: ir.Call, ctx: Ctx, fn: Any, inputs: list[Any], args: dict[str, Any], get: Any,
                 hypers: dict[str, Any]) -> Any:
    """A call inside ``restart(T, ...)`` (its state starts afresh when a period starts and it sees
    the step counted within the period) and/or ``gate(mask, ...)`` (its state and parameter
    writes are kept only where the mask holds)."""
    prim = node.prim
    specs = {s.name: s for s in prim.state}  # type: ignore[union-attr]
    ctx.bind(node.state_names, specs)
    step = ctx.step
    if node.restart is not None:
        t = period_value(node.restart, hypers)  # type: ignore[arg-type]
        if _starts(ctx, node.restart, hypers):  # type: ignore[arg-type]
            for full in node.state_names.values():
                ctx.states.pop(full, None)
        ctx.step = torch.remainder(step - 1, t) + 1 if isinstance(step, torch.Tensor) else (int(step) - 1) % t + 1
    old = {}
    if node.guard is not None:
        like = inputs[0] if inputs else ctx.param
        old = {full: ctx.state(local, like) for local, full in node.state_names.items()}
        param = ctx.param
    try:
        out = fn(ctx, *inputs, **args)
    finally:
        ctx.step = step
    if node.guard is not None:
        mask = get(node.guard)
        for full, before in old.items():
            ctx.states[full] = torch.where(ctx.bcast(mask, before), ctx.states[full], before)
        if prim.writes_param:  # type: ignore[union-attr]
            ctx.param = torch.where(ctx.bcast(mask, param), ctx.param, param)
    return out


def _in_frames(node: ir.Call, ctx: Ctx, fn: Any, inputs: list[Any], args: dict[str, Any]) -> Any:
    """Run a stateful stage inside rotated frames: its state lives in the parameter's frame, so it
    is mapped into the current frame when read and back when written."""
    frames = [f for f in node.frames if f is not node]
    ops = [ctx.states[f.state_names[f.prim.frame.state]] for f in frames]  # type: ignore[union-attr]
    full = {node.state_names[s.name] for s in node.prim.state}  # type: ignore[union-attr]
    before = {k: ctx.states[k] for k in full if k in ctx.states}
    for k, v in before.items():
        for f, op in zip(frames, ops):
            v = f.prim.frame.enter(v, op)  # type: ignore[union-attr]
        ctx.states[k] = v
    out = fn(ctx, *inputs, **args)
    for k in full:
        v = ctx.states[k]
        for f, op in zip(reversed(frames), reversed(ops)):
            v = f.prim.frame.leave(v, op)  # type: ignore[union-attr]
        ctx.states[k] = v
    return out
