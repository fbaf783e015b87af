"""Text -> AST. The lark LALR parser applies the transformer while it parses (no recursion
over deep trees), and every failure becomes a :class:`Diagnostic`, never a traceback."""
from __future__ import annotations

import ast as _pyast
import math
import os
import re
import warnings
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

import lark
from lark import Token, Transformer_NonRecursive, v_args

from . import ast as A
from .diagnostics import Reporter, Span, SpecError

MAX_SOURCE_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 200
MAX_TOKENS = 100_000

_TOKEN_NAMES = {
    "LPAR": "'('", "RPAR": "')'", "LBRACE": "'{'", "RBRACE": "'}'", "LSQB": "'['", "RSQB": "']'",
    "COMMA": "','", "COLON": "':'", "EQUAL": "'='", "NAME": "a name", "NUMBER": "a number",
    "STRING": "a string", "COMP_OP": "a comparison", "ADD_OP": "'+'", "MUL_OP": "'*', '/' or '@'",
    "ASSIGN": "'<-'", "MINUS": "'-'", "STAR": "'*'", "TILDE": "'~'", "DOT": "'.'", "$END": "end of file",
}


def _span(file: str, meta_or_tok) -> Span:
    m = meta_or_tok
    if getattr(m, "empty", False):
        return Span(file=file)
    return Span(file=file, line=m.line, col=m.column, end_line=m.end_line, end_col=m.end_column)


class _DepthError(Exception):
    def __init__(self, span: Span):
        self.span = span


RESERVED = frozenset({"import", "def", "optimizer", "let", "state", "true", "false", "and", "or", "not"})


class _ReservedError(Exception):
    def __init__(self, span: Span, word: str):
        self.span, self.word = span, word


class _NumberError(Exception):
    def __init__(self, span: Span, text: str):
        self.span, self.text = span, text


@v_args(meta=True)
class _Build(Transformer_NonRecursive):
    def __init__(self, file: str):
        super().__init__()
        self.file = file

    # -- helpers
    def s(self, meta) -> Span:
        return _span(self.file, meta)

    def id(self, tok: Token) -> str:
        """A declared or referenced identifier; reserved words are refused (the lexer is contextual)."""
        if str(tok) in RESERVED:
            raise _ReservedError(_span(self.file, tok), str(tok))
        return str(tok)

    def _node(self, cls, meta, **kw):
        node = cls(span=self.s(meta), **kw)
        depth = 1 + max((getattr(v, "_depth", 0) for v in kw.values() if isinstance(v, A.Node)), default=0)
        for v in kw.values():
            if isinstance(v, list):
                depth = max(depth, 1 + max((getattr(x, "_depth", 0) for x in v), default=0))
        if depth > MAX_DEPTH:
            raise _DepthError(node.span)
        object.__setattr__(node, "_depth", depth)
        return node

    # -- items
    def start(self, meta, items):
        return A.Module(items=items, file=self.file)

    def import_decl(self, meta, c):
        return self._node(A.Import, meta, path=_unquote(c[0]))

    def param_list(self, meta, c):
        return list(c)

    def param(self, meta, c):
        name, typ, default = c
        return self._node(A.Param, meta, name=self.id(name), type=self.id(typ) if typ else None, default=default)

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

    def match(self, meta, c):
        return self._node(A.Match, meta, subject=c[0], pattern=_unquote(c[1]))

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
        if is_int and len(text.lstrip("0")) > 19 or not is_int and not math.isfinite(float(text)):
            raise _NumberError(self.s(meta), text)
        value = int(text) if is_int else float(text)
        if is_int and value >= 2 ** 63:
            raise _NumberError(self.s(meta), text)
        return self._node(A.Num, meta, value=value, is_int=is_int)

    def string(self, meta, c):
        return self._node(A.Str, meta, value=_unquote(c[0]))

    def true(self, meta, c):
        return self._node(A.Bool, meta, value=True)

    def false(self, meta, c):
        return self._node(A.Bool, meta, value=False)

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
        node = self._node(A.Call, meta, func=self.id(name), args=pos, kwargs=kws)
        object.__setattr__(node, "func_span", _span(self.file, name))
        return node

    def pos_arg(self, meta, c):
        return c[0]

    def kw_arg(self, meta, c):
        return self._node(A.KwArg, meta, name=self.id(c[0]), value=c[1])


