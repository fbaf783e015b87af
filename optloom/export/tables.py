"""The spec's tables as Python: hyperparameters (type, default), their range constraints (from
the primitives' declared argument types), selectors as predicates, the state declarations of the
stateful primitives, and one ``Rule`` entry per rule."""
from __future__ import annotations

import types
import typing
from typing import Any, Literal, get_args, get_origin

from ..check import ir
from ..check.program import Program
from ..check.selectors import uses_name
from ..lang import ast as A
from ..lowering.hypers import fed_at_runtime
from ..lowering.layout import layout_of
from .collect import Collector, ExportError
from .pysource import docstring, literal

SELECTOR_NAMES = ("ndim", "shape", "numel", "name", "group")


def hyperparams_table(program: Program) -> str:
    rows = [f"    {literal(h.name)}: ({literal(h.type)}, {literal(h.default)}, {getattr(h, 'optional', False)}),"
            for h in program.hyperparams.values()]
    return "HYPERPARAMS = {  # name: (type, default, may be None)\n" + "\n".join(rows) + "\n}\n"


def annotation_spec(ann: Any) -> tuple:
    """A primitive argument's declared type as ``check_value``'s spec (ranges, choices, shapes)."""
    origin = get_origin(ann)
    if origin is typing.Annotated:
        base, *meta = get_args(ann)
        bounds: dict[str, Any] = {}
        for m in meta:
            for obj in [m, *getattr(m, "metadata", [])]:
                for key in ("ge", "gt", "le", "lt"):
                    if getattr(obj, key, None) is not None and not callable(getattr(obj, key)):
                        bounds[key] = getattr(obj, key)
        if bounds:
            return ("num", bounds.get("ge"), bounds.get("gt"), bounds.get("le"), bounds.get("lt"))
        return annotation_spec(base)
    if origin is Literal:
        return ("in", tuple(get_args(ann)))
    if origin in (typing.Union, getattr(types, "UnionType", None)):
        parts = [annotation_spec(a) for a in get_args(ann) if a is not type(None)]
        if type(None) in get_args(ann):
            parts.append(("in", (None,)))
        return ("any",) if any(p == ("any",) for p in parts) else ("union", parts)
    if origin is tuple:
        items = get_args(ann)
        if len(items) == 2 and items[1] is Ellipsis:
            return ("list", annotation_spec(items[0]))
        return ("tuple", [annotation_spec(a) for a in items])
    if origin is list:
        return ("list", annotation_spec(get_args(ann)[0]))
    return ("any",)


def constraints_table(program: Program) -> str:
    rows = []
    seen = set()
    for c in program.ir.constraints:
        spec = annotation_spec(c.arg.annotation)
        if c.item is not None:  # the hyperparameter is one item of a tuple argument
            spec = spec[1][c.item] if spec[0] == "tuple" and c.item < len(spec[1]) else \
                spec[1] if spec[0] == "list" else ("any",)
        if spec == ("any",):
            continue
        row = f"    ({literal(c.hyper)}, {literal(c.prim)}, {literal(c.arg.name)}, {literal(spec)}),"
        if row not in seen:
            seen.add(row)
            rows.append(row)
    return ("CONSTRAINTS = [  # (hyperparameter, primitive, argument, allowed values)\n"
            + "\n".join(rows) + "\n]\n")


def selector_source(e: A.Expr | None, hypers: set[str]) -> str:
    """A selector as a Python expression over ``name, shape, ndim, numel, group, hp``."""
    if e is None:
        return "True"
    s = lambda x: selector_source(x, hypers)  # noqa: E731
    if isinstance(e, (A.Num, A.Str, A.Bool)):
        return literal(e.value)
    if isinstance(e, A.Name):
        if e.id in SELECTOR_NAMES:
            return e.id
        if e.id in hypers:
            return f'hp["{e.id}"]'
        raise ExportError(f"unknown name '{e.id}' in a selector")
    if isinstance(e, A.TupleLit):
        items = [s(i) for i in e.items]
        return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
    if isinstance(e, A.Match):
        return f"match({s(e.subject)}, {literal(e.pattern)})"
    if isinstance(e, A.Index):
        return f"index({s(e.value)}, {s(e.index)})"
    if isinstance(e, A.UnaryOp):
        return f"(not {s(e.operand)})" if e.op == "not" else f"(-{s(e.operand)})"
    if isinstance(e, A.BinOp):
        return f"({s(e.left)} {e.op} {s(e.right)})"
    if isinstance(e, A.Call) and e.func in ("min", "max", "len", "prod"):
        args = ", ".join(s(a) for a in e.args)
        return f"math.prod({args})" if e.func == "prod" else f"{e.func}({args})"
    raise ExportError(f"cannot export selector part {type(e).__name__}")


def strip_outer(text: str) -> str:
    """``(a and b)`` -> ``a and b`` when the parentheses wrap the whole expression."""
    if not (text.startswith("(") and text.endswith(")")):
        return text
    depth = 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and i < len(text) - 1:
            return text
    return text[1:-1]


def selector_function(rule: ir.RuleIR, hypers: set[str]) -> str:
    body = strip_outer(selector_source(rule.selector, hypers))
    doc = docstring(f"{rule.label}: {rule.selector_text}", "    ")
    return f"def select_{rule.label}(name, shape, ndim, numel, group, hp) -> bool:\n{doc}\n    return {body}\n"


def states_table(stateful: dict[str, Any], col: Collector) -> str:
    rows = []
    for name, prim in sorted(stateful.items()):
        decls = []
        for s in prim.state:
            parts = [literal(s.name)]
            if s.init is not None:
                parts.append(f"init={col.obj(s.init, f' (initializer of state {s.name!r} of {name})')}")
            if s.dtype:
                parts.append(f"dtype={literal(s.dtype)}")
            if not s.linear:
                parts.append("linear=False")
            decls.append(f"{literal(s.name)}: State({', '.join(parts)})")
        rows.append(f"    {literal(name)}: {{{', '.join(decls)}}},")
    return "STATES = {  # the state each stateful primitive declares (its name, how it starts)\n" + \
        "\n".join(rows) + "\n}\n"


def rule_entry(program: Program, rule: ir.RuleIR, step_fn: str) -> str:
    hp = program.hyperparams
    names = sorted(rule.hyper_names)
    runtime = [n for n in names if fed_at_runtime(rule, hp[n])]
    periods = tuple(_value(p) for p in rule.periods)
    ops = tuple(_value(c.args["op"]) for c in rule.reductions)
    return (f"    Rule({literal(rule.label)}, select_{rule.label}, uses_name={uses_name(rule.selector)}, "
            f"layout={str(layout_of(rule))!r}, step={step_fn},\n"
            f"         hypers={literal(tuple(names))},\n"
            f"         runtime={literal(tuple(runtime))},\n"
            f"         periods=({''.join(p + ', ' for p in periods)}), "
            f"reductions=({''.join(o + ', ' for o in ops)}), uses_group={rule.uses_group}"
            f"{', first_step=True' if getattr(rule, 'first_step', False) else ''}),")


def _value(node: ir.Node) -> str:
    if isinstance(node, ir.Const):
        return literal(node.value)
    if isinstance(node, ir.Hyper):
        return f"HP({node.name!r})"
    raise ExportError("a period or group-reduction op must be a literal or a hyperparameter")

