"""``--log tensorboard``: every run's scalars as TensorBoard event files in the run folder,
``tensorboard/<variant>/seed<k>`` (so TensorBoard groups the seeds of a variant): ``loss/train``,
``loss/val``, ``lr/group<i>``, ``time/opt_step_ms`` and, with ``--probe``, ``update_rms/<rule>``,
``grad_rms/<rule>``, ``update_top_sv/<rule>``. View them with ``tensorboard --logdir RUN/tensorboard``.
Needs the ``tensorboard`` package (``pip install optloom[integrations]``)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

LOGGERS = ("tensorboard",)


class LogUnavailable(RuntimeError):
    """The logging library is not installed."""


class TensorBoardLog:
    def __init__(self, root: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise LogUnavailable(f"--log tensorboard needs the tensorboard package ({e}): "
                                 "pip install 'optloom[integrations]' (or tensorboard)") from None
        self.root = root
        self._writer = SummaryWriter

    def run(self, label: str, seed: int) -> "RunLog":
        folder = self.root / (re.sub(r"[^A-Za-z0-9_.=+-]+", "_", label).strip("._") or "spec") / f"seed{seed}"
        return RunLog(self._writer(log_dir=str(folder)))


class RunLog:
    def __init__(self, writer: Any) -> None:
        self.writer = writer

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for tag, value in values.items():
            if value == value:  # NaN: nothing to show
                self.writer.add_scalar(tag, value, step)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()