def _unquote(tok: Token | str) -> str:
    text = str(tok)
    try:
        with warnings.catch_warnings():  # "\\q" is an invalid escape: kept as written, no warning
            warnings.simplefilter("ignore")
            value = _pyast.literal_eval(text)  # a string literal only: the token regex admits nothing else
    except (ValueError, SyntaxError, MemoryError):
        value = text[1:-1]
    return value if isinstance(value, str) else text[1:-1]


@lru_cache(maxsize=None)
def _grammar() -> str:
    return files("optloom.lang").joinpath("grammar.lark").read_text()


@lru_cache(maxsize=None)
def _parser() -> lark.Lark:
    return lark.Lark(_grammar(), parser="lalr", propagate_positions=True, maybe_placeholders=True,
                     cache=_cache_file() or False)


def _cache_file() -> str | None:
    """LALR tables cached in the user's own cache folder (lark re-checks the grammar hash on load).
    Not the shared temp folder: lark unpickles its cache, so only a private folder is safe."""
    try:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "optloom"
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        if root.stat().st_uid != os.getuid():
            return None
        return str(root / f"grammar-lark{lark.__version__}.cache")
    except (OSError, RuntimeError, KeyError, AttributeError):
        return None


def parse(source: str | bytes, file: str = "<spec>") -> A.Module:
    """Parse spec text into a :class:`Module`; raise :class:`SpecError` with diagnostics."""
    rep = Reporter(source if isinstance(source, str) else None)
    if isinstance(source, bytes):
        try:
            source = source.decode("utf-8")
        except UnicodeDecodeError as e:
            rep.error(f"spec is not UTF-8 text (byte {e.start})", Span(file=file))
            rep.raise_if_failed()
        rep.source = source  # type: ignore[assignment]
    assert isinstance(source, str)
    if source.startswith("\ufeff"):  # a UTF-8 byte-order mark (some editors write one) is not text
        source = source[1:]
        rep.source = source
    if len(source) > MAX_SOURCE_BYTES:
        rep.error(f"spec is too large ({len(source)} characters; the limit is {MAX_SOURCE_BYTES})", Span(file=file))
        rep.raise_if_failed()
    if "\x00" in source:
        line = source[: source.index("\x00")].count("\n") + 1
        rep.error("spec contains a NUL byte (binary data?)", Span(file=file, line=line, col=1, end_line=line, end_col=2))
        rep.raise_if_failed()
    _prescan(source, file, rep)
    rep.raise_if_failed()
    module = _parse_once(source, file, rep)
    if module is not None:
        return module
    _later_errors(source, file, rep)
    rep.raise_if_failed()
    raise AssertionError("unreachable")


_STRINGS_COMMENTS = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*')
_BRACKETS = re.compile(r"[()\[\]{}]")
_TOKENS = re.compile(r"\w+|\S")


def _prescan(source: str, file: str, rep: Reporter) -> None:
    """Cheap guards before the LALR parser: bracket nesting and token count (parse time is bounded)."""
    code = _STRINGS_COMMENTS.sub(lambda m: " " * len(m.group()), source)
    depth = 0
    for m in _BRACKETS.finditer(code):
        depth += 1 if m.group() in "([{" else -1
        if depth > MAX_DEPTH:
            pos = m.start()
            line, col = code.count("\n", 0, pos) + 1, pos - code.rfind("\n", 0, pos)
            rep.error(f"brackets nested too deeply (more than {MAX_DEPTH} levels)",
                      Span(file=file, line=line, col=col, end_line=line, end_col=col + 1),
                      "split it with `let` bindings or `def`s")
            return
    n_tokens = _TOKENS.subn("", code)[1]
    if n_tokens > MAX_TOKENS:
        rep.error(f"spec is too long ({n_tokens} tokens; the limit is {MAX_TOKENS})", Span(file=file))


