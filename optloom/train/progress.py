"""Progress of a training run on stderr: a rich progress bar on a terminal (bar, steps, rate, elapsed
time, ETA, the latest losses, in colour), a few plain lines otherwise (logs, CI, a pipe), and plain
lines on a terminal too when rich is not installed (``pip install optloom[integrations]``)."""
from __future__ import annotations

import sys
import time
from typing import Any, TextIO


def _rich() -> Any:
    try:
        import rich.progress as rp
    except ImportError:
        return None
    return rp


def _fields(fields: dict[str, float | str | None]) -> str:
    return "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items() if v is not None)


def _seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


class Progress:
    """``Progress(title, total)``; ``update(step, **fields)``; ``close(status)``."""

    def __init__(self, title: str, total: int, stream: TextIO | None = None, width: int = 24) -> None:
        self.title, self.total, self.width = title, max(total, 1), width
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self._last_half = -1
        self._step = 0
        self._fields: dict[str, float | str | None] = {}
        self._bar = self._rich_bar() if self.tty else None

    def _rich_bar(self) -> Any:
        rp = _rich()
        if rp is None:
            return None
        from rich.console import Console

        bar = rp.Progress(rp.TextColumn("[bold cyan]{task.description}"), rp.BarColumn(bar_width=self.width),
                          rp.MofNCompleteColumn(), rp.TextColumn("[magenta]{task.fields[rate]}"),
                          rp.TimeElapsedColumn(), rp.TextColumn("eta"), rp.TimeRemainingColumn(),
                          rp.TextColumn("[green]{task.fields[info]}"),
                          console=Console(file=self.stream), transient=False, refresh_per_second=8)
        bar.start()
        self._task = bar.add_task(self.title, total=self.total, info="", rate="")
        return bar

    def rate(self) -> float:
        """Steps per second so far."""
        elapsed = time.perf_counter() - self.start
        return self._step / elapsed if elapsed > 0 else 0.0

    def _plain(self, step: int, status: str = "") -> str:
        elapsed = time.perf_counter() - self.start
        rate = self.rate()
        eta = (self.total - step) / rate if rate > 0 and step < self.total else 0.0
        extra = _fields(self._fields)
        tail = f"  {rate:.1f} it/s  {_seconds(elapsed)}" + (f", eta {_seconds(eta)}" if step < self.total else "")
        return f"{self.title}: step {step}/{self.total} ({100 * step // self.total}%)" + \
            (f"  {extra}" if extra else "") + tail + (f"  {status}" if status else "")

    def update(self, step: int, **fields: float | str | None) -> None:
        self._step, self._fields = step, fields
        if self._bar is not None:
            self._bar.update(self._task, completed=min(step, self.total), info=_fields(fields),
                             rate=f"{self.rate():.1f} it/s")
            return
        half = 2 * step // self.total  # plain lines at 0 %, 50 % and 100 %
        if half != self._last_half:
            self._last_half = half
            self.stream.write(self._plain(step) + "\n")
            self.stream.flush()

    def close(self, status: str = "") -> None:
        if self._bar is not None:
            from rich.markup import escape

            info = _fields(self._fields) + (f"  [bold red]{escape(status)}" if status else "")
            self._bar.update(self._task, info=info)
            self._bar.stop()
            return
        if status:
            self.stream.write(self._plain(self._step, status) + "\n")
            self.stream.flush()
