"""One training run: a task, a spec with its hyperparameters, a seed -> a logged curve."""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch

from ..lang.diagnostics import SpecError
from .device import synchronize
from .progress import Progress
from .tasks import Task


@dataclass
class Variant:
    """What one table row trains: a spec (name, path or text) under a label, with overrides."""

    label: str
    spec: str                      # what ``optloom.optimizer`` receives
    text: str                      # the spec's source text, recorded for repeats
    optimizer: str                 # the optimizer's name in the spec
    overrides: dict[str, Any] = field(default_factory=dict)
    hyperparams: dict[str, Any] = field(default_factory=dict)  # defaults with overrides applied
    spec_hash: str = ""


@dataclass
class RunResult:
    """The outcome of one (variant, seed) run; ``status`` is ok | diverged | error | interrupted."""

    label: str
    seed: int
    status: str = "ok"
    message: str = ""
    steps_done: int = 0
    steps: list[int] = field(default_factory=list)        # every step's training loss ...
    train_loss: list[float] = field(default_factory=list)
    train_time: list[float] = field(default_factory=list)  # ... and cumulative training seconds
    val_steps: list[int] = field(default_factory=list)     # validation points
    val_loss: list[float] = field(default_factory=list)
    val_time: list[float] = field(default_factory=list)
    opt_ms: list[float] = field(default_factory=list)      # optimizer.step() milliseconds per step
    probe: dict[str, list[float]] = field(default_factory=dict)  # --probe: "RULE.STAT" -> value per step
    probe_ms: list[float] = field(default_factory=list)    # --probe: its own cost per step
    state_bytes: int | None = None
    wall_seconds: float = 0.0

    @property
    def final_val(self) -> float | None:
        return self.val_loss[-1] if self.val_loss else None

    @property
    def best_val(self) -> float | None:
        finite = [v for v in self.val_loss if math.isfinite(v)]
        return min(finite) if finite else None

    def to_target(self, target: float | None) -> tuple[int | None, float | None]:
        """(step, training seconds) of the first validation loss at or below ``target``."""
        if target is None:
            return None, None
        for s, v, t in zip(self.val_steps, self.val_loss, self.val_time):
            if v <= target:
                return s, t
        return None, None

    @property
    def ms_per_step(self) -> float | None:
        """Median optimizer.step() time, the first step (setup, compilation) excluded."""
        times = self.opt_ms[1:] or self.opt_ms
        return statistics.median(times) if times else None

    @property
    def probe_overhead(self) -> float | None:
        """The probe's median cost as a fraction of the median optimizer step."""
        if not self.probe_ms or not self.ms_per_step:
            return None
        return statistics.median(self.probe_ms[1:] or self.probe_ms) / self.ms_per_step

    def to_dict(self, target: float | None = None) -> dict[str, Any]:
        d = asdict(self)
        if not self.probe_ms:  # without --probe, results.json is as it always was
            d.pop("probe")
            d.pop("probe_ms")
        step, seconds = self.to_target(target)
        d.update(final_val=self.final_val, best_val=self.best_val, ms_per_step=self.ms_per_step,
                 first_step_ms=self.opt_ms[0] if self.opt_ms else None,
                 steps_to_target=step, seconds_to_target=seconds)
        return d


