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
        return grad if node.name == "grad" else ctx.param
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
    if isinstance(node, ir.Call):
        prim = node.prim
        assert prim is not None
        ctx.bind(node.state_names, {s.name: s for s in prim.state})
        fn = prim.ref if reference and prim.ref is not None else prim.fn
        return fn(ctx, *(get(i) for i in node.inputs), **{k: get(v) for k, v in node.args.items()})
    raise TypeError(f"unknown IR node {type(node).__name__}")


def structural_names(rule: ir.RuleIR, hyperparams: dict[str, ir.HyperParam]) -> list[str]:
    """Hyperparameters a rule's graph bakes in as constants (its graph cache key)."""
    names = {n.name for n in ir.walk(rule.result) if isinstance(n, ir.Hyper)}
    return sorted(n for n in names if hyperparams[n].structural)


def runtime_names(rule: ir.RuleIR, hyperparams: dict[str, ir.HyperParam]) -> list[str]:
    """Hyperparameters a rule's graph takes as 0-d tensor inputs (changes never recompile)."""
    names = {n.name for n in ir.walk(rule.result) if isinstance(n, ir.Hyper)}
    return sorted(n for n in names if hyperparams[n].runtime)
