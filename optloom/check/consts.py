"""Constant folding of literal expressions (hyperparameter defaults, def defaults, literal
arithmetic). Only numbers, strings, booleans and tuples: nothing is evaluated as Python."""
from __future__ import annotations

import math
from typing import Any

from ..lang import ast as A


class ConstError(ValueError):
    pass


def const_value(e: A.Expr) -> Any:
    if isinstance(e, A.Num | A.Str | A.Bool):
        return e.value
    if isinstance(e, A.NoneLit):
        return None
    if isinstance(e, A.TupleLit):
        return tuple(const_value(i) for i in e.items)
    if isinstance(e, A.ListLit):
        return [const_value(i) for i in e.items]
    if isinstance(e, A.UnaryOp):
        v = const_value(e.operand)
        if e.op == "-" and _is_num(v):
            return -v
        if e.op == "not" and isinstance(v, bool):
            return not v
        raise ConstError(f"cannot apply `{e.op}` to {type_of_value(v)}")
    if isinstance(e, A.BinOp) and e.op in _ARITH:
        a, b = const_value(e.left), const_value(e.right)
        if not (_is_num(a) and _is_num(b)):
            raise ConstError(f"`{e.op}` needs numbers")
        try:
            out = _ARITH[e.op](a, b)
        except (ZeroDivisionError, OverflowError, ValueError) as err:
            raise ConstError(f"cannot compute {a!r} {e.op} {b!r}: {err}") from None
        if isinstance(out, float) and (math.isnan(out) or math.isinf(out) and math.isfinite(a) and math.isfinite(b)):
            raise ConstError(f"{_show(a)} {e.op} {_show(b)} is not {'a number' if math.isnan(out) else 'finite'}")
        if isinstance(out, complex):
            raise ConstError(f"{a!r} {e.op} {b!r} is not a real number")
        return out
    raise ConstError("must be a constant (a number, string, boolean or tuple)")


def safe_pow(a: int | float, b: int | float) -> int | float:
    """``a ** b``, in floats when the exact integer power would be huge (``10 ** 10**9``)."""
    if isinstance(a, int) and isinstance(b, int) and (abs(b) > 64 or abs(a) > 2 ** 32):
        return float(a) ** float(b)
    return a ** b


_ARITH = {
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
    "/": lambda a, b: a / b, "**": safe_pow,
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}


def _show(v: Any) -> str:
    return ("inf" if v > 0 else "-inf") if isinstance(v, float) and math.isinf(v) else repr(v)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def type_of_value(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "str"
    if isinstance(v, tuple):
        return "tuple"
    if v is None:
        return "none"
    return "list"