def measure_state_bytes(opt: torch.optim.Optimizer) -> int:
    """Bytes of every tensor the optimizer's ``state_dict()`` holds (its persistent state)."""
    total, seen = 0, set()

    def visit(x: Any) -> None:
        nonlocal total
        if isinstance(x, torch.Tensor):
            key = (x.untyped_storage().data_ptr(), x.data_ptr(), x.nbytes)
            if key not in seen:
                seen.add(key)
                total += x.nbytes
        elif isinstance(x, dict):
            for v in x.values():
                visit(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                visit(v)

    visit(opt.state_dict()["state"])
    return total


def _describe(e: BaseException) -> str:
    if isinstance(e, SpecError):
        return e.render()
    return f"{type(e).__name__}: {e}".strip()


def train_one(task: Task, variant: Variant, seed: int, steps: int, backend: str = "eager",
              progress: bool = True, on_log: Callable[[RunResult], None] | None = None,
              probe: bool = False, log: Any = None) -> RunResult:
    """Train ``task`` with ``variant`` for ``steps`` steps from ``seed``.

    ``probe``: record per-rule statistics every step (:mod:`.probe`). ``log``: a scalar logger
    (:class:`.tblog.TensorBoardLog`) that gets this run's losses, learning rates and probe values.
    Never raises for a failing run: a spec or construction error, a non-finite loss and an
    interruption are recorded in ``status``/``message`` (``KeyboardInterrupt`` is re-raised
    after recording, so the caller can stop the remaining runs).
    """
    import optloom

    from .probe import Probe

    res = RunResult(label=variant.label, seed=seed)
    writer = log.run(variant.label, seed) if log is not None else None
    dev = task.device
    bar = Progress(f"{variant.label} seed {seed}", steps) if progress else None
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    train_seconds = 0.0

    def validate(step: int) -> float:
        model.eval()
        with torch.no_grad():
            v = float(task.val_loss(model))
        model.train()
        res.val_steps.append(step)
        res.val_loss.append(v)
        res.val_time.append(train_seconds)
        if writer is not None:
            writer.scalars(step, {"loss/val": v})
        return v

    try:
        torch.manual_seed(seed)
        model = task.model().to(dev)
        opt = optloom.optimizer(variant.spec, model.named_parameters(), backend=backend, **variant.overrides)
        probe_of = Probe(opt) if probe else None
        val = validate(0)
        for step in range(1, steps + 1):
            synchronize(dev)
            t0 = time.perf_counter()
            loss = task.loss(model, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            lv = float(loss.detach())
            if not math.isfinite(lv):
                res.status, res.message = "diverged", f"training loss became {lv} at step {step}"
                break
            stats: dict[str, float] = {}
            probe_ms = 0.0
            if probe_of is not None:
                p0 = time.perf_counter()
                probe_of.before()
                probe_ms = 1000 * (time.perf_counter() - p0)
            synchronize(dev)
            t1 = time.perf_counter()
            opt.step()
            synchronize(dev)
            t2 = time.perf_counter()
            train_seconds += t2 - t0 - probe_ms / 1000  # the probe's cost is not training time
            res.opt_ms.append(1000 * (t2 - t1))
            if probe_of is not None:
                stats = probe_of.after()
                res.probe_ms.append(probe_ms + 1000 * (time.perf_counter() - t2))
                for key, value in stats.items():
                    res.probe.setdefault(key, [math.nan] * len(res.steps)).append(value)
                for key, values in res.probe.items():
                    if len(values) <= len(res.steps):  # a rule without gradients this step
                        values.append(math.nan)
            if writer is not None:
                lrs = {f"lr/group{i}": float(g["lr"]) for i, g in enumerate(opt.param_groups) if "lr" in g}
                writer.scalars(step, {"loss/train": lv, "time/opt_step_ms": res.opt_ms[-1], **lrs,
                                      **{f"{k.split('.')[-1]}/{k.rsplit('.', 1)[0]}": v for k, v in stats.items()}})
            res.steps.append(step)
            res.train_loss.append(lv)
            res.train_time.append(train_seconds)
            res.steps_done = step
            if step % task.eval_every == 0 or step == steps:
                val = validate(step)
                if not math.isfinite(val):
                    res.status, res.message = "diverged", f"validation loss became {val} at step {step}"
                    break
                if on_log:
                    on_log(res)
            if bar:
                bar.update(step, loss=lv, val=val)
        res.state_bytes = measure_state_bytes(opt)
    except KeyboardInterrupt:
        res.status, res.message = "interrupted", f"interrupted (Ctrl-C or kill) at step {res.steps_done}"
        res.wall_seconds = time.perf_counter() - start
        if writer is not None:
            writer.close()
        if bar:
            bar.close(res.message)
        raise RunInterrupted(res) from None
    except Exception as e:  # a failing run is data, not a crash: record it and go on
        res.status, res.message = "error", _describe(e)
    res.wall_seconds = time.perf_counter() - start
    if writer is not None:
        writer.close()
    if bar:
        bar.close("" if res.status == "ok" else f"{res.status}: {res.message.splitlines()[0]}")
    return res


class RunInterrupted(Exception):
    """Ctrl-C during a run; ``.result`` holds what was done."""

    def __init__(self, result: RunResult) -> None:
        super().__init__(result.message)
        self.result = result
