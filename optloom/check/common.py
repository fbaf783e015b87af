"""Small pieces shared by the rule checker and its forms mixin."""
from __future__ import annotations

from typing import Any

from . import ir


class _Abort(Exception):
    """A subexpression failed; its diagnostic is already recorded."""


_UNKNOWN = object()
_FAILED = ir.Const(kind="const", value=None)  # a `let` whose value had an error


def _known_value(v: ir.Node, hypers: dict[str, ir.HyperParam]) -> tuple[Any, list[str]]:
    """The value of a node if it is a constant or (default of) a hyperparameter."""
    if isinstance(v, ir.Const):
        return v.value, []
    if isinstance(v, ir.Hyper):
        return hypers[v.name].default, [v.name]
    if isinstance(v, ir.TupleOf):
        vals, names = [], []
        for item in v.items:
            val, n = _known_value(item, hypers)
            if val is _UNKNOWN:
                return _UNKNOWN, []
            vals.append(val)
            names += n
        return tuple(vals), names
    return _UNKNOWN, []


def _tuple_len(v: ir.Node, hypers: dict[str, ir.HyperParam]) -> int | None:
    if isinstance(v, ir.Const) and isinstance(v.value, tuple):
        return len(v.value)
    if isinstance(v, ir.TupleOf):
        return len(v.items)
    if isinstance(v, ir.Hyper) and isinstance(hypers[v.name].default, tuple):
        return len(hypers[v.name].default)
    return None


def _max_kind(nodes: list[ir.Node]) -> ir.Kind:
    return max((n.kind for n in nodes), key=lambda k: ir.KIND_ORDER[k])