def _parse_once(source: str, file: str, rep: Reporter) -> A.Module | None:
    """One LALR parse; on failure record the first error and return None."""
    try:
        try:
            return _Build(file).transform(_parser().parse(source))
        except lark.exceptions.VisitError as e:
            raise e.orig_exc from None
    except _DepthError as e:
        rep.error(f"expression nested too deeply (more than {MAX_DEPTH} levels)", e.span,
                  "split it with `let` bindings or `def`s")
    except _ReservedError as e:
        rep.error(f"'{e.word}' is a reserved word and cannot be used as a name", e.span)
    except _NumberError as e:
        shown = e.text if len(e.text) <= 24 else e.text[:20] + "..."
        rep.error(f"number {shown} is out of range", e.span,
                  "integers must fit in 64 bits and floats must be finite")
    except lark.exceptions.UnexpectedCharacters as e:
        ch = source[e.pos_in_stream] if e.pos_in_stream < len(source) else ""
        rep.error(f"unexpected character {ch!r}", Span(file=file, line=e.line, col=e.column,
                                                       end_line=e.line, end_col=e.column + 1),
                  _expected_hint(e.allowed))
    except lark.exceptions.UnexpectedEOF as e:
        lines = source.split("\n")
        line, col = len(lines), len(lines[-1]) + 1
        rep.error("unexpected end of file", Span(file=file, line=line, col=col, end_line=line, end_col=col + 1),
                  _expected_hint(e.expected))
    except lark.exceptions.UnexpectedToken as e:
        tok = e.token
        if tok.type == "$END":
            lines = source.split("\n")
            line, col = len(lines), len(lines[-1]) + 1
            rep.error("unexpected end of file", Span(file=file, line=line, col=col, end_line=line, end_col=col + 1),
                      _expected_hint(e.expected))
        else:
            rep.error(f"unexpected {_describe(tok)}",
                      Span(file=file, line=tok.line, col=tok.column, end_line=tok.end_line or tok.line,
                           end_col=tok.end_column or tok.column + 1),
                      _expected_hint(e.expected))
    except RecursionError:
        rep.error("spec nested too deeply", Span(file=file))
    return None


_ITEM_START = re.compile(r"^(optimizer|def|import)\b", re.M)
MAX_SYNTAX_ERRORS = 20


def _later_errors(source: str, file: str, rep: Reporter) -> None:
    """After a syntax error, parse each later top-level item (a line starting with ``optimizer``,
    ``def`` or ``import``) on its own, so that every broken item is reported, not just the first."""
    if not rep.diagnostics:
        return
    first_line = rep.diagnostics[0].span.line
    starts = [source.count("\n", 0, m.start()) + 1 for m in _ITEM_START.finditer(source)]
    lines = source.split("\n")
    starts = [n for n in starts if n > first_line]
    for k, start in enumerate(starts):
        if len(rep.diagnostics) >= MAX_SYNTAX_ERRORS:
            return
        stop = starts[k + 1] if k + 1 < len(starts) else len(lines) + 1
        chunk = "\n" * (start - 1) + "\n".join(lines[start - 1: stop - 1])
        sub = Reporter(source)
        if _parse_once(chunk, file, sub) is not None or not sub.diagnostics:
            continue
        d = sub.diagnostics[0]
        if d.message == "unexpected end of file" and stop <= len(lines):
            word = _ITEM_START.match(lines[stop - 1]).group(1)  # type: ignore[union-attr]
            rep.error(f"unexpected '{word}'", Span(file=file, line=stop, col=1, end_line=stop, end_col=1 + len(word)),
                      d.hint)
        else:
            rep.diagnostics.append(d)


def _describe(tok: Token) -> str:
    text = str(tok)
    if len(text) > 40:
        text = text[:37] + "..."
    kind = {"NAME": "name", "NUMBER": "number", "STRING": "string"}.get(tok.type)
    return f"{kind} {text!r}" if kind else repr(text)


def _expected_hint(expected) -> str | None:
    if not expected:
        return None
    names = sorted({_TOKEN_NAMES.get(t, t.lower().strip('"')) for t in expected})
    if len(names) > 8:
        return None
    return "expected " + ", ".join(names)


def parse_file(path: str) -> A.Module:
    from pathlib import Path

    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise SpecError([__import__("optloom.lang.diagnostics", fromlist=["Diagnostic"]).Diagnostic(
            "error", f"cannot read spec: {e.strerror}", Span(file=str(path)))]) from None
    return parse(data, file=str(path))


__all__ = ["parse", "parse_file", "SpecError"]
