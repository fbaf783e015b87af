"""Rule selectors: concrete evaluation on a parameter, and a static three-valued analysis over
``ndim`` used by the checker (which dims a rule admits; whether it can ever match)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..lang import ast as A
from .consts import safe_pow

SELECTOR_NAMES = ("ndim", "shape", "numel", "name", "group")
NDIMS = range(0, 65)  # every ndim torch supports: `ndim > 6` is a rule that can match
UNKNOWN = object()


@dataclass(frozen=True)
class ParamInfo:
    name: str | None
    shape: tuple[int, ...]
    group: int

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


class SelectorError(ValueError):
    pass


def evaluate(expr: A.Expr | None, info: ParamInfo, hypers: dict[str, Any]) -> bool:
    """Does the selector hold for this parameter?"""
    if expr is None:
        return True
    env = {"ndim": info.ndim, "shape": info.shape, "numel": info.numel, "name": info.name, "group": info.group}
    return bool(_safe_eval(expr, env, hypers))


def uses_name(expr: A.Expr | None) -> bool:
    if expr is None:
        return False
    return any(isinstance(n, A.Name) and n.id == "name" for n in A.walk(expr))


def admitted_ndims(expr: A.Expr | None, hypers: dict[str, Any]) -> frozenset[int]:
    """The ``ndim`` values for which the selector may hold (name/shape/numel unknown)."""
    if expr is None:
        return frozenset(NDIMS)
    out = set()
    for d in NDIMS:
        env = {"ndim": d, "shape": UNKNOWN, "numel": UNKNOWN, "name": UNKNOWN, "group": UNKNOWN}
        if _safe_eval(expr, env, hypers) is not False:
            out.add(d)
    return frozenset(out)


def _safe_eval(e: A.Expr, env: dict[str, Any], hypers: dict[str, Any]) -> Any:
    """:func:`_eval`, with every evaluation failure turned into a :class:`SelectorError`."""
    try:
        return _eval(e, env, hypers)
    except SelectorError:
        raise
    except (OverflowError, MemoryError):
        raise SelectorError("cannot evaluate selector: a number is too large") from None
    except (TypeError, ValueError, ArithmeticError, re.error) as err:
        raise SelectorError(f"cannot evaluate selector: {err}") from None


def _eval(e: A.Expr, env: dict[str, Any], hypers: dict[str, Any]) -> Any:
    """Three-valued evaluation: UNKNOWN propagates; ``and``/``or`` short-circuit on known values."""
    if isinstance(e, A.Num | A.Str | A.Bool):
        return e.value
    if isinstance(e, A.NoneLit):
        return None
    if isinstance(e, A.Name):
        if e.id in env:
            return env[e.id]
        if e.id in hypers:
            return hypers[e.id]
        raise SelectorError(f"unknown name '{e.id}' in selector")
    if isinstance(e, A.TupleLit):
        items = [_eval(i, env, hypers) for i in e.items]
        return UNKNOWN if any(i is UNKNOWN for i in items) else tuple(items)
    if isinstance(e, A.Match):
        s = _eval(e.subject, env, hypers)
        if s is UNKNOWN:
            return UNKNOWN
        return s is not None and re.search(e.pattern, s) is not None
    if isinstance(e, A.Index):
        v, i = _eval(e.value, env, hypers), _eval(e.index, env, hypers)
        if v is UNKNOWN or i is UNKNOWN:
            return UNKNOWN
        try:
            return v[i]
        except (IndexError, TypeError):
            return False if isinstance(v, tuple) else UNKNOWN
    if isinstance(e, A.UnaryOp):
        v = _eval(e.operand, env, hypers)
        if v is UNKNOWN:
            return UNKNOWN
        return (not v) if e.op == "not" else -v
    if isinstance(e, A.BinOp):
        if e.op in ("and", "or"):
            left = _eval(e.left, env, hypers)
            if e.op == "and" and left is False or e.op == "or" and left is True:
                return left
            right = _eval(e.right, env, hypers)
            if e.op == "and":
                if right is False:
                    return False
                return UNKNOWN if UNKNOWN in (left, right) else bool(left and right)
            if right is True:
                return True
            return UNKNOWN if UNKNOWN in (left, right) else bool(left or right)
        a = _eval(e.left, env, hypers)
        if e.op == "??":
            return a if a is not None else _eval(e.right, env, hypers)
        b = _eval(e.right, env, hypers)
        if a is UNKNOWN or b is UNKNOWN:
            return UNKNOWN
        try:
            return _BIN[e.op](a, b)
        except (TypeError, ZeroDivisionError):
            raise SelectorError(f"cannot compute {a!r} {e.op} {b!r} in selector") from None
    if isinstance(e, A.Call) and e.func in ("min", "max", "len", "prod"):
        vals = [_eval(a, env, hypers) for a in e.args]
        if any(v is UNKNOWN for v in vals):
            return UNKNOWN
        if e.func == "len":
            return len(vals[0])
        if e.func == "prod":
            out = 1
            for v in vals[0]:
                out *= v
            return out
        seq = vals[0] if len(vals) == 1 else vals
        return min(seq) if e.func == "min" else max(seq)
    raise SelectorError("selectors use ndim, shape, numel, name, group, comparisons, `~`, "
                        "and/or/not, min/max/len/prod")


def _num(v: Any) -> Any:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise TypeError(f"arithmetic needs numbers, got {v!r}")
    return v


_BIN = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
    "+": lambda a, b: _num(a) + _num(b), "-": lambda a, b: _num(a) - _num(b), "*": lambda a, b: _num(a) * _num(b),
    "/": lambda a, b: _num(a) / _num(b), "**": lambda a, b: safe_pow(_num(a), _num(b)),
}
