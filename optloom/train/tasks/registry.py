"""The task interface and registry (the shipped tasks and user tasks register here)."""
from __future__ import annotations

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
