"""Compiler-style diagnostics: ``path:line:col: error: message``, the source line, a caret.

Every error a spec can cause is a :class:`Diagnostic`; a failed check raises
:class:`SpecError`, which carries all of them (several errors in one file are all reported).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict

Severity = Literal["error", "warning"]


class Span(BaseModel):
    """A source range: 1-based line/column of the first character, end exclusive."""

    model_config = ConfigDict(frozen=True)
    file: str = "<spec>"
    line: int = 1
    col: int = 1
    end_line: int = 1
    end_col: int = 2

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


NO_SPAN = Span(file="<builtin>")


@dataclass
class Diagnostic:
    severity: Severity
    message: str
    span: Span
    hint: str | None = None
    source: str | None = field(default=None, repr=False)

    def render(self) -> str:
        """Render like a compiler: location, message, the source line, a caret, a hint."""
        out = [f"{self.span}: {self.severity}: {self.message}"]
        line_text = _source_line(self.source, self.span.line)
        if line_text is not None:
            shown = line_text.expandtabs(1)
            if len(shown) > 200:  # a 1 MB line is shown as a window around the caret
                lo = max(0, self.span.col - 80)
                shown = shown[lo : lo + 160]
                col = self.span.col - lo
            else:
                col = self.span.col
            width = self.span.end_col - self.span.col if self.span.end_line == self.span.line else 1
            width = max(1, min(width, max(1, len(shown) - col + 1)))
            out.append("    " + shown)
            out.append("    " + " " * (col - 1) + "^" * width)
        if self.hint:
            out.append(f"hint: {self.hint}")
        return "\n".join(out)


def _source_line(source: str | None, line: int) -> str | None:
    if source is None:
        return None
    lines = source.split("\n")
    if 1 <= line <= len(lines):
        return lines[line - 1].rstrip("\r")
    return None


class SpecError(ValueError):
    """A spec failed to parse or check. ``.diagnostics`` holds every problem found."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = diagnostics
        super().__init__(self.render())

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    def render(self) -> str:
        errs = [d for d in self.diagnostics if d.severity == "error"]
        body = "\n".join(d.render() for d in self.diagnostics)
        return f"{body}\n{len(errs)} error(s)"


class Reporter:
    """Collects diagnostics for one source text."""

    def __init__(self, source: str | None = None):
        self.source = source
        self.diagnostics: list[Diagnostic] = []

    def error(self, message: str, span: Span, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic("error", message, span, hint, self.source))

    def warning(self, message: str, span: Span, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic("warning", message, span, hint, self.source))

    @property
    def failed(self) -> bool:
        return any(d.severity == "error" for d in self.diagnostics)

    def raise_if_failed(self) -> None:
        if self.failed:
            raise SpecError(self.diagnostics)
