"""Shape inference over a checked rule: every value's shape in terms of the parameter's dims
(:mod:`optloom.shapes`), for each number of dims the rule's selector admits, before any tensor
exists. Operands that do not broadcast, an ``@`` whose inner dims differ, a ``.T`` of a
non-matrix, a call its primitive's shape rule refuses (an update that is not the parameter's
shape, at ``apply``) and a state assigned a value of another shape are errors, located at the
expression, call or assignment. A value computed from a primitive without a shape rule has an
unknown shape: nothing is checked downstream of it.
"""
from __future__ import annotations

from typing import Any

from ..lang.diagnostics import Reporter, Span
from .. import shapes as S
from . import ir

_ARITH = frozenset({"+", "-", "*", "/", "**", "==", "!=", "<", "<=", ">", ">="})
MANY_DIMS = 6  # parameters with more dims than this behave alike under every shape rule: one stands for all


def check_shapes(rep: Reporter, label: str, roots: list[ir.Node], ndims: frozenset[int],
                 assignments: list[tuple[ir.StateRef, ir.Node, Span]]) -> None:
    """Infer the shapes of everything reachable from ``roots`` for each admitted ndim; report each
    node's first error once (its shape is then unknown, so nothing downstream repeats it)."""
    nodes = ir.walk(roots)
    reported: set[int] = set()
    many = len(ndims) > 1

    def report(key: int, message: str, span: Span, hint: str | None, ndim: int) -> None:
        if key not in reported:
            reported.add(key)
            where = f" (rule '{label}' admits parameters with ndim={ndim})" if many else ""
            rep.error(message + where, span, hint)

    few = sorted(d for d in ndims if d <= MANY_DIMS)
    for ndim in few + sorted(d for d in ndims if d > MANY_DIMS)[:1]:
        param = S.param_shape(ndim)
        shape: dict[int, S.Shape | None] = {}
        for node in nodes:
            try:
                shape[id(node)] = infer(node, shape, param)
            except S.ShapeError as err:
                shape[id(node)] = None
                report(id(node), str(err), node.span, err.hint, ndim)
        for ref, value, span in assignments:
            have, got = shape.get(id(ref)), shape.get(id(value))
            if have is not None and got is not None and not _same(have, got):
                report(id(value), f"state '{ref.name}' has shape {S.show(have, ndim)}, but this assigns a value "
                       f"of shape {S.show(got, ndim)}", span, "a state keeps its shape from step to step", ndim)


def _same(a: S.Shape, b: S.Shape) -> bool:
    """Not known to differ: the same rank and no two dims known to be different."""
    return len(a) == len(b) and all(S.equal(x, y) is not False for x, y in zip(a, b))


def infer(node: ir.Node, shape: dict[int, S.Shape | None], param: S.Shape) -> S.Shape | None:
    """The shape of ``node`` from its inputs' (already in ``shape``); raises ShapeError."""
    of = lambda n: shape.get(id(n)) if n is not None else None  # noqa: E731
    ndim = len(param)
    if isinstance(node, ir.Input):
        return () if node.name == "step" else param
    if isinstance(node, ir.Const | ir.Hyper | ir.TupleOf):
        return ()
    if isinstance(node, ir.Op):
        ops = [of(o) for o in node.operands]
        if node.op in ("neg", "not"):
            return ops[0]
        if node.op == "index":
            return ()
        if node.op == "transpose":
            s = ops[0]
            if s is not None and len(s) < 2:
                raise S.ShapeError(f"`.T` transposes a matrix, but this value has shape {S.show(s, ndim)}")
            return None if s is None else (*s[:-2], s[-1], s[-2])
        if node.op == "@":
            return _matmul(ops[0], ops[1], ndim)
        if node.op == "??":
            return ops[1] if node.operands[1].kind in ("tensor", "scalar") else ()
        if node.op in _ARITH:
            return S.broadcast(ops, ndim)
        return None
    if isinstance(node, ir.Call):
        prim = node.prim
        assert prim is not None and prim.shape is not None
        call = S.ShapeCall(prim.name, tuple(of(i) for i in node.inputs), _known_args(node.args), param)
        return prim.shape(call)
    if isinstance(node, ir.StateRef):
        if node.value is not None:
            return of(node.value)
        rule = node.init.shape  # type: ignore[union-attr]
        return rule(S.ShapeCall(node.init.name, (of(node.like),), dict(node.init_args), param))  # type: ignore[union-attr, misc]
    if isinstance(node, ir.Every | ir.Leave):
        return of(node.value)
    if isinstance(node, ir.Gate):
        branches = [of(node.then)] + ([of(node.other)] if node.other is not None else [])
        return S.broadcast(branches, ndim)
    return None


def _known_args(args: dict[str, ir.Node]) -> dict[str, Any]:
    """Argument values a shape rule may rely on: literals (a hyperparameter may change per group)."""
    out: dict[str, Any] = {}
    for k, v in args.items():
        if isinstance(v, ir.Const):
            out[k] = v.value
        elif isinstance(v, ir.TupleOf) and all(isinstance(i, ir.Const) for i in v.items):
            out[k] = tuple(i.value for i in v.items)  # type: ignore[attr-defined]
        else:
            out[k] = S.UNKNOWN_ARG
    return out


def _matmul(a: S.Shape | None, b: S.Shape | None, ndim: int) -> S.Shape | None:
    for s in (a, b):
        if s is not None and len(s) < 2:
            raise S.ShapeError(f"`@` multiplies matrices, but an operand has shape {S.show(s, ndim)}")
    if a is None or b is None:
        return None
    if S.equal(a[-1], b[-2]) is False:
        names = S.dim_names(ndim)
        raise S.ShapeError(f"`@` of shapes {S.show(a, ndim)} and {S.show(b, ndim)}: the inner dims "
                           f"{a[-1].text(names)} and {b[-2].text(names)} differ",
                           "transpose one side (`.T`) so that columns of the left meet rows of the right")
    lead = S.broadcast([a[:-2], b[:-2]], ndim)
    return None if lead is None else (*lead, a[-2], b[-1])
