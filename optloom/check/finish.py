"""Finishing a checked rule, with what only the whole rule shows: it must update its parameters;
a ``decay`` given no ``lr`` takes the lr of the rule's one ``apply``; its group reductions are
numbered and may not nest; its facts are recorded (``elementwise``, its states).

The lr binding and the numbering go into new IR nodes (:func:`rebuild`): a built node is never
changed.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any, Callable

from ..lang import ast as A
from ..lang.diagnostics import Reporter
from . import ir
from .common import max_kind
from .rule import RuleChecker
from .shapes import check_shapes


def finish_rule(rep: Reporter, rule: A.Rule, checker: RuleChecker, result: ir.Node) -> ir.RuleIR | None:
    """The rule's IR, or None after reporting why it cannot run."""
    roots = [result, *(v for _, v in checker.writes), *checker.kept]
    check_shapes(rep, rule.label, [*roots, *checker.bound], checker.inputs["grad"].ndims, checker.assignments)
    nodes = ir.walk(roots)
    calls = [n for n in nodes if isinstance(n, ir.Call)]
    applies = [c for c in calls if c.prim.writes_param and not c.prim.lr_from_apply]  # type: ignore[union-attr]
    if not applies:
        rep.error(f"rule '{rule.label}' never updates its parameters", rule.body.result.span,
                  "end the pipeline with `apply(lr)`")
        return None
    unbound = [c for c in calls if c.prim.lr_from_apply and _lr_unset(c.args.get("lr"))]  # type: ignore[union-attr]
    if unbound and len(applies) != 1:
        rep.error(f"{unbound[0].prim.name} cannot tell which lr to use: give `lr =`", unbound[0].span)  # type: ignore[union-attr]
        return None
    reductions = [c for c in calls if c.prim.reduces_group]  # type: ignore[union-attr]
    for c in reductions:
        if any(isinstance(n, ir.Call) and n.prim.reduces_group for n in ir.walk(c.inputs[0])):  # type: ignore[union-attr]
            rep.error("a group reduction cannot depend on another group reduction", c.span,
                      "each step reduces across the group once: reduce values computed without one")
            return None
    index = {id(c): i for i, c in enumerate(reductions)}

    def edit(node: ir.Node) -> dict[str, Any]:
        if not isinstance(node, ir.Call):
            return {}
        changes: dict[str, Any] = {"reduction": index.get(id(node))}
        if node in unbound:
            lr, given = applies[0].args["lr"], node.args.get("lr")
            if isinstance(given, ir.Hyper):  # an optional hyperparameter: the apply's lr when it is unset
                lr = ir.Op(kind=max_kind([given, lr]), op="??", operands=[given, lr], span=given.span)
            changes["args"] = {**node.args, "lr": lr}
        return changes

    copy_of = rebuild(nodes, edit)
    refs = [n for n in nodes if isinstance(n, ir.StateRef)]
    elementwise = all(c.prim.elementwise for c in calls) and not any(n.kind == "scalar" for n in nodes) and \
        all(r.init.elementwise for r in refs if r.init is not None) and \
        not any(isinstance(n, ir.Op) and n.op in ("@", "transpose") for n in nodes)  # type: ignore[union-attr]
    states = [ir.StateInfo(full, c.prim.name, next(s.doc for s in c.prim.state if s.name == local))  # type: ignore[union-attr]
              for c in calls for local, full in c.state_names.items()]
    states += [ir.StateInfo(r.name, "state", f"feedback state, starts as {r.init.name}" if r.init is not None  # type: ignore[union-attr]
                            else "feedback state, starts from a value of the first step") for r in refs]
    states += [ir.StateInfo(n.name, "every", "value cached by every(T, ...)") for n in nodes if isinstance(n, ir.Every)]
    return ir.RuleIR(rule.label, rule.selector, copy_of(result), states, elementwise,
                     sorted({c.prim.name for c in calls}), rule.span,  # type: ignore[union-attr]
                     {k: copy_of(v) for k, v in checker.labels.items()},
                     writes=[(k, copy_of(v)) for k, v in checker.writes], periods=copy_of(checker.periods),
                     kept=copy_of(checker.kept))


def _lr_unset(v: ir.Node | None) -> bool:
    """A ``decay`` lr that defaults to the apply's: not given, ``none``, or an optional hyperparameter."""
    return v is None or isinstance(v, ir.Const) and v.value is None or isinstance(v, ir.Hyper) and v.optional


def rebuild(nodes: list[ir.Node], edit: Callable[[ir.Node], dict[str, Any]]) -> Callable[[Any], Any]:
    """Copy ``nodes`` (children before parents, as :func:`ir.walk` lists them), each with the fields
    ``edit(node)`` returns replaced; every reference among them (children, frames, a frame-opening
    call's reference to itself) points at the copies. Returns the map from a value that may hold
    original nodes (a node, a list, tuple or dict of them) to the same value over the copies."""
    copies: dict[int, ir.Node] = {}

    def copy_of(v: Any) -> Any:
        if isinstance(v, ir.Node):
            return copies.get(id(v), v)
        if isinstance(v, list | tuple):
            return type(v)(copy_of(x) for x in v)
        if isinstance(v, dict):
            return {k: copy_of(x) for k, x in v.items()}
        return v

    for node in nodes:
        twin = copies[id(node)] = copy.copy(node)  # registered first: a frame-opening call names itself
        fields = {f.name: getattr(node, f.name) for f in dataclasses.fields(node)} | edit(node)
        for name, value in fields.items():
            setattr(twin, name, copy_of(value))  # the copy is new: nothing else holds it yet
    return copy_of
