"""What the rule checker (:mod:`.rule`) and the language forms (:mod:`.forms`) share: the names a
rule body starts with, the abort signal, the marker of a failed binding, a rule's state names,
and reading known values off IR nodes."""
from __future__ import annotations

from typing import Any

from . import ir

HYPER_TYPES = ("float", "int", "bool", "str", "tuple")
INPUTS = ("grad", "param", "step")  # step: the 1-based step count, a runtime scalar


class Abort(Exception):
    """A subexpression failed; its diagnostic is already recorded."""


UNKNOWN = object()  # a value only known at run time
FAILED = ir.Const(kind="const", value=None)  # a `let` or state whose value had an error


class StateNames:
    """The state names of one rule (stages, `state` declarations, `every` caches): each unique."""

    def __init__(self) -> None:
        self.taken: set[str] = set()

    def __contains__(self, name: str) -> bool:
        return name in self.taken

    def claim(self, want: str) -> str:
        """``want``, else ``want_1``, ``want_2``, …: the first name not taken; now taken."""
        name, k = want, 1
        while name in self.taken:
            name, k = f"{want}_{k}", k + 1
        self.taken.add(name)
        return name

    def claim_stage(self, states: list[str], base: str | None) -> dict[str, str]:
        """Names for a stage's states (its own name -> the rule's): ``base`` is the stage's label or
        binding, when it has one."""
        return {s: self.claim(s if base is None else base if len(states) == 1 else f"{base}_{s}") for s in states}


def known_value(v: ir.Node, hypers: dict[str, ir.HyperParam]) -> tuple[Any, list[str]]:
    """The value of a node if it is a constant or (default of) a hyperparameter, with the names of
    the hyperparameters it came from; :data:`UNKNOWN` otherwise."""
    if isinstance(v, ir.Const):
        return v.value, []
    if isinstance(v, ir.Hyper):
        return hypers[v.name].default, [v.name]
    if isinstance(v, ir.Op) and v.op == "??":  # an optional hyperparameter, or its fallback when unset
        value, names = known_value(v.operands[0], hypers)
        return (value, names) if value is not None else known_value(v.operands[1], hypers)
    if isinstance(v, ir.TupleOf):
        vals, names = [], []
        for item in v.items:
            val, n = known_value(item, hypers)
            if val is UNKNOWN:
                return UNKNOWN, []
            vals.append(val)
            names += n
        return tuple(vals), names
    return UNKNOWN, []


def tuple_len(v: ir.Node, hypers: dict[str, ir.HyperParam]) -> int | None:
    """The length of a tuple-valued node; None when it is not a tuple."""
    if isinstance(v, ir.Const) and isinstance(v.value, tuple):
        return len(v.value)
    if isinstance(v, ir.TupleOf):
        return len(v.items)
    if isinstance(v, ir.Hyper) and isinstance(hypers[v.name].default, tuple):
        return len(hypers[v.name].default)
    return None


def max_kind(nodes: list[ir.Node]) -> ir.Kind:
    """The widest kind among ``nodes`` (a tensor beats a scalar beats a runtime value, …)."""
    return max((n.kind for n in nodes), key=lambda k: ir.KIND_ORDER[k])
