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

import torch

from . import charlm, digits, lsq  # noqa: F401  (register the shipped tasks)
from .registry import TASKS, Task, TaskError, register_task


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
    if ":" in name:
        where, name = name.rsplit(":", 1)
        _import_user_module(where)
    if name not in TASKS:
        raise TaskError(f"unknown task '{name}' (tasks: {', '.join(sorted(TASKS))}; "
                        "a task of your own: --task FILE.py:NAME)")
    return TASKS[name](device)


def task_names() -> list[str]:
    return sorted(TASKS)


__all__ = ["TASKS", "Task", "TaskError", "get_task", "register_task", "task_names"]
