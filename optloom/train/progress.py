"""A one-line progress bar on stderr (no dependency): redrawn in place on a terminal, a few
plain lines otherwise (logs, CI)."""
from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``Progress(title, total)``; ``update(step, **fields)``; ``close(status)``."""

    def __init__(self, title: str, total: int, stream: TextIO | None = None, width: int = 24) -> None:
        self.title, self.total, self.width = title, max(total, 1), width
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._last_decile = -1
        self._line = ""

    def _render(self, step: int, fields: dict[str, float | str | None]) -> str:
        done = int(self.width * min(step, self.total) / self.total)
        bar = "#" * done + "-" * (self.width - done)
        extra = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                          for k, v in fields.items() if v is not None)
        return f"{self.title} [{bar}] {step}/{self.total}  {extra}  {time.perf_counter() - self.start:.1f}s"

    def update(self, step: int, **fields: float | str | None) -> None:
        now = time.perf_counter()
        if self.tty:
            if now - self._last_draw < 0.1 and step < self.total:
                return
            self._last_draw = now
            line = self._render(step, fields)
            pad = " " * max(0, len(self._line) - len(line))
            self.stream.write("\r" + line + pad)
            self._line = line
        else:
            decile = 10 * step // self.total
            if decile == self._last_decile or decile % 5:
                return
            self._last_decile = decile
            self.stream.write(self._render(step, fields) + "\n")
        self.stream.flush()

    def close(self, status: str = "") -> None:
        msg = f"  {status}" if status else ""
        if self.tty:
            self.stream.write("\r" + self._line + msg + "\n")
        elif status:
            self.stream.write(f"{self.title}{msg}\n")
        self.stream.flush()
