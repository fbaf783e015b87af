"""Training, comparison and ablation of optimizer specs (``optloom train / ablate / diff / demo``).

>>> from optloom.train import Task, register_task      # add a task of your own (see tasks/__init__.py)
"""
from .device import default_device
from .runner import RunResult, Variant, train_one
from .tasks import Task, TaskError, get_task, register_task, task_names

__all__ = ["RunResult", "Task", "TaskError", "Variant", "default_device", "get_task", "register_task",
           "task_names", "train_one"]
