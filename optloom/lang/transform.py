"""Lark parse tree -> AST, without recursion (deep trees are fine), with the checks only this
step can make: reserved words, numbers out of range, nesting depth."""
from __future__ import annotations

import ast as _pyast
import math
import warnings
from typing import TypeVar

from lark import Token, Transformer_NonRecursive, v_args

from . import ast as A
from .diagnostics import Span

RESERVED = frozenset({"import", "def", "optimizer", "let", "state", "true", "false", "none", "inf", "and", "or",
                      "not"})
N = TypeVar("N", bound=A.Node)


class BuildError(Exception):
    """Text that parses but cannot become an AST; carries its diagnostic."""

    def __init__(self, message: str, span: Span, hint: str | None = None):
        super().__init__(message)
        self.message, self.span, self.hint = message, span, hint


def span_of(file: str, meta_or_tok) -> Span:
    """The source range of a lark tree node (its ``meta``) or token."""
    m = meta_or_tok
    if getattr(m, "empty", False):
        return Span(file=file)
    return Span(file=file, line=m.line, col=m.column, end_line=m.end_line, end_col=m.end_column)


@v_args(meta=True)
class AstBuilder(Transformer_NonRecursive):
    """Builds :mod:`.ast` nodes from lark's parse tree, bottom-up; refuses reserved words, numbers
    out of range and nesting deeper than ``max_depth`` by raising :class:`BuildError`."""

    def __init__(self, file: str, max_depth: int):
        super().__init__()
        self.file, self.max_depth = file, max_depth
        self.depth: dict[int, int] = {}  # id(node) -> nesting depth of the subtree it roots

    # -- helpers
    def s(self, meta) -> Span:
        return span_of(self.file, meta)

    def id(self, tok: Token) -> str:
        """A declared or referenced identifier; reserved words are refused (the lexer is contextual)."""
        if str(tok) in RESERVED:
            raise BuildError(f"'{tok}' is a reserved word and cannot be used as a name", span_of(self.file, tok))
        return str(tok)

    def _node(self, cls: type[N], meta, **kw) -> N:
        """A node spanning ``meta``; its depth is recorded (the children's are already known)."""
        node = cls(span=self.s(meta), **kw)
        below = [v for v in kw.values() if isinstance(v, A.Node)]
        below += [x for v in kw.values() if isinstance(v, list) for x in v if isinstance(x, A.Node)]
        depth = 1 + max((self.depth.get(id(v), 0) for v in below), default=0)
        if depth > self.max_depth:
            raise BuildError(f"expression nested too deeply (more than {self.max_depth} levels)", node.span,
                             "split it with `let` bindings or `def`s")
        self.depth[id(node)] = depth
        return node

    # -- items
    def start(self, meta, items):
        return A.Module(items=items, file=self.file)

    def import_decl(self, meta, c):
        return self._node(A.Import, meta, path=unquote(c[0]))

    def param_list(self, meta, c):
        return list(c)

    def param(self, meta, c):
        name, typ, optional, default = c
        typ = self.id(typ) + ("?" if optional else "") if typ else None
        return self._node(A.Param, meta, name=self.id(name), type=typ, default=default)

    def def_expr(self, meta, c):
        name, params, body = c
        block = self._node(A.Block, meta, stmts=[], result=body)
        return self._node(A.Def, meta, name=self.id(name), params=params or [], body=block)

    def def_block(self, meta, c):
        name, params, block = c
        return self._node(A.Def, meta, name=self.id(name), params=params or [], body=block)

    def optimizer_decl(self, meta, c):
        name, params, *rules = c
        return self._node(A.Optimizer, meta, name=self.id(name), params=params or [], rules=rules)

    def rule_sel(self, meta, c):
        label, sel, body = c
        return self._node(A.Rule, meta, label=self.id(label), selector=sel, body=body)

    def rule_all(self, meta, c):
        label, body = c
        return self._node(A.Rule, meta, label=self.id(label), selector=None, body=body)

    def sel_all(self, meta, c):
        return None

    def sel_expr(self, meta, c):
        return c[0]

    def body(self, meta, c):
        return self._node(A.Block, meta, stmts=list(c[:-1]), result=c[-1])

    block = stage_block = body

    def let_stmt(self, meta, c):
        return self._node(A.Let, meta, name=self.id(c[0]), value=c[1])

    def state_stmt(self, meta, c):
        name, dtype, init = c
        return self._node(A.StateDecl, meta, name=self.id(name), dtype=self.id(dtype) if dtype else None, init=init)

    def assign_stmt(self, meta, c):
        return self._node(A.Assign, meta, name=self.id(c[0]), value=c[2])

    # -- expressions
    def pipe(self, meta, c):
        return self._node(A.Pipe, meta, left=c[0], stage=c[1])

    def labeled_stage(self, meta, c):
        return self._node(A.Stage, meta, label=self.id(c[0]), callee=c[1])

    def plain_stage(self, meta, c):
        return self._node(A.Stage, meta, label=None, callee=c[0])

    def bare_name(self, meta, c):
        return self._node(A.Name, meta, id=self.id(c[0]))

    def or_op(self, meta, c):
        return self._node(A.BinOp, meta, op="or", left=c[0], right=c[1])

    def and_op(self, meta, c):
        return self._node(A.BinOp, meta, op="and", left=c[0], right=c[1])

    def not_op(self, meta, c):
        return self._node(A.UnaryOp, meta, op="not", operand=c[0])

    def compare(self, meta, c):
        return self._node(A.BinOp, meta, op=str(c[1]), left=c[0], right=c[2])

    def binop(self, meta, c):
        return self._node(A.BinOp, meta, op=str(c[1]), left=c[0], right=c[2])

    def coalesce(self, meta, c):
        return self._node(A.BinOp, meta, op="??", left=c[0], right=c[1])

    def match(self, meta, c):
        return self._node(A.Match, meta, subject=c[0], pattern=unquote(c[1]))

    def neg(self, meta, c):
        return self._node(A.UnaryOp, meta, op="-", operand=c[-1])

    def pow(self, meta, c):
        return self._node(A.BinOp, meta, op="**", left=c[0], right=c[1])

    def index(self, meta, c):
        return self._node(A.Index, meta, value=c[0], index=c[1])

    def attr(self, meta, c):
        return self._node(A.Attr, meta, value=c[0], name=self.id(c[1]))

    def number(self, meta, c):
        text = str(c[0])
        is_int = not any(ch in text for ch in ".eE")
        too_long = is_int and len(text.lstrip("0")) > 19
        if too_long or (is_int and int(text) >= 2 ** 63) or (not is_int and not math.isfinite(float(text))):
            shown = text if len(text) <= 24 else text[:20] + "..."
            raise BuildError(f"number {shown} is out of range", self.s(meta),
                             "integers must fit in 64 bits and floats must be finite (write `inf` for infinity)")
        value = int(text) if is_int else float(text)
        return self._node(A.Num, meta, value=value, is_int=is_int)

    def string(self, meta, c):
        return self._node(A.Str, meta, value=unquote(c[0]))

    def true(self, meta, c):
        return self._node(A.Bool, meta, value=True)

    def false(self, meta, c):
        return self._node(A.Bool, meta, value=False)

    def none(self, meta, c):
        return self._node(A.NoneLit, meta)

    def inf(self, meta, c):
        return self._node(A.Num, meta, value=math.inf, is_int=False)

    def name(self, meta, c):
        return self._node(A.Name, meta, id=self.id(c[0]))

    def empty_tuple(self, meta, c):
        return self._node(A.TupleLit, meta, items=[])

    def tuple(self, meta, c):
        return self._node(A.TupleLit, meta, items=[x for x in c if x is not None])

    def list(self, meta, c):
        return self._node(A.ListLit, meta, items=[x for x in c if x is not None])

    def call(self, meta, c):
        name, *args = c
        pos = [a for a in args if a is not None and not isinstance(a, A.KwArg)]
        kws = [a for a in args if isinstance(a, A.KwArg)]
        return self._node(A.Call, meta, func=self.id(name), args=pos, kwargs=kws, func_span=span_of(self.file, name))

    def pos_arg(self, meta, c):
        return c[0]

    def kw_arg(self, meta, c):
        return self._node(A.KwArg, meta, name=self.id(c[0]), value=c[1])


def unquote(tok: Token | str) -> str:
    """The text of a string literal token (escapes decoded)."""
    text = str(tok)
    try:
        with warnings.catch_warnings():  # "\\q" is an invalid escape: kept as written, no warning
            warnings.simplefilter("ignore")
            value = _pyast.literal_eval(text)  # a string literal only: the token regex admits nothing else
    except (ValueError, SyntaxError, MemoryError):
        value = text[1:-1]
    return value if isinstance(value, str) else text[1:-1]
