"""A call of a primitive, checked over the checker's :class:`~.interface.Checker` interface: which
value is its input (the piped one, its first argument, or ``grad``), its arguments (arity,
keywords, kinds, declared ranges) and its output's kind and dims.

A call that is not piped starts from ``grad`` when its first argument cannot be the input (a
constant, a tuple, a structural value: ``adam(betas)``, ``ema(0.9)``) or when it is the first
stage of a pipeline (``ema(momentum) |> apply(lr)``). A runtime first argument (``step * 2.0``,
a float hyperparameter) elsewhere is the input when the call has more arguments than the
primitive has besides its input (``sqrt(step * 2.0)``), and is refused as ambiguous otherwise
(``x / min(cap)``: ``min(grad, cap)`` or the minimum of ``cap`` and 0?).
"""
from __future__ import annotations

from typing import Any

from ..lang import ast as A
from ..lang.diagnostics import Span
from ..lang.printer import print_expr
from ..primitives.registry import Primitive, did_you_mean, show_value
from .. import shapes
from . import ir
from .common import HYPER_TYPES, UNKNOWN, Abort, known_value
from .interface import Checker, Env

Bound = dict[str, tuple[ir.Node, Span]]  # parameter name -> (value, where it was written)


def primitive_call(ck: Checker, prim: Primitive, c: A.Call, env: Env, piped: ir.Node | None, label: str | None,
                   bind_name: str | None, label_span: Span | None, head: bool) -> ir.Call:
    """The IR of a primitive call; ``head``: the call is the first stage of a pipeline."""
    bound = bind(ck, prim, c, env, piped, head)
    inputs: list[ir.Node] = []
    for name in prim.inputs:
        if name not in bound:
            ck.rep.error(f"{prim.name} needs a tensor input '{name}'", c.span, f"signature: {prim.signature_text()}")
            raise Abort
        v, span = bound[name]
        ck.usable(v, span)
        if v.kind not in ("tensor", "scalar", "runtime"):
            ck.rep.error(f"{prim.name}: input '{name}' must be a tensor, got a {v.kind} value", span)
            raise Abort
        inputs.append(v)
    args: dict[str, ir.Node] = {}
    for name, arg in prim.args.items():
        if name in bound:
            args[name] = argument(ck, prim, arg, *bound[name])
        elif arg.required:
            ck.rep.error(f"{prim.name} needs argument '{name}'", c.span, f"signature: {prim.signature_text()}")
            raise Abort
        elif not (prim.lr_from_apply and name == "lr"):  # the rule's apply lr: bound when the rule is finished
            args[name] = ir.Const(kind="const", value=arg.default)
    if prim.reads_param and inputs and inputs[0].frames:
        inputs[0] = ck.leave_frames(inputs[0])  # frames end before the parameter
    frames = ck.same_frame(inputs, c.span)
    if frames and any(not st.linear for st in prim.state):
        ck.rep.error(f"{prim.name} keeps non-linear state, which cannot live inside a rotated frame",
                     c.func_span, f"move {prim.name} before the frame-opening stage")
        raise Abort
    kind, ndims = output_type(ck, prim, inputs, args, c.func_span)
    node = ir.Call(kind=kind, span=c.span, ndims=ndims, frames=frames, prim=prim, inputs=inputs, args=args,
                   state_names=ck.state_names.claim_stage([st.name for st in prim.state], label or bind_name),
                   label=label, guard=ck.guard, restart=ck.restart)
    if prim.frame is not None:
        node.frames = (*frames, node)  # a frame-opening call's value lives in its own frame
    if label:
        if label in ck.labels:
            ck.rep.error(f"stage label '{label}' used twice in rule '{ck.rule.label}'", label_span or c.span)
        ck.labels[label] = node
    ck.calls.append(node)
    return node


def bind(ck: Checker, prim: Primitive, c: A.Call, env: Env, piped: ir.Node | None, head: bool) -> Bound:
    """The values of a primitive call by parameter name (inputs and arguments), each with the span
    of the text that gave it (the call itself for the piped value or an implied ``grad``)."""
    pos = [ck.expr(a, env) for a in c.args]
    spans = [a.span for a in c.args]
    implied = False
    if piped is None and prim.inputs and (not pos or pos[0].kind not in ("tensor", "scalar")):
        fits = len(pos) <= len(prim.args)  # the arguments fit without the first being the input
        if pos and pos[0].kind == "runtime" and not fits:
            pass  # the runtime value is the input: sqrt(step * 2.0)
        elif pos and pos[0].kind == "runtime" and not head:
            text = print_expr(c)
            rest = ", ".join(print_expr(a) for a in c.args) + "".join(
                f", {k.name} = {print_expr(k.value)}" for k in c.kwargs)
            ck.rep.error(f"`{text}` reads as `{prim.name}(grad, {rest})`: a call whose first argument is not a "
                         "tensor starts from `grad`, which is ambiguous here, outside a pipeline's first stage",
                         c.span, f"write `grad |> {text}` for that, or give the input first: "
                                 f"`{prim.name}(x, {rest})`")
            raise Abort
        else:
            piped, implied = ck.inputs["grad"], True  # a pipeline may begin with a stage: it starts from grad
    values = ([piped] if piped is not None else []) + pos
    params = [*prim.inputs, *prim.args]
    if len(values) > len(params):
        most = len(params) - (1 if piped is not None else 0)
        if implied:
            first = print_expr(c.args[0])
            what = {"const": "a constant", "structural": "a compile-time value"}.get(pos[0].kind, f"a {pos[0].kind} value")
            ck.rep.error(f"`{print_expr(c)}`: {first} is {what}, not a tensor, so the call starts from `grad` "
                         f"(`{prim.name}(grad, {first}, …)`), and then {prim.name} takes at most {most} argument(s) "
                         f"besides its input, got {len(pos)}", c.span,
                         f"a primitive's input is a tensor or a runtime value (fold constants with arithmetic, "
                         f"e.g. `2.0 ** 0.5`); signature: {prim.signature_text()}")
        else:
            ck.rep.error(f"{prim.name} takes at most {most} argument(s) here, got {len(pos)}", c.span,
                         f"signature: {prim.signature_text()}")
        raise Abort
    value_spans = ([c.span] if piped is not None else []) + spans
    bound: Bound = {p: (v, s) for p, v, s in zip(params, values, value_spans)}
    for kw in c.kwargs:
        if kw.name not in params:
            ck.rep.error(f"{prim.name} has no argument '{kw.name}'", kw.span,
                         did_you_mean(kw.name, params) or f"signature: {prim.signature_text()}")
            raise Abort
        if kw.name in bound:
            ck.rep.error(f"argument '{kw.name}' of {prim.name} given twice", kw.span)
            raise Abort
        bound[kw.name] = (ck.expr(kw.value, env), kw.value.span)
    return bound


