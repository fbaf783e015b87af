"""AST -> canonical spec text (``optloom fmt``) and the stable hash of that canonical form.

``parse(print_module(m)) == m`` for every module (tested by hypothesis)."""
from __future__ import annotations

import hashlib
import math
from decimal import Decimal

from . import ast as A

# binding strength, loosest first (mirrors grammar.lark)
_PREC = {"pipe": 0, "??": 0.5, "or": 1, "and": 2, "not": 3, "cmp": 4, "~": 4, "+": 5, "-": 5,
         "*": 6, "/": 6, "@": 6, "neg": 7, "**": 8, "postfix": 9, "atom": 10}
_CMP = {"==", "!=", "<", "<=", ">", ">="}
INDENT = "  "
MAX_WIDTH = 100


def _prec(e: A.Node) -> int:
    if isinstance(e, A.Pipe):
        return _PREC["pipe"]
    if isinstance(e, A.BinOp):
        return _PREC["cmp"] if e.op in _CMP else _PREC[e.op]
    if isinstance(e, A.UnaryOp):
        return _PREC["not"] if e.op == "not" else _PREC["neg"]
    if isinstance(e, A.Match):
        return _PREC["~"]
    if isinstance(e, A.Index | A.Attr):
        return _PREC["postfix"]
    return _PREC["atom"]


def _wrap(e: A.Node, min_prec: int, indent: str) -> str:
    text = print_expr(e, indent)
    return f"({text})" if _prec(e) < min_prec else text


def _num(v: float | int, is_int: bool) -> str:
    """Ints as written; floats plain (``0.95``, ``100.0``) or, below 0.01 and from 1e6 on, in scientific form
    when that is shorter (``1e-3``, ``3e-4``, ``1e6``)."""
    if is_int:
        return str(v)
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    text = repr(float(v))
    if "e" in text:  # 1e-08 -> 1e-8, 1e+16 -> 1e16
        mant, exp = text.split("e")
        text = f"{mant}e{int(exp)}"
    elif "." not in text:
        text += ".0"
    digits, exp = Decimal(repr(float(v))).normalize().as_tuple()[1:]
    if not digits or digits == (0,):
        return text
    sign = "-" if v < 0 else ""
    point = exp + len(digits) - 1  # value = d.ddd * 10**point
    rest = "".join(map(str, digits[1:]))
    sci = f"{sign}{digits[0]}{'.' + rest if rest else ''}e{point}"
    return sci if (point <= -3 or point >= 6) and len(sci) < len(text) else text


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _str(s: str) -> str:
    """A double-quoted literal; other control characters as ``\\xNN``."""
    out = []
    for ch in s:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def print_expr(e: A.Node, indent: str = "") -> str:
    if isinstance(e, A.Num):
        return _num(e.value, e.is_int)
    if isinstance(e, A.Str):
        return _str(e.value)
    if isinstance(e, A.Bool):
        return "true" if e.value else "false"
    if isinstance(e, A.NoneLit):
        return "none"
    if isinstance(e, A.Name):
        return e.id
    if isinstance(e, A.TupleLit):
        items = [print_expr(i, indent) for i in e.items]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if isinstance(e, A.ListLit):
        return "[" + ", ".join(print_expr(i, indent) for i in e.items) + "]"
    if isinstance(e, A.Call):
        args = [print_expr(a, indent) for a in e.args] + [f"{k.name} = {print_expr(k.value, indent)}" for k in e.kwargs]
        return f"{e.func}({', '.join(args)})"
    if isinstance(e, A.BinOp):
        p = _prec(e)
        if e.op == "**":  # right-associative: a ** (b ** c) prints without parens on the right
            return f"{_wrap(e.left, p + 1, indent)} ** {_wrap(e.right, _PREC['neg'], indent)}"
        if e.op == "??":  # right-associative, its left side an or-expression
            return f"{_wrap(e.left, _PREC['or'], indent)} ?? {_wrap(e.right, p, indent)}"
        if e.op in _CMP:
            return f"{_wrap(e.left, p + 1, indent)} {e.op} {_wrap(e.right, p + 1, indent)}"
        return f"{_wrap(e.left, p, indent)} {e.op} {_wrap(e.right, p + 1, indent)}"
    if isinstance(e, A.UnaryOp):
        if e.op == "not":
            return f"not {_wrap(e.operand, _PREC['not'], indent)}"
        return f"-{_wrap(e.operand, _PREC['neg'], indent)}"
    if isinstance(e, A.Match):
        return f"{_wrap(e.subject, _PREC['+'], indent)} ~ {_str(e.pattern)}"
    if isinstance(e, A.Index):
        return f"{_wrap(e.value, _PREC['postfix'], indent)}[{print_expr(e.index, indent)}]"
    if isinstance(e, A.Attr):
        value = _wrap(e.value, _PREC['postfix'], indent)
        if isinstance(e.value, A.Num) and "." not in value and "e" not in value:
            value = f"({value})"  # `1.T` would lex as the number `1.`
        return f"{value}.{e.name}"
    if isinstance(e, A.Pipe):
        return f"{_wrap(e.left, _PREC['pipe'], indent)} |> {_stage(e.stage, indent)}"
    if isinstance(e, A.Block):
        return _block_inline(e, indent)
    raise TypeError(f"cannot print {type(e).__name__}")


