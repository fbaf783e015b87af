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

    def to_dict(self, target: float | None = None) -> dict[str, Any]:
        d = asdict(self)
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
              progress: bool = True, on_log: Callable[[RunResult], None] | None = None) -> RunResult:
    """Train ``task`` with ``variant`` for ``steps`` steps from ``seed``.

    Never raises for a failing run: a spec or construction error, a non-finite loss and an
    interruption are recorded in ``status``/``message`` (``KeyboardInterrupt`` is re-raised
    after recording, so the caller can stop the remaining runs).
    """
    import optloom

    res = RunResult(label=variant.label, seed=seed)
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
        return v

    try:
        torch.manual_seed(seed)
        model = task.model().to(dev)
        opt = optloom.optimizer(variant.spec, model.named_parameters(), backend=backend, **variant.overrides)
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
            synchronize(dev)
            t1 = time.perf_counter()
            opt.step()
            synchronize(dev)
            t2 = time.perf_counter()
            train_seconds += t2 - t0
            res.opt_ms.append(1000 * (t2 - t1))
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
        if bar:
            bar.close(res.message)
        raise RunInterrupted(res) from None
    except Exception as e:  # a failing run is data, not a crash: record it and go on
        res.status, res.message = "error", _describe(e)
    res.wall_seconds = time.perf_counter() - start
    if bar:
        bar.close("" if res.status == "ok" else f"{res.status}: {res.message.splitlines()[0]}")
    return res


class RunInterrupted(Exception):
    """Ctrl-C during a run; ``.result`` holds what was done."""

    def __init__(self, result: RunResult) -> None:
        super().__init__(result.message)
        self.result = result
