"""Backends by name. A backend is a module of this package registered in ``_FACTORIES``."""
from __future__ import annotations

import os
from typing import Callable

from .base import Backend
from .eager import EagerBackend
from .inductor import InductorBackend
from .kernels import register_kernel, unregister_kernel

_FACTORIES: dict[str, Callable[[], Backend]] = {
    "eager": EagerBackend,
    "inductor": InductorBackend,
}
_INSTANCES: dict[str, Backend] = {}


def backend_names() -> list[str]:
    return list(_FACTORIES)


def get_backend(name: str | None = None) -> Backend:
    """The process-wide backend of this name (its graph cache is shared by every optimizer);
    ``None``: :func:`default_backend`."""
    name = name or default_backend()
    if name not in _FACTORIES:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(_FACTORIES)}")
    if name not in _INSTANCES:
        _INSTANCES[name] = _FACTORIES[name]()
    return _INSTANCES[name]


def default_backend() -> str:
    """The backend when none is named: ``$OPTLOOM_BACKEND`` if set, else ``"inductor"``."""
    value = os.environ.get("OPTLOOM_BACKEND", "inductor")
    if value not in _FACTORIES:
        raise ValueError(f"OPTLOOM_BACKEND={value!r} is not a backend; choose one of {', '.join(_FACTORIES)}")
    return value


__all__ = ["Backend", "backend_names", "default_backend", "get_backend", "register_kernel", "unregister_kernel"]
