"""Device kernels: a backend may run its own implementation of a primitive on one device type.

    @register_kernel("newton_schulz", backend="inductor", device="cuda")
    def newton_schulz_cuda(ctx, x, steps=5, ...): ...

The kernel takes the primitive's batched signature and must compute what its batched
implementation computes (the primitive contract suite can run it against the reference). Graphs
lowered before a registration are not reused after it.
"""
from __future__ import annotations

from typing import Any, Callable

from ..lowering.interpret import Impl
from ..primitives.registry import Primitive, lookup

_KERNELS: dict[tuple[str, str, str], Callable[..., Any]] = {}
_VERSION = [0]


def register_kernel(primitive: str, *, backend: str, device: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: ``fn`` runs ``primitive`` when ``backend`` lowers a graph for ``device`` (a
    device type: ``"cuda"``, ``"cpu"``, …)."""
    if lookup(primitive) is None:
        raise ValueError(f"no primitive named {primitive!r}")

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        _KERNELS[(backend, device, primitive)] = fn
        _VERSION[0] += 1
        return fn

    return register


def unregister_kernel(primitive: str, *, backend: str, device: str) -> None:
    """Remove a registered kernel (graphs lowered with it are not reused afterwards)."""
    if _KERNELS.pop((backend, device, primitive), None) is not None:
        _VERSION[0] += 1


def implementations(backend: str, device: str) -> Impl:
    """Each primitive's implementation on ``backend`` and ``device``: a registered kernel, else
    the primitive's batched implementation."""
    def impl(prim: Primitive) -> Callable[..., Any]:
        return _KERNELS.get((backend, device, prim.name), prim.fn)

    return impl


def version() -> int:
    """Changes with every registration (part of every cached graph's key)."""
    return _VERSION[0]
