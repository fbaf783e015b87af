"""The checker's part for the constructs that reach beyond one stateless pipeline: feedback state
(``state NAME = init`` / ``NAME <- expr``) and the language forms ``every(T, value)``,
``gate(mask, then, else)`` and ``restart(T, value)``. Mixed into :class:`~.check.RuleChecker`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from ..lang import ast as A
from ..primitives.registry import Arg, all_primitives, did_you_mean, lookup
from . import ir
from .common import _FAILED, _Abort, _known_value, _max_kind

if TYPE_CHECKING:
    from .rule import RuleChecker as _Base
else:
    _Base = object


class FormsMixin(_Base):
    """Feedback state and the language forms (see docs/language.md, "State and scopes")."""

    def state_decl(self, stmt: A.StateDecl, env: dict[str, ir.Node]) -> ir.StateRef:
        """``state NAME[: dtype] = init``: init is an initializer (``zeros(x)``, ``eye(x, side)``,
        ``fill(x, value)``) or a number (a per-parameter scalar starting at that value)."""
        dtype = None
        if stmt.dtype is not None:
            dtype = _STATE_DTYPES.get(stmt.dtype)
            if dtype is None:
                self.rep.error(f"unknown state dtype '{stmt.dtype}'", stmt.span,
                               did_you_mean(stmt.dtype, list(_STATE_DTYPES)) or f"use one of {', '.join(_STATE_DTYPES)}")
                raise _Abort
        init = stmt.init
        if isinstance(init, A.Num | A.UnaryOp):
            init = A.Call(func="fill", args=[A.Name(id="grad", span=init.span), init], span=init.span)
            object.__setattr__(init, "func_span", init.span)
        prim = lookup(init.func) if isinstance(init, A.Call) else None
        if prim is None or prim.family != "init":
            inits = ", ".join(p.signature_text() for p in all_primitives() if p.family == "init")
            self.rep.error(f"state '{stmt.name}' must start from an initializer or a number", stmt.init.span,
                           f"initializers: {inits}")
            raise _Abort
        node = self.call(init, env, piped=None, label=None, bind_name=None)
        self.calls.remove(node)  # the initializer runs when the state is created, not every step
        args = {}
        for k, v in node.args.items():
            if not isinstance(v, ir.Const):
                self.rep.error(f"{prim.name}: argument '{k}' of a state initializer must be a constant", init.span)
                raise _Abort
            args[k] = v.value
        if node.inputs[0].frames:
            self.rep.error("a state cannot start from a value inside a rotated frame", init.span)
            raise _Abort
        if stmt.name in {n for c in self.calls for n in c.state_names.values()} | self.cache_names:
            self.rep.error(f"state name '{stmt.name}' is already used by a stage of this rule", stmt.span,
                           "choose another name")
            raise _Abort
        self.cache_names.add(stmt.name)
        return ir.StateRef(kind=node.kind, span=stmt.span, ndims=node.ndims, name=stmt.name, init=prim,
                           init_args=args, like=node.inputs[0], dtype=dtype)

    def assign(self, stmt: A.Assign, env: dict[str, ir.Node], lets: dict[str, Any]) -> None:
        """``NAME <- expr``: later statements read the new value; the last one is stored."""
        ref = self.feedback.get(stmt.name)
        if ref is None:
            hint = ("it is a `let` binding, which cannot change" if stmt.name in lets
                    else f"declare it first: `state {stmt.name} = zeros(grad)`")
            self.rep.error(f"'{stmt.name}' is not a feedback state", stmt.span, hint)
            return
        try:
            value = self.expr(stmt.value, env)
        except _Abort:
            env[stmt.name] = _FAILED
            return
        if value.frames:
            value = self.leave_frames(value)
        if value.kind not in ("tensor", "scalar") and ref.kind == "tensor":
            self.rep.error(f"state '{stmt.name}' holds a tensor; this assigns a {value.kind} value", stmt.value.span)
            return
        if value.kind == "tensor" and ref.kind == "scalar":
            self.rep.error(f"state '{stmt.name}' holds one number per parameter; this assigns a tensor",
                           stmt.value.span, "reduce it first (e.g. `fro_norm`, `as_scalar`)")
            return
        env[stmt.name] = value

    def form_args(self, c: A.Call, names: tuple[str, ...], required: int) -> dict[str, A.Expr]:
        if len(c.args) > len(names):
            self.rep.error(f"{c.func} takes at most {len(names)} arguments, got {len(c.args)}", c.span,
                           f"write `{FORMS[c.func]}`")
            raise _Abort
        got: dict[str, A.Expr] = dict(zip(names, c.args))
        for kw in c.kwargs:
            if kw.name not in names or kw.name in got:
                what = "has no argument" if kw.name not in names else "got twice the argument"
                self.rep.error(f"{c.func} {what} '{kw.name}'", kw.span, f"write `{FORMS[c.func]}`")
                raise _Abort
            got[kw.name] = kw.value
        missing = [n for n in names[:required] if n not in got]
        if missing:
            self.rep.error(f"{c.func} needs '{missing[0]}'", c.span, f"write `{FORMS[c.func]}`")
            raise _Abort
        return got

    def period(self, e: A.Expr, form: str, env: dict[str, ir.Node]) -> ir.Node:
        """The T of every(T, ...) / restart(T, ...): a structural int >= 1."""
        t = self.expr(e, env)
        value, hyper_names = _known_value(t, self.hypers)
        if not (isinstance(t, ir.Const) or (isinstance(t, ir.Hyper) and self.hypers[t.name].type == "int")):
            self.rep.error(f"{form}(T, ...): T must be an int literal or an int hyperparameter", e.span,
                           "periods are compile-time constants: declare `T: int = 100`")
            raise _Abort
        try:
            _PERIOD.validate(value)
        except ValueError as err:
            via = f" (hyperparameter '{hyper_names[0]}' defaults to {value!r})" if hyper_names else ""
            self.rep.error(f"{form}(T, ...): T {str(err).split(' ', 2)[2]}{via}", e.span, "T counts steps: T >= 1")
            raise _Abort from None
        if isinstance(t, ir.Hyper):
            self.constraints.append(ir.Constraint(t.name, form, _PERIOD, e.span))
        self.periods.append(t)
        return t

    def form_every(self, c: A.Call, env: dict[str, ir.Node], bind_name: str | None) -> ir.Node:
        got = self.form_args(c, ("T", "value"), 2)
        period = self.period(got["T"], "every", env)
        value = self.expr(got["value"], env)
        if value.kind not in ("tensor", "scalar"):
            self.rep.error("every(T, value) caches a tensor or a per-parameter value; this one is "
                           f"{value.kind}", got["value"].span)
            raise _Abort
        if value.frames:
            self.rep.error("every(T, value) cannot cache a value inside a rotated frame", got["value"].span)
            raise _Abort
        name, k = bind_name or "every", 1
        taken = {n for cl in self.calls for n in cl.state_names.values()} | self.cache_names
        while name in taken:
            name, k = f"{bind_name or 'every'}_{k}", k + 1
        self.cache_names.add(name)
        return ir.Every(kind=value.kind, span=c.span, ndims=value.ndims, period=period, value=value, name=name)

    def scoped(self, e: A.Expr, env: dict[str, ir.Node], **scope: ir.Node) -> ir.Node:
        """Check ``e`` with ``self.guard`` / ``self.restart`` set for the calls it makes."""
        saved = {k: getattr(self, k) for k in scope}
        for k, v in scope.items():
            setattr(self, k, v)
        try:
            return self.expr(e, env)
        finally:
            for k, v in saved.items():
                setattr(self, k, v)

    def form_gate(self, c: A.Call, env: dict[str, ir.Node], bind_name: str | None) -> ir.Node:
        got = self.form_args(c, ("mask", "then", "else"), 2)
        if self.guard is not None:
            self.rep.error("gates cannot nest", c.span, "combine the masks in one sampler")
            raise _Abort
        mask = self.expr(got["mask"], env)
        if mask.kind == "tensor":
            self.rep.error("gate(mask, ...): the mask is one value per parameter (a sampler such as "
                           "`sample_layers`), not a tensor", got["mask"].span)
            raise _Abort
        then = self.scoped(got["then"], env, guard=mask)
        other = None
        if "else" in got:
            other = self.scoped(got["else"], env, guard=ir.Op(kind=mask.kind, op="not", operands=[mask], span=mask.span))
        kind = _max_kind([then, other] if other is not None else [then])
        return ir.Gate(kind=kind, span=c.span, ndims=then.ndims | (other.ndims if other else frozenset()),
                       frames=self.same_frame([then, *([other] if other else [])], c.span),
                       mask=mask, then=then, other=other)

    def form_restart(self, c: A.Call, env: dict[str, ir.Node], bind_name: str | None) -> ir.Node:
        got = self.form_args(c, ("T", "value"), 2)
        if self.restart is not None:
            self.rep.error("restart scopes cannot nest", c.span)
            raise _Abort
        period = self.period(got["T"], "restart", env)
        n0 = len(self.calls)
        value = self.scoped(got["value"], env, restart=period)
        if not any(cl.prim.state for cl in self.calls[n0:]):  # type: ignore[union-attr]
            self.rep.warning("restart(T, ...) has no stateful stage inside: it changes nothing", c.span)
        return value


FORMS = {  # language forms (not primitives): what the checker tells users to write
    "every": "every(T, value)",
    "gate": "gate(mask, then, else)",
    "restart": "restart(T, value)",
}
_STATE_DTYPES = {"float32": "float32", "f32": "float32", "float64": "float64", "f64": "float64",
                 "bfloat16": "bfloat16", "bf16": "bfloat16"}


_PERIOD = Arg("T", Annotated[int, Field(ge=1)], 1, True, "int")  # validates every/restart periods
