"""The constructs that reach beyond one stateless pipeline, as tables of handlers over the
checker's :class:`~.interface.Checker` interface: the feedback-state statements
(``state NAME = init`` / ``NAME <- expr``, :data:`STATEMENTS`) and the language forms
``every(T, value)``, ``gate(mask, then, else)`` and ``restart(T, value)`` (:data:`FORMS`).
See docs/language.md, "State and scopes".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Callable

from pydantic import Field

from ..lang import ast as A
from ..primitives.registry import Arg, all_primitives, did_you_mean, lookup
from . import ir
from .common import FAILED, Abort, known_value, max_kind
from .interface import Checker, Env

FormHandler = Callable[[Checker, A.Call, Env, str | None], ir.Node]  # (checker, call, env, bind name)
StatementHandler = Callable[[Checker, Any, Env, dict[str, Any]], None]  # (checker, stmt, env, lets)

_STATE_DTYPES = {"float32": "float32", "f32": "float32", "float64": "float64", "f64": "float64",
                "bfloat16": "bfloat16", "bf16": "bfloat16"}
_PERIOD = Arg("T", Annotated[int, Field(ge=1)], 1, True, "int")  # validates every/restart periods


@dataclass(frozen=True)
class Form:
    """A language form: called like a primitive, checked by its own handler."""

    usage: str  # what the checker tells users to write
    check: FormHandler


# ---- feedback state ----------------------------------------------------------------------------
def declare_state(ck: Checker, stmt: A.StateDecl, env: Env, lets: dict[str, Any]) -> None:
    """``state NAME[: dtype] = init``: init is an initializer (``zeros(x)``, ``eye(x, side)``,
    ``fill(x, value)``) or a number (a per-parameter scalar starting at that value)."""
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
    init = stmt.init
    if isinstance(init, A.Num | A.UnaryOp):
        init = A.Call(func="fill", args=[A.Name(id="grad", span=init.span), init], span=init.span, func_span=init.span)
    prim = lookup(init.func) if isinstance(init, A.Call) else None
    if not isinstance(init, A.Call) or prim is None or prim.family != "init":
        inits = ", ".join(p.signature_text() for p in all_primitives() if p.family == "init")
        ck.rep.error(f"state '{stmt.name}' must start from an initializer or a number", stmt.init.span,
                     f"initializers: {inits}")
        raise Abort
    node = ck.call(init, env)  # the initializer runs when the state is created
    assert isinstance(node, ir.Call)
    args = {}
    for k, v in node.args.items():
        if not isinstance(v, ir.Const):
            ck.rep.error(f"{prim.name}: argument '{k}' of a state initializer must be a constant", init.span)
            raise Abort
        args[k] = v.value
    if node.inputs[0].frames:
        ck.rep.error("a state cannot start from a value inside a rotated frame", init.span)
        raise Abort
    if stmt.name in ck.state_names:
        ck.rep.error(f"state name '{stmt.name}' is already used by a stage of this rule", stmt.span,
                     "choose another name")
        raise Abort
    ck.state_names.claim(stmt.name)
    return ir.StateRef(kind=node.kind, span=stmt.span, ndims=node.ndims, name=stmt.name, init=prim,
                       init_args=args, like=node.inputs[0], dtype=dtype)


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
    env[stmt.name] = value


STATEMENTS: dict[type, StatementHandler] = {A.StateDecl: declare_state, A.Assign: assign_state}


# ---- language forms ----------------------------------------------------------------------------
def every(ck: Checker, c: A.Call, env: Env, bind_name: str | None) -> ir.Node:
    """``every(T, value)``: ``value`` computed every T steps and cached in state between."""
    got = _arguments(ck, c, ("T", "value"), 2)
    period = _period(ck, got["T"], "every", env)
    value = ck.expr(got["value"], env)
    if value.kind not in ("tensor", "scalar"):
        ck.rep.error("every(T, value) caches a tensor or a per-parameter value; this one is "
                     f"{value.kind}", got["value"].span)
        raise Abort
    if value.frames:
        ck.rep.error("every(T, value) cannot cache a value inside a rotated frame", got["value"].span)
        raise Abort
    name = ck.state_names.claim(bind_name or "every")
    return ir.Every(kind=value.kind, span=c.span, ndims=value.ndims, period=period, value=value, name=name)


def gate(ck: Checker, c: A.Call, env: Env, bind_name: str | None) -> ir.Node:
    """``gate(mask, then, else)``: per parameter, ``then`` where the mask holds, else ``else``."""
    got = _arguments(ck, c, ("mask", "then", "else"), 2)
    if ck.guard is not None:
        ck.rep.error("gates cannot nest", c.span, "combine the masks in one sampler")
        raise Abort
    mask = ck.expr(got["mask"], env)
    if mask.kind == "tensor":
        ck.rep.error("gate(mask, ...): the mask is one value per parameter (a sampler such as "
                     "`sample_layers`), not a tensor", got["mask"].span)
        raise Abort
    then = ck.scoped(got["then"], env, guard=mask)
    other = None
    if "else" in got:
        other = ck.scoped(got["else"], env, guard=ir.Op(kind=mask.kind, op="not", operands=[mask], span=mask.span))
    branches = [then] if other is None else [then, other]
    return ir.Gate(kind=max_kind(branches), span=c.span, ndims=frozenset().union(*(b.ndims for b in branches)),
                   frames=ck.same_frame(branches, c.span), mask=mask, then=then, other=other)


def restart(ck: Checker, c: A.Call, env: Env, bind_name: str | None) -> ir.Node:
    """``restart(T, value)``: the state of the stages inside starts afresh every T steps."""
    got = _arguments(ck, c, ("T", "value"), 2)
    if ck.restart is not None:
        ck.rep.error("restart scopes cannot nest", c.span)
        raise Abort
    period = _period(ck, got["T"], "restart", env)
    n0 = len(ck.calls)
    value = ck.scoped(got["value"], env, restart=period)
    if not any(cl.prim.state for cl in ck.calls[n0:]):  # type: ignore[union-attr]
        ck.rep.warning("restart(T, ...) has no stateful stage inside: it changes nothing", c.span)
    return value


FORMS: dict[str, Form] = {
    "every": Form("every(T, value)", every),
    "gate": Form("gate(mask, then, else)", gate),
    "restart": Form("restart(T, value)", restart),
}


def _arguments(ck: Checker, c: A.Call, names: tuple[str, ...], required: int) -> dict[str, A.Expr]:
    """A form's arguments by name (positional or keyword); the first ``required`` must be given."""
    usage = FORMS[c.func].usage
    if len(c.args) > len(names):
        ck.rep.error(f"{c.func} takes at most {len(names)} arguments, got {len(c.args)}", c.span, f"write `{usage}`")
        raise Abort
    got: dict[str, A.Expr] = dict(zip(names, c.args))
    for kw in c.kwargs:
        if kw.name not in names or kw.name in got:
            what = "has no argument" if kw.name not in names else "got twice the argument"
            ck.rep.error(f"{c.func} {what} '{kw.name}'", kw.span, f"write `{usage}`")
            raise Abort
        got[kw.name] = kw.value
    missing = [n for n in names[:required] if n not in got]
    if missing:
        ck.rep.error(f"{c.func} needs '{missing[0]}'", c.span, f"write `{usage}`")
        raise Abort
    return got


def _period(ck: Checker, e: A.Expr, form: str, env: Env) -> ir.Node:
    """The T of every(T, ...) / restart(T, ...): a structural int >= 1."""
    t = ck.expr(e, env)
    value, hyper_names = known_value(t, ck.hypers)
    if not (isinstance(t, ir.Const) or (isinstance(t, ir.Hyper) and ck.hypers[t.name].type == "int")):
        ck.rep.error(f"{form}(T, ...): T must be an int literal or an int hyperparameter", e.span,
                     "periods are compile-time constants: declare `T: int = 100`")
        raise Abort
    try:
        _PERIOD.validate(value)
    except ValueError as err:
        via = f" (hyperparameter '{hyper_names[0]}' defaults to {value!r})" if hyper_names else ""
        ck.rep.error(f"{form}(T, ...): T {str(err).split(' ', 2)[2]}{via}", e.span, "T counts steps: T >= 1")
        raise Abort from None
    if isinstance(t, ir.Hyper):
        ck.constraints.append(ir.Constraint(t.name, form, _PERIOD, e.span))
    ck.periods.append(t)
    return t
