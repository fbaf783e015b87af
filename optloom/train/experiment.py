"""A comparison: variants x seeds on one task, written to a run folder as it goes.

Run folder: ``results.json`` (environment, task, variants with spec texts and hyperparameters,
every run's curve, the summary and a command that repeats the comparison), ``log.csv``
(every logged step), ``specs/<label>.opt`` (each variant's spec text) and the PNG plots.
``results.json`` is rewritten after every validation point, so an interrupted or failed
comparison leaves everything done so far readable.
"""
from __future__ import annotations

import ast
import re
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..lang.loader import resolve_spec, shipped_names
from .device import environment
from .plots import plot_probe, plot_runs
from .report import format_table, format_value, show_table, summarize, write_csv, write_json
from .runner import RunInterrupted, RunResult, Variant, train_one
from .tasks import Task
from .tblog import TensorBoardLog


class UsageError(ValueError):
    """A command-line mistake (bad ``--set``, unknown hyperparameter): one clear line, exit 2."""


def parse_value(text: str) -> Any:
    """A hyperparameter value as data: ``true``/``false``, a number, a tuple ``(0.9, 0.95)``, else a string."""
    t = text.strip()
    if t in ("true", "false"):
        return t == "true"
    try:
        v = ast.literal_eval(t)  # literals only: numbers, strings, tuples — never code
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return t
    if isinstance(v, list):
        v = tuple(v)
    if isinstance(v, tuple) and not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
        raise UsageError(f"'{text}': a tuple value must hold numbers")
    if not isinstance(v, (bool, int, float, str, tuple)):
        raise UsageError(f"'{text}' is not a hyperparameter value (a number, true/false, a string or a tuple)")
    return v


def split_assignment(item: str) -> tuple[str, str]:
    if "=" not in item:
        raise UsageError(f"--set '{item}': expected KEY=VALUE (e.g. lr=0.01, or muon.lr=0.01 for one spec)")
    key, value = item.split("=", 1)
    return key.strip(), value.strip()


def split_values(text: str) -> list[str]:
    """``0.01,0.02`` -> two values; commas inside parentheses belong to a tuple."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [v.strip() for v in out if v.strip()]


def spec_label(spec: str, optimizer_name: str) -> str:
    """A shipped name stays, a file gives its stem, spec text gives its optimizer's name."""
    if spec in shipped_names():
        return spec
    if "\n" not in spec and "{" not in spec:
        return Path(spec).stem
    return optimizer_name


def make_variant(spec: str, label: str | None = None, overrides: dict[str, Any] | None = None,
                 text: str | None = None) -> Variant:
    """Check a spec (raises ``SpecError``) and its overrides (raises ``UsageError``) -> :class:`Variant`."""
    import optloom

    program = optloom.compile(spec)
    source = text if text is not None else resolve_spec(spec)[0]
    label = label or spec_label(spec, program.name)
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(program.hyperparams))
    if unknown:
        raise UsageError(f"{label}: no hyperparameter {', '.join(map(repr, unknown))} "
                         f"(it has: {', '.join(program.hyperparams)})")
    try:
        program.validate_hyperparams(overrides, where=f"{label}: ")
    except (TypeError, ValueError) as e:
        raise UsageError(str(e)) from None
    return Variant(label=label, spec=spec, text=source, optimizer=program.name, overrides=overrides,
                   hyperparams={**program.defaults(), **overrides}, spec_hash=program.hash)


def apply_sets(variants: list[Variant], sets: list[str]) -> list[Variant]:
    """``--set key=v`` applies to every variant that declares ``key``; ``--set label.key=v`` to one."""
    by_label = {v.label: v for v in variants}
    for item in sets:
        key, raw = split_assignment(item)
        value = parse_value(raw)
        scope, _, name = key.rpartition(".")
        if scope:
            if scope not in by_label:
                raise UsageError(f"--set {item}: no spec labeled '{scope}' (specs: {', '.join(by_label)})")
            targets = [by_label[scope]]
        else:
            targets = [v for v in variants if name in v.hyperparams]
            if not targets:
                raise UsageError(f"--set {item}: no spec has a hyperparameter '{name}'")
        for v in targets:
            new = make_variant(v.spec, v.label, {**v.overrides, name: value}, v.text)
            variants[variants.index(v)] = by_label[v.label] = new
    return variants


