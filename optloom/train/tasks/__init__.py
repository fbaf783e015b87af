"""Training tasks: one small interface, a registry, and the shipped tasks.

A task builds a model, yields a training loss per step and measures a validation loss::

    import torch
    from torch import nn
    from optloom.train import Task, register_task

    @register_task
    class Sine(Task):
        name = "sine"
        steps = 300                       # default budget (--steps overrides)

        def model(self) -> nn.Module:     # called after torch.manual_seed(seed)
            return nn.Sequential(nn.Linear(1, 64), nn.Tanh(), nn.Linear(64, 1))

        def loss(self, model, gen):       # gen: torch.Generator seeded per run
            x = torch.rand(128, 1, generator=gen).to(self.device) * 6
            return nn.functional.mse_loss(model(x), torch.sin(x))

        def val_loss(self, model):        # called under torch.no_grad(), model.eval()
            x = torch.linspace(0, 6, 512, device=self.device)[:, None]
            return nn.functional.mse_loss(model(x), torch.sin(x)).item()

Then ``optloom train adamw --task my_tasks.py:sine`` (a file or a dotted module, then the name).
"""
from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..device import default_device


class Task:
    """Base class of a training task. Subclasses set ``name`` and implement three methods."""

    name: str = ""
    description: str = ""
    steps: int = 200              #: default number of optimizer steps
    eval_every: int = 20          #: validation loss every this many steps (and at the first and last)
    target: float | None = None   #: validation loss whose first crossing is reported (steps, seconds)

    def __init__(self, device: torch.device | None = None) -> None:
        self.device = device if device is not None else default_device()

    def prepare(self) -> None:
        """Load or synthesize data once per process (before any run); optional."""

    def model(self) -> nn.Module:
        """A fresh model; the caller has seeded torch, so initialization is deterministic."""
        raise NotImplementedError

    def loss(self, model: nn.Module, gen: torch.Generator) -> torch.Tensor:
        """The training loss of one minibatch drawn with ``gen`` (a CPU generator, seeded per run)."""
        raise NotImplementedError

    def val_loss(self, model: nn.Module) -> float:
        """The validation loss (a fixed set, the same for every run)."""
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        """Facts about data and model recorded in ``results.json``."""
        return {"name": self.name, "description": self.description}


TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make a :class:`Task` available to ``--task NAME``."""
    if not cls.name:
        raise ValueError(f"task class {cls.__name__} needs a `name`")
    TASKS[cls.name] = cls
    return cls


class TaskError(ValueError):
    """A task name that cannot be resolved, or a task whose data is unavailable."""


def _import_user_module(where: str) -> None:
    if where.endswith(".py") or "/" in where:
        path = Path(where)
        if not path.is_file():
            raise TaskError(f"no task file '{where}'")
        spec = importlib.util.spec_from_file_location(f"optloom_user_tasks_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise TaskError(f"cannot load task file '{where}'")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        try:
            importlib.import_module(where)
        except ImportError as e:
            raise TaskError(f"cannot import task module '{where}': {e}") from None


def get_task(name: str, device: torch.device | None = None) -> Task:
    """``charlm`` / ``charlm-shakespeare`` / ``digits`` / ``lsq``, or ``FILE.py:NAME`` /
    ``package.module:NAME`` for a user task."""
    from . import charlm, digits, lsq  # noqa: F401  (register the shipped tasks)

    if ":" in name:
        where, name = name.rsplit(":", 1)
        _import_user_module(where)
    if name not in TASKS:
        raise TaskError(f"unknown task '{name}' (tasks: {', '.join(sorted(TASKS))}; "
                        "a task of your own: --task FILE.py:NAME)")
    return TASKS[name](device)


def task_names() -> list[str]:
    from . import charlm, digits, lsq  # noqa: F401

    return sorted(TASKS)


__all__ = ["TASKS", "Task", "TaskError", "get_task", "register_task", "task_names"]
