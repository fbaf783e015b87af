"""Comment-preserving formatting for ``optloom fmt``.

The AST has no comments, so :func:`print_module` drops them. ``fmt`` keeps the comments that
sit on their own lines *between* top-level items (the file's header block, the comment above a
``def`` or an ``optimizer``, trailing comments at the end of the file): each stays attached to
the item below it, and blank lines inside such a block are kept (collapsed to one). A comment
anywhere else — inside an optimizer or def, or after code on the same line — cannot be placed
by the printer; :func:`format_source` reports it instead of silently deleting it, unless
``strip_comments`` is set.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import ast as A
from .diagnostics import Diagnostic, Span
from .parser import parse
from .printer import print_module


@dataclass(frozen=True)
class Comment:
    line: int  # 1-based
    col: int  # 1-based column of '#'
    text: str  # from '#' to the end of the line, trailing whitespace removed
    own_line: bool  # nothing but whitespace before it on its line


def find_comments(source: str) -> list[Comment]:
    """Every ``#`` comment outside string literals (strings cannot span lines)."""
    out: list[Comment] = []
    for lineno, line in enumerate(source.split("\n"), start=1):
        in_str = False
        i = 0
        while i < len(line):
            ch = line[i]
            if in_str:
                if ch == "\\":
                    i += 1
                elif ch == '"':
                    in_str = False
            elif ch == '"':
                in_str = True
            elif ch == "#":
                out.append(Comment(lineno, i + 1, line[i:].rstrip(), not line[:i].strip()))
                break
            i += 1
    return out


def format_source(source: str, file: str = "<spec>", strip_comments: bool = False) -> tuple[str, list[Diagnostic]]:
    """Canonical text of ``source`` with its placeable comments kept.

    Returns ``(text, errors)``; ``errors`` lists comments the printer cannot place (empty when
    ``strip_comments``). Raises :class:`SpecError` when the source does not parse.
    """
    source = source.removeprefix("\ufeff")  # as the parser does
    module = parse(source, file)
    items = list(module.items)
    comments = find_comments(source)
    lines = source.split("\n")
    leading: list[list[Comment]] = [[] for _ in items]
    trailing: list[Comment] = []
    errors: list[Diagnostic] = []
    for c in comments:
        slot = _slot(c, items)
        if slot is None:
            if not strip_comments:
                span = Span(file=file, line=c.line, col=c.col, end_line=c.line, end_col=c.col + len(c.text))
                errors.append(Diagnostic(
                    "error", "fmt cannot keep this comment: only comments on their own lines between top-level "
                    "items (header, above a def/optimizer/import, end of file) are kept", span,
                    "move it above the optimizer or def, or run `optloom fmt --strip-comments`", source))
        elif slot == len(items):
            trailing.append(c)
        else:
            leading[slot].append(c)
    chunks = []
    for item, group in zip(items, leading):
        body = print_module(A.Module(items=[item])).rstrip("\n")
        if group:
            chunks.append(_render_group(group, lines) + ("\n\n" if _gap(lines, group[-1].line, item.span.line)
                                                         else "\n") + body)
        else:
            chunks.append(body)
    if trailing:
        chunks.append(_render_group(trailing, lines))
    return ("\n\n".join(chunks) + "\n") if chunks else "", errors


def _slot(c: Comment, items: list[A.Node]) -> int | None:
    """Index of the item this own-line comment precedes (len(items): trailing), None if inside one."""
    if not c.own_line:
        return None
    for k, item in enumerate(items):
        if c.line < item.span.line:
            prev_end = items[k - 1].span.end_line if k else 0
            return k if c.line > prev_end else None
        if c.line <= item.span.end_line:
            return None
    return len(items)


def _gap(lines: list[str], a: int, b: int) -> bool:
    """Is there a blank line strictly between lines ``a`` and ``b`` (1-based)?"""
    return any(not lines[i - 1].strip() for i in range(a + 1, b))


def _render_group(group: list[Comment], lines: list[str]) -> str:
    out = [group[0].text]
    for prev, cur in zip(group, group[1:]):
        if _gap(lines, prev.line, cur.line):
            out.append("")
        out.append(cur.text)
    return "\n".join(out)
