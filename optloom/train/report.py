"""The comparison table, the per-step CSV and ``results.json`` of a run folder."""
from __future__ import annotations

import csv
import json
import math
import os
import statistics
import sys
from pathlib import Path
from typing import Any, Iterable

from .runner import RunResult, Variant


def _spread(values: list[float]) -> tuple[float | None, float | None]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return None, None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def summarize(variants: list[Variant], runs: list[RunResult], target: float | None) -> list[dict[str, Any]]:
    """One row per variant: losses with their spread over seeds, time to target, cost."""
    rows = []
    for v in variants:
        mine = [r for r in runs if r.label == v.label]
        ok = [r for r in mine if r.status == "ok"]
        final_mean, final_std = _spread([r.final_val for r in ok])
        best_mean, best_std = _spread([r.best_val for r in mine])
        hits = [r.to_target(target) for r in ok]
        reached = [h for h in hits if h[0] is not None]
        ms = [r.ms_per_step for r in mine if r.ms_per_step is not None]
        state = [r.state_bytes for r in mine if r.state_bytes is not None]
        statuses = sorted({r.status for r in mine} - {"ok"})
        rows.append({
            "label": v.label, "runs": len(mine), "ok": len(ok),
            "final_val": final_mean, "final_val_std": final_std,
            "best_val": best_mean, "best_val_std": best_std,
            "target": target, "reached_target": len(reached),
            "steps_to_target": statistics.median(h[0] for h in reached) if reached else None,
            "seconds_to_target": statistics.median(h[1] for h in reached) if reached else None,
            "ms_per_step": statistics.median(ms) if ms else None,
            "state_mb": max(state) / 2**20 if state else None,
            "problems": [f"seed {r.seed}: {r.status}: {r.message.splitlines()[0] if r.message else ''}"
                         for r in mine if r.status != "ok"],
            "status": ",".join(statuses) or "ok",
        })
    return rows


def _cells(rows: list[dict[str, Any]], seeds: int) -> tuple[list[str], list[list[str]]]:
    """The table's header and body cells (shared by the text and the terminal table)."""
    target = rows[0]["target"] if rows else None
    head = ["spec", "final val", "best val", f"to target {target:g}" if target is not None else "to target",
            "ms/step", "state MB", "status"]
    body = []
    for r in rows:
        if r["steps_to_target"] is not None:
            tt = f"{r['steps_to_target']:.0f} st / {r['seconds_to_target']:.1f} s"
            if r["reached_target"] < r["ok"]:
                tt += f" ({r['reached_target']}/{r['ok']})"
        else:
            tt = "not reached" if target is not None and r["ok"] else "—"
        body.append([r["label"], _pm(r["final_val"], r["final_val_std"], seeds),
                     _pm(r["best_val"], r["best_val_std"], seeds), tt,
                     "—" if r["ms_per_step"] is None else f"{r['ms_per_step']:.2f}",
                     "—" if r["state_mb"] is None else f"{r['state_mb']:.3g}", r["status"]])
    return head, body


def show_table(rows: list[dict[str, Any]], seeds: int, stream: Any = None) -> None:
    """Print the comparison table: in colour on a terminal (rich; the best final loss in bold green,
    failed runs in red), as :func:`format_table`'s fixed-width text otherwise (logs, CI, pipes)."""
    stream = stream if stream is not None else sys.stdout
    try:
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text
    except ImportError:
        Console = None  # noqa: N806
    if Console is None or not getattr(stream, "isatty", lambda: False)():
        stream.write(format_table(rows, seeds) + "\n")
        return
    head, body = _cells(rows, seeds)
    finals = [r["final_val"] for r in rows if r["final_val"] is not None]
    best = min(finals) if finals else None
    table = Table(*head, header_style="bold", show_edge=False)
    for r, cells in zip(rows, body):
        style = "bold green" if best is not None and r["final_val"] == best else ""
        status = Text(cells[-1], style="" if r["status"] == "ok" else "red")
        table.add_row(*(Text(c) for c in cells[:-1]), status, style=style)
    console = Console(file=stream)
    console.print(table)
    for r in rows:
        for p in r["problems"]:
            console.print(Text.assemble((r["label"], "red"), " ", p), highlight=False)


def _pm(mean: float | None, std: float | None, seeds: int) -> str:
    if mean is None:
        return "—"
    return f"{mean:.4f} ± {std:.4f}" if seeds > 1 else f"{mean:.4f}"


def format_table(rows: list[dict[str, Any]], seeds: int) -> str:
    """A fixed-width text table (the one printed at the end of ``optloom train`` in logs)."""
    head, body = _cells(rows, seeds)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    out = [line(head), line(["-" * w for w in widths]), *(line(b) for b in body)]
    problems = [f"  {r['label']} {p}" for r in rows for p in r["problems"]]
    if problems:
        out += ["", "problems:", *problems]
    return "\n".join(out)


def _clean(x: Any) -> Any:
    """JSON-safe: tuples become lists, non-finite floats become null (``message`` says why)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write atomically (a temporary file, then rename): an interrupted write never leaves half a file."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_clean(data), indent=1, allow_nan=False) + "\n")
    os.replace(tmp, path)


def write_csv(path: Path, runs: Iterable[RunResult]) -> None:
    """Every logged step of every run: label, seed, step, train loss, validation loss, seconds."""
    runs = list(runs)
    # --probe: one column per rule and statistic ("hidden.update_rms"), after the fixed ones
    probe = sorted({k for r in runs for k in r.probe})
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label", "seed", "step", "train_loss", "val_loss", "train_seconds", "opt_step_ms", *probe])
        for r in runs:
            val = dict(zip(r.val_steps, r.val_loss))
            empty = [""] * len(probe)
            if 0 in val:
                w.writerow([r.label, r.seed, 0, "", repr(val[0]), 0.0, "", *empty])
            for i, (s, loss, t, ms) in enumerate(zip(r.steps, r.train_loss, r.train_time, r.opt_ms)):
                stats = [_stat(r.probe.get(k), i) for k in probe]
                w.writerow([r.label, r.seed, s, repr(loss), repr(val[s]) if s in val else "", f"{t:.6f}",
                            f"{ms:.4f}", *stats])
            extra = [s for s in r.val_steps if s > (r.steps[-1] if r.steps else 0)]
            for s in extra:  # a validation point past the last logged step (a diverged run)
                w.writerow([r.label, r.seed, s, "", repr(val[s]), "", "", *empty])


def _stat(values: list[float] | None, i: int) -> str:
    if not values or i >= len(values) or not math.isfinite(values[i]):
        return ""
    return repr(values[i])


def format_value(v: Any) -> str:
    """A hyperparameter value as ``--set`` reads it back."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (tuple, list)):
        return "(" + ", ".join(format_value(x) for x in v) + ")"
    return repr(v) if isinstance(v, float) else str(v)
