"""The language forms ``every(T, value)``, ``gate(mask, then, else)`` and ``restart(T, value)``,
as a table of handlers over the checker's :class:`~.interface.Checker` interface (:data:`FORMS`);
the feedback-state statements are :mod:`.statements`. See docs/language.md, "State and scopes".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Callable

from pydantic import Field

from ..lang import ast as A
from ..primitives.registry import Arg
from . import ir
from .common import Abort, known_value, max_kind
from .interface import Checker, Env

FormHandler = Callable[[Checker, A.Call, Env, str | None], ir.Node]  # (checker, call, env, bind name)
_PERIOD = Arg("T", Annotated[int, Field(ge=1)], 1, True, "int")  # validates every/restart periods


@dataclass(frozen=True)
class Form:
    """A language form: called like a primitive, checked by its own handler."""

    usage: str  # what the checker tells users to write
    check: FormHandler


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
