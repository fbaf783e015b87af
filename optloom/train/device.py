"""Device choice, seeding and the environment record that makes a run repeatable."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch


def default_device() -> torch.device:
    """The first CUDA device when one is available, else the host processor."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.get_default_device()


def resolve_device(name: str | None) -> torch.device:
    """``None``/``"auto"`` -> :func:`default_device`; otherwise ``torch.device(name)``."""
    if name in (None, "", "auto"):
        return default_device()
    return torch.device(name)


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels so that wall-clock timings are honest on asynchronous devices."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment(device: torch.device) -> dict[str, Any]:
    """Versions, thread count and device: what a repeat of a run needs to match."""
    import optloom

    env: dict[str, Any] = {
        "optloom": optloom.__version__,
        "optloom_git_commit": _git_commit(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "device": str(device),
    }
    try:
        import numpy

        env["numpy"] = numpy.__version__
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    if device.type == "cuda":
        env["cuda_device"] = torch.cuda.get_device_name(device)
    return env
