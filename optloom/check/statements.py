"""Feedback state, as a table of statement handlers over the checker's
:class:`~.interface.Checker` interface (:data:`STATEMENTS`): ``state NAME[: dtype] = init`` and
``NAME <- expr``. See docs/language.md, "Feedback state".

A state starts either from an *initializer* with constant arguments (``zeros(x)``, ``eye(x,
side)``, ``fill(x, c)`` or a number ``c``), which reads only the shape of its input and is how its
buffer is allocated; or from a *value*: any expression of the first step's values (``param``,
``grad``, hyperparameters, ``fill(grad, hyper)``), computed on the parameter's first step before
anything else runs.
"""
from __future__ import annotations

from typing import Any, Callable

from ..lang import ast as A
from ..primitives.registry import did_you_mean
from . import ir
from .common import FAILED, Abort
from .consts import ConstError, const_value
from .interface import Checker, Env

StatementHandler = Callable[[Checker, Any, Env, dict[str, Any]], None]  # (checker, stmt, env, lets)

_STATE_DTYPES = {"float32": "float32", "f32": "float32", "float64": "float64", "f64": "float64",
                 "bfloat16": "bfloat16", "bf16": "bfloat16"}


def declare_state(ck: Checker, stmt: A.StateDecl, env: Env, lets: dict[str, Any]) -> None:
    """``state NAME[: dtype] = init``."""
    if ck.shadows(stmt.name, stmt.span, "state"):
        return
    if stmt.name in ck.feedback:
        ck.rep.error(f"state '{stmt.name}' declared twice", stmt.span)
        return
    try:
        env[stmt.name] = ck.feedback[stmt.name] = _state_ref(ck, stmt, env)
    except Abort:
        env[stmt.name] = FAILED


def _state_ref(ck: Checker, stmt: A.StateDecl, env: Env) -> ir.StateRef:
    dtype = None
    if stmt.dtype is not None:
        dtype = _STATE_DTYPES.get(stmt.dtype)
        if dtype is None:
            ck.rep.error(f"unknown state dtype '{stmt.dtype}'", stmt.span,
                         did_you_mean(stmt.dtype, list(_STATE_DTYPES)) or f"use one of {', '.join(_STATE_DTYPES)}")
            raise Abort
    init = _initializer(stmt.init)
    n0 = len(ck.calls)
    node = ck.expr(init, env)
    if stmt.name in ck.state_names:
        ck.rep.error(f"state name '{stmt.name}' is already used by a stage of this rule", stmt.span,
                     "choose another name")
        raise Abort
    if node.frames:
        ck.rep.error("a state cannot start from a value inside a rotated frame", stmt.init.span)
        raise Abort
    if isinstance(node, ir.Call) and node.prim.family == "init" and \
            all(isinstance(v, ir.Const) for v in node.args.values()):  # type: ignore[union-attr]
        ck.state_names.claim(stmt.name)
        return ir.StateRef(kind=node.kind, span=stmt.span, ndims=node.ndims, name=stmt.name, init=node.prim,
                           init_args={k: v.value for k, v in node.args.items()},  # type: ignore[attr-defined]
                           like=node.inputs[0], dtype=dtype)
    _first_step_only(ck, node, ck.calls[n0:], stmt)
    if node.kind not in ("tensor", "scalar"):  # one number per parameter, like `state v = 0.0`
        ck.usable(node, stmt.init.span)
        fill = ck.call(A.Call(func="fill", args=[A.Name(id="grad", span=stmt.init.span)], span=stmt.init.span,
                              func_span=stmt.init.span), {})
        node = ir.Op(kind="scalar", op="+", operands=[fill, node], span=stmt.init.span)
    ck.state_names.claim(stmt.name)
    return ir.StateRef(kind=node.kind, span=stmt.span, ndims=node.ndims, name=stmt.name, dtype=dtype, value=node)


def _initializer(init: A.Expr) -> A.Expr:
    """A number ``c`` is ``fill(grad, c)``; ``fill(x, v)`` of a value ``v`` not known when the spec
    is checked is ``fill(x) + v`` (fill's value is a compile-time number)."""
    if isinstance(init, A.Num | A.UnaryOp):
        try:
            const_value(init)
        except ConstError:
            return init
        return A.Call(func="fill", args=[A.Name(id="grad", span=init.span), init], span=init.span, func_span=init.span)
    if isinstance(init, A.Call) and init.func == "fill":
        value = [k.value for k in init.kwargs if k.name == "value"] or init.args[1:2]
        if value and not _constant(value[0]):
            rest = A.Call(func="fill", args=init.args[:1], kwargs=[k for k in init.kwargs if k.name != "value"],
                          span=init.span, func_span=init.func_span)
            return A.BinOp(op="+", left=rest, right=value[0], span=init.span)
    return init


def _constant(e: A.Expr) -> bool:
    try:
        const_value(e)
        return True
    except ConstError:
        return False


def _first_step_only(ck: Checker, node: ir.Node, calls: list[ir.Call], stmt: A.StateDecl) -> None:
    """A state's initial value runs once, on the first step: no state, effects or scopes in it."""
    nodes = ir.walk(node)
    for c in calls:
        prim = c.prim
        what = ("keeps state" if prim.state else "writes the parameter" if prim.writes_param  # type: ignore[union-attr]
                else "reduces over the group" if prim.reduces_group or prim.group else None)  # type: ignore[union-attr]
        if what and any(n is c for n in nodes):
            ck.rep.error(f"state '{stmt.name}' cannot start from {prim.name}, which {what}: an initial value "  # type: ignore[union-attr]
                         "is computed once, on the first step", c.span,
                         f"start from a value of the first step (`state {stmt.name} = zeros(grad)`, `= param`, "
                         "`= grad`, ...) and update it with `<-`")
            raise Abort
    inner = [n for n in nodes if isinstance(n, ir.StateRef | ir.Every | ir.Gate)]
    if inner:
        what = "another state" if isinstance(inner[0], ir.StateRef) else "every/gate"
        ck.rep.error(f"state '{stmt.name}' cannot start from {what}: an initial value is computed from the "
                     "first step's inputs", stmt.init.span, "start from grad, param, step and hyperparameters")
        raise Abort


def assign_state(ck: Checker, stmt: A.Assign, env: Env, lets: dict[str, Any]) -> None:
    """``NAME <- expr``: later statements read the new value; the last one is stored."""
    ref = ck.feedback.get(stmt.name)
    if ref is None:
        hint = ("it is a `let` binding, which cannot change" if stmt.name in lets
                else f"declare it first: `state {stmt.name} = zeros(grad)`")
        ck.rep.error(f"'{stmt.name}' is not a feedback state", stmt.span, hint)
        return
    try:
        value = ck.expr(stmt.value, env)
        ck.usable(value, stmt.value.span)
    except Abort:
        env[stmt.name] = FAILED
        return
    if value.frames:
        value = ck.leave_frames(value)
    if value.kind not in ("tensor", "scalar") and ref.kind == "tensor":
        ck.rep.error(f"state '{stmt.name}' holds a tensor; this assigns a {value.kind} value", stmt.value.span)
        return
    if value.kind == "tensor" and ref.kind == "scalar":
        ck.rep.error(f"state '{stmt.name}' holds one number per parameter; this assigns a tensor",
                     stmt.value.span, "reduce it first (e.g. `fro_norm`, `as_scalar`)")
        return
    ck.assignments.append((ref, value, stmt.value.span))
    env[stmt.name] = value


STATEMENTS: dict[type, StatementHandler] = {A.StateDecl: declare_state, A.Assign: assign_state}
