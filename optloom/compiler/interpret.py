"""Evaluate a rule's dataflow DAG on one bucket (batched implementations) or on one parameter
(reference implementations). This is the semantics; ``lower`` traces it into a torch.fx graph."""
from __future__ import annotations

import operator
from typing import Any

import torch

from ..primitives.context import Ctx
from . import ir

_BIN = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv, "**": operator.pow,
    "@": operator.matmul, "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge,
}


def run_rule(rule: ir.RuleIR, ctx: Ctx, grad: torch.Tensor, hypers: dict[str, Any], reference: bool = False) -> Any:
    """Run ``rule`` once: updates ``ctx.param`` and ``ctx.states`` functionally; returns the result."""
    values: dict[int, Any] = {}
    for node in ir.walk(rule.result):
        values[id(node)] = _eval(node, values, ctx, grad, hypers, reference)
    return values[id(rule.result)]


def _eval(node: ir.Node, values: dict[int, Any], ctx: Ctx, grad: torch.Tensor, hypers: dict[str, Any],
          reference: bool) -> Any:
    get = lambda n: values[id(n)]  # noqa: E731
    if isinstance(node, ir.Input):
        return {"grad": grad, "param": ctx.param, "step": ctx.step}[node.name]
    if isinstance(node, ir.Const):
        return node.value
    if isinstance(node, ir.Hyper):
        return hypers[node.name]
    if isinstance(node, ir.TupleOf):
        return tuple(get(i) for i in node.items)
    if isinstance(node, ir.Op):
        ops = [get(o) for o in node.operands]
        if node.op == "neg":
            return -ops[0]
        if node.op == "not":
            return ~ops[0] if isinstance(ops[0], torch.Tensor) else not ops[0]
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
        return _BIN[node.op](a, b)
    if isinstance(node, ir.Leave):
        frame = node.frame
        op = ctx.states[frame.state_names[frame.prim.frame.state]]  # type: ignore[union-attr]
        return frame.prim.frame.leave(get(node.value), op)  # type: ignore[union-attr]
    if isinstance(node, ir.Call):
        prim = node.prim
        assert prim is not None
        fn = prim.ref if reference and prim.ref is not None else prim.fn
        inputs = [get(i) for i in node.inputs]
        args = {k: get(v) for k, v in node.args.items()}
        ctx.bind(node.state_names, {s.name: s for s in prim.state})
        if node.prim.state and [f for f in node.frames if f is not node]:
            return _in_frames(node, ctx, fn, inputs, args)
        return fn(ctx, *inputs, **args)
    raise TypeError(f"unknown IR node {type(node).__name__}")


def hyper_names(rule: ir.RuleIR) -> frozenset[str]:
    """Hyperparameters the rule's graph reads (computed once per rule)."""
    names = rule.__dict__.get("_hyper_names")
    if names is None:
        names = rule.__dict__["_hyper_names"] = frozenset(
            n.name for n in ir.walk(rule.result) if isinstance(n, ir.Hyper))
    return names


def structural_names(rule: ir.RuleIR, hyperparams: dict[str, ir.HyperParam]) -> list[str]:
    """Hyperparameters a rule's graph bakes in as constants (its graph cache key)."""
    return sorted(n for n in hyper_names(rule) if hyperparams[n].structural)


def runtime_names(rule: ir.RuleIR, hyperparams: dict[str, ir.HyperParam]) -> list[str]:
    """Hyperparameters a rule's graph takes as 0-d tensor inputs (changes never recompile)."""
    return sorted(n for n in hyper_names(rule) if hyperparams[n].runtime)


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