def unique_labels(labels: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for lab in labels:
        seen[lab] = seen.get(lab, 0) + 1
        out.append(lab if seen[lab] == 1 else f"{lab}#{seen[lab]}")
    return out


def new_run_dir(task: str, out: str | None) -> Path:
    if out:
        path = Path(out)
    else:
        path = Path("runs") / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{task}"
        n = 1
        while path.exists():
            n += 1
            path = path.with_name(f"{path.name.split('~')[0]}~{n}")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _file_label(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", label).strip("._") or "spec"


@dataclass
class Experiment:
    """Variants x seeds on a task; ``run()`` trains, writes the folder, returns an exit code."""

    task: Task
    variants: list[Variant]
    seeds: list[int]
    steps: int
    out_dir: Path
    backend: str = "eager"
    target: float | None = None
    command: list[str] = field(default_factory=lambda: list(sys.argv))
    progress: bool = True
    probe: bool = False  # per-rule statistics every step (log.csv, probe.png, results.json)
    log: list[str] = field(default_factory=list)  # scalar loggers: "tensorboard"
    runs: list[RunResult] = field(default_factory=list)
    status: str = "running"
    message: str = ""
    plots: list[Path] = field(default_factory=list)
    started: str = field(default_factory=lambda: datetime.now().isoformat(timespec="seconds"))

    def _write_specs(self) -> dict[str, str]:
        folder = self.out_dir / "specs"
        folder.mkdir(exist_ok=True)
        files = {}
        for v in self.variants:
            path = folder / f"{_file_label(v.label)}.opt"
            path.write_text(v.text if v.text.endswith("\n") else v.text + "\n")
            files[v.label] = str(path.relative_to(self.out_dir))
        return files

    def repeat_command(self, files: dict[str, str]) -> str:
        """An ``optloom train`` line that reruns every variant from the saved spec files."""
        parts = ["optloom", "train", *(str(self.out_dir / files[v.label]) for v in self.variants),
                 "--task", self.task.name, "--steps", str(self.steps), "--seeds", str(len(self.seeds)),
                 "--backend", self.backend]
        if self.target is not None:
            parts += ["--target", format_value(self.target)]
        if self.probe:
            parts.append("--probe")
        for v in self.variants:
            stem = Path(files[v.label]).stem
            parts += [x for k, val in v.overrides.items() for x in ("--set", f"{stem}.{k}={format_value(val)}")]
        return shlex.join(parts)

    def results(self, files: dict[str, str]) -> dict[str, Any]:
        return {
            "optloom_results": 1, "status": self.status, "message": self.message,
            "started": self.started, "command": shlex.join(self.command), "cwd": str(Path.cwd()),
            "repeat": self.repeat_command(files), "environment": environment(self.task.device),
            "task": {**self.task.info(), "steps": self.steps, "eval_every": self.task.eval_every},
            "target": self.target, "seeds": self.seeds, "backend": self.backend,
            "variants": [{"label": v.label, "optimizer": v.optimizer, "spec": v.spec if v.spec != v.text else None,
                          "spec_file": files[v.label], "spec_hash": v.spec_hash, "spec_text": v.text,
                          "overrides": v.overrides, "hyperparams": v.hyperparams} for v in self.variants],
            "summary": summarize(self.variants, self.runs, self.target),
            "runs": [r.to_dict(self.target) for r in self.runs],
            "plots": [p.name for p in self.plots],
        }

    def save(self, files: dict[str, str], current: RunResult | None = None) -> None:
        runs = self.runs + ([current] if current is not None and current not in self.runs else [])
        saved, self.runs = self.runs, runs
        try:
            write_json(self.out_dir / "results.json", self.results(files))
            write_csv(self.out_dir / "log.csv", runs)
        finally:
            self.runs = saved

    def run(self) -> int:
        """0 when every run finished, 1 when some run failed or diverged, 130 on Ctrl-C."""
        files = self._write_specs()
        self.save(files)
        code = 0
        logger = TensorBoardLog(self.out_dir / "tensorboard") if "tensorboard" in self.log else None
        try:
            for v in self.variants:
                for seed in self.seeds:
                    res = train_one(self.task, v, seed, self.steps, self.backend, self.progress,
                                    on_log=lambda r: self.save(files, r), probe=self.probe, log=logger)
                    self.runs.append(res)
                    self.save(files)
                    if res.status != "ok":
                        code = 1
        except RunInterrupted as e:
            self.runs.append(e.result)
            self.status, self.message, code = "interrupted", e.result.message + "; later runs skipped", 130
        else:
            failed = [f"{r.label} seed {r.seed}: {r.status}" for r in self.runs if r.status != "ok"]
            self.status = "complete" if not failed else "complete with failures"
            self.message = "; ".join(failed)
        try:
            self.plots = plot_runs(self.runs, [v.label for v in self.variants], self.out_dir,
                                   f"{self.task.name}: validation loss ({len(self.seeds)} seed"
                                   f"{'s' if len(self.seeds) > 1 else ''})", self.target)
            if any(r.probe for r in self.runs):
                self.plots += plot_probe(self.runs, [v.label for v in self.variants], self.out_dir,
                                         f"{self.task.name}: per-rule statistics")
        except KeyboardInterrupt:
            self.message += "; plots skipped (interrupted)"
        self.save(files)
        return code

    def table(self) -> str:
        return format_table(summarize(self.variants, self.runs, self.target), len(self.seeds))

    def show_table(self) -> None:
        """Print the table: in colour on a terminal, plain text in logs."""
        show_table(summarize(self.variants, self.runs, self.target), len(self.seeds))

    def probe_cost(self) -> str | None:
        """The probe's measured cost, one line (None without --probe)."""
        ms = [m for r in self.runs for m in (r.probe_ms[1:] or r.probe_ms)]
        frac = [f for r in self.runs if (f := r.probe_overhead) is not None]
        if not ms:
            return None
        return (f"probe: {statistics.median(ms):.2f} ms/step (median), {100 * statistics.median(frac):.0f}% of the "
                "optimizer step" if frac else f"probe: {statistics.median(ms):.2f} ms/step (median)")


def elapsed(start: float) -> str:
    s = time.perf_counter() - start
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"