def _stage(s: A.Stage, indent: str) -> str:
    body = _block_inline(s.callee, indent) if isinstance(s.callee, A.Block) else print_expr(s.callee, indent)
    return f"{s.label}: {body}" if s.label else body


def _block_inline(b: A.Block, indent: str) -> str:
    inner = indent + INDENT
    lines = [f"{inner}{_stmt(s, inner)}" for s in b.stmts] + [f"{inner}{print_expr(b.result, inner)}"]
    return "{\n" + "\n".join(lines) + f"\n{indent}}}"


def _stmt(s: A.Node, indent: str) -> str:
    if isinstance(s, A.Let):
        return f"let {s.name} = {print_expr(s.value, indent)}"
    if isinstance(s, A.StateDecl):
        typ = f": {s.dtype}" if s.dtype else ""
        return f"state {s.name}{typ} = {print_expr(s.init, indent)}"
    if isinstance(s, A.Assign):
        return f"{s.name} <- {print_expr(s.value, indent)}"
    raise TypeError(type(s).__name__)


def _params(params: list[A.Param], head: str = "") -> str:
    """Parameters on one line, or one per line (trailing comma) when ``head(...) {`` gets too long."""
    out = []
    for p in params:
        text = p.name + (f": {p.type}" if p.type else "")
        if p.default is not None:
            text += f" = {print_expr(p.default)}"
        out.append(text)
    one_line = ", ".join(out)
    if len(head) + len(one_line) + 4 <= MAX_WIDTH or not out:
        return one_line
    return "\n" + "".join(f"{INDENT}{t},\n" for t in out)


def _body(b: A.Block, indent: str) -> str:
    lines = [f"{indent}{_stmt(s, indent)}" for s in b.stmts] + [f"{indent}{_pipeline(b.result, indent)}"]
    return "\n".join(lines)


def _pipeline(e: A.Node, indent: str) -> str:
    """A pipe chain of more than two stages, or one too wide for a line, breaks one stage per line."""
    stages = []
    cur = e
    while isinstance(cur, A.Pipe):
        stages.append(cur.stage)
        cur = cur.left
    one_line = print_expr(e, indent)
    if not stages or (len(stages) <= 2 and len(indent) + len(one_line) <= MAX_WIDTH):
        return one_line
    head = _wrap(cur, _PREC["pipe"] + 1, indent)
    cont = indent + INDENT
    return head + "".join(f"\n{cont}|> {_stage(s, cont)}" for s in reversed(stages))


def print_module(m: A.Module) -> str:
    chunks = []
    for item in m.items:
        if isinstance(item, A.Import):
            chunks.append(f"import {_str(item.path)}")
        elif isinstance(item, A.Def):
            head = f"def {item.name}({_params(item.params, f'def {item.name}(')})"
            if item.body.stmts:
                chunks.append(f"{head} {{\n{_body(item.body, INDENT)}\n}}")
            else:
                chunks.append(f"{head} =\n{INDENT}{_pipeline(item.body.result, INDENT)}")
        else:
            rules = []
            for r in item.rules:
                sel = "" if r.selector is None else f": {print_expr(r.selector)}"
                rules.append(f"{INDENT}{r.label}{sel} =>\n{_body(r.body, INDENT * 2)}")
            chunks.append(f"optimizer {item.name}({_params(item.params, f'optimizer {item.name}(')}) {{\n" + "\n".join(rules) + "\n}")
    return "\n\n".join(chunks) + "\n"


def canonical_hash(m: A.Module) -> str:
    """sha256 of the canonical text (comments and layout do not change it)."""
    return hashlib.sha256(print_module(m).encode()).hexdigest()[:16]
