"""Text -> AST: lark's LALR parser, then :class:`~.transform.AstBuilder` on its tree. Every failure
becomes a :class:`Diagnostic`, never a traceback: cheap guards first (size, NUL bytes, bracket
depth, token count), then one parse, then each later top-level item on its own, so that every
broken item is reported."""
from __future__ import annotations

import os
import re
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

import lark
from lark import Token

from . import ast as A
from .diagnostics import Diagnostic, Reporter, Span, SpecError
from .transform import AstBuilder, BuildError

MAX_SOURCE_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 200
MAX_TOKENS = 100_000

_TOKEN_NAMES = {
    "LPAR": "'('", "RPAR": "')'", "LBRACE": "'{'", "RBRACE": "'}'", "LSQB": "'['", "RSQB": "']'",
    "COMMA": "','", "COLON": "':'", "EQUAL": "'='", "NAME": "a name", "NUMBER": "a number",
    "STRING": "a string", "COMP_OP": "a comparison", "ADD_OP": "'+'", "MUL_OP": "'*', '/' or '@'",
    "ASSIGN": "'<-'", "QMARK": "'?'", "MINUS": "'-'", "STAR": "'*'", "TILDE": "'~'", "DOT": "'.'", "$END": "end of file",
}


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
            return AstBuilder(file, MAX_DEPTH).transform(_parser().parse(source))
        except lark.exceptions.VisitError as e:
            raise e.orig_exc from None
    except BuildError as e:
        rep.error(e.message, e.span, e.hint)
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
        elif (cont := _continued(source, tok)) is not None:
            line, col, ch, stmt, at = cont
            rep.error(f"no result after the `{stmt}` on line {at}: this line starts with '{ch}', which continues "
                      f"it ({_CONTINUES[ch]}; newlines do not end a statement)",
                      Span(file=file, line=line, col=col, end_line=line, end_col=col + 1), _CONTINUED_HINT)
        else:
            rep.error(f"unexpected {_describe(tok)}",
                      Span(file=file, line=tok.line, col=tok.column, end_line=tok.end_line or tok.line,
                           end_col=tok.end_column or tok.column + 1),
                      _expected_hint(e.expected))
    except RecursionError:
        rep.error("spec nested too deeply", Span(file=file))
    return None


_CONTINUES = {"(": "after a name, '(' makes a call", "[": "after a value, '[' indexes it",
              "-": "after a value, '-' subtracts"}
_CONTINUED_HINT = ("start the result differently (`u + grad |> apply(lr)` rather than `(u + grad) |> ...`, "
                   "`0.0 - u` rather than `-u`), or bind it with another `let`")
_STATEMENT = re.compile(r"^\s*(let\s|state\s|[A-Za-z_]\w*\s*<-)")
_RULE_HEAD = re.compile(r"=>|\{\s*$")


def _continued(source: str, tok: Token) -> tuple[int, int, str, str, int] | None:
    """Where a block's would-be result continues the statement above it, when a token that ends
    a body (``}``, the next rule's label) came where its result was expected: the line and column
    of the line's first character (``(``, ``[`` or ``-``), that character, the statement (``let``,
    ``state``, ``<-``) and its line; None when that is not what happened."""
    if tok.type not in ("RBRACE", "NAME") and str(tok) != "=>":
        return None
    lines = source.split("\n")
    texts = [(tok.line, lines[tok.line - 1][: tok.column - 1])] + \
        [(n, lines[n - 1]) for n in range(tok.line - 1, 0, -1)]
    found = None
    for n, text in texts:
        code = text.split("#", 1)[0]
        if not code.strip():
            continue
        stripped = code.lstrip()
        if (m := _STATEMENT.match(code)) is not None:
            return None if found is None else (*found, "<-" if "<-" in m.group(1) else m.group(1).strip(), n)
        if _RULE_HEAD.search(code):
            return None
        if stripped[0] in _CONTINUES:
            found = (n, len(code) - len(stripped) + 1, stripped[0])
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
    anonymous = {t.name: f"'{t.pattern.value}'" for t in _parser().terminals if t.name.startswith("__ANON")}
    names = sorted({_TOKEN_NAMES.get(t) or anonymous.get(t) or t.lower().strip('"') for t in expected})
    if len(names) > 8:
        return None
    return "expected " + ", ".join(names)


def parse_file(path: str) -> A.Module:
    """Parse a spec file; an unreadable file is a :class:`SpecError` too."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise SpecError([Diagnostic("error", f"cannot read spec: {e.strerror}", Span(file=str(path)))]) from None
    return parse(data, file=str(path))


__all__ = ["parse", "parse_file", "SpecError"]