def argument(ck: Checker, prim: Primitive, arg: Any, v: ir.Node, span: Span) -> ir.Node:
    """An argument's value, checked against the argument's kind and declared range."""
    if v.kind == "tensor":
        ck.rep.error(f"{prim.name}: argument '{arg.name}' takes a scalar, got a tensor", span)
        raise Abort
    optional = optional_hyper(ck, v)
    if optional is not None and not _accepts_none(arg):
        ck.rep.error(f"{prim.name}: argument '{arg.name}' needs a value, but hyperparameter '{optional}' may be "
                     "unset (none)", span, f"give a fallback for when it is unset: `{optional} ?? "
                                          f"{show_value(arg.default) if not arg.required else '...'}`")
        raise Abort
    if isinstance(v, ir.Const) and v.value is None and not _accepts_none(arg):
        ck.rep.error(f"{prim.name}: argument '{arg.name}' does not accept none", span, f"signature: {prim.signature_text()}")
        raise Abort
    if arg.structural and v.kind in ("runtime", "scalar"):
        what = f"the float hyperparameter '{v.name}'" if isinstance(v, ir.Hyper) else "a runtime value"
        ck.rep.error(f"{prim.name}: argument '{arg.name}' is structural ({arg.doc_type}), but gets {what}",
                     span, "structural arguments are compile-time constants: use a literal or a hyperparameter "
                           f"declared as `name: {arg.doc_type if arg.doc_type in HYPER_TYPES else 'int'} = ...`")
        raise Abort
    value, hyper_names = known_value(v, ck.hypers)
    if value is not UNKNOWN:
        try:
            arg.validate(value)
        except ValueError as err:
            via = f" (hyperparameter '{hyper_names[0]}' defaults to {value!r})" if hyper_names else ""
            ck.rep.error(f"{prim.name}: {err}{via}", span)
    hyper = v.operands[0] if isinstance(v, ir.Op) and v.op == "??" else v
    if isinstance(hyper, ir.Hyper):
        ck.constraints.append(ir.Constraint(hyper.name, prim.name, arg, span))
    elif isinstance(v, ir.TupleOf):
        for i, item in enumerate(v.items):
            if isinstance(item, ir.Hyper):
                ck.constraints.append(ir.Constraint(item.name, prim.name, arg, span, item=i))
    return v


def optional_hyper(ck: Checker, v: ir.Node) -> str | None:
    """The name of the optional hyperparameter ``v`` is, if it is one."""
    return v.name if isinstance(v, ir.Hyper) and v.optional else None


def _accepts_none(arg: Any) -> bool:
    try:
        arg.validate(None)
        return True
    except ValueError:
        return False


def output_type(ck: Checker, prim: Primitive, inputs: list[ir.Node], args: dict[str, ir.Node],
                span: Span) -> tuple[ir.Kind, frozenset[int]]:
    """The kind and dims of a primitive's output (checks its matrix needs on the way)."""
    first = inputs[0] if inputs else None
    ndims = first.ndims if first is not None else frozenset()
    if prim.name == "as_matrix":  # a view as matrices: the declared shape rule says which dims it takes
        known = {k: v.value if isinstance(v, ir.Const) else shapes.UNKNOWN_ARG for k, v in args.items()}
        for d in sorted(ndims):
            try:
                prim.shape(shapes.ShapeCall(prim.name, (shapes.param_shape(d),), known, shapes.param_shape(d)))  # type: ignore[misc]
            except shapes.ShapeError as err:
                ck.rep.error(f"{err}, but rule '{ck.rule.label}' admits ndim={d}", span, err.hint)
                raise Abort from None
        ndims = frozenset({2})
    if prim.needs_matrix and first is not None:
        if first.kind != "tensor":
            ck.rep.error(f"{prim.name} needs a matrix, got a {first.kind} value", span)
            raise Abort
        ck.need_matrix(first, prim.name, span)
    if prim.output == "scalar":
        return "scalar", frozenset()
    if prim.elementwise and inputs and all(i.kind in ("scalar", "runtime") for i in inputs):
        # an elementwise primitive keeps the kind of its input: sqrt(v) of a per-parameter v is per-parameter
        return ("scalar" if any(i.kind == "scalar" for i in inputs) else "runtime"), ndims
    return "tensor", ndims
