"""The backend seam: what runs a step's lowered graphs.

A backend owns a cache of lowered step graphs (keyed by everything a graph is specialized to)
and runs one optimizer step: a list of bucket graphs with their inputs. It may run a device
kernel of its own for any primitive (:mod:`.kernels`). Adding a backend is a module in this
package and one line in ``backends/__init__.py``.
"""
from __future__ import annotations

from typing import Any, Hashable, Protocol, Sequence

import torch

from ..lowering.lower import GraphRequest, StepGraph, lower_step
from . import kernels


class Backend(Protocol):
    name: str

    def graph(self, key: Hashable, request: GraphRequest) -> StepGraph:
        """The step graph for ``request`` (``key`` identifies it: built once per backend)."""

    def run(self, keys: Sequence[Hashable], graphs: Sequence[StepGraph], inputs: Sequence[list[Any]]) -> None:
        """One step: call each bucket's graph on its inputs (which it updates in place)."""

    def clear(self) -> None:
        """Forget every cached graph and compiled step."""


class GraphCache:
    """Lowered graphs of one backend, shared by every optimizer of the process (a graph is a pure
    function of its key, so a second optimizer of the same spec traces nothing)."""

    name = "?"

    def __init__(self) -> None:
        self._graphs: dict[Hashable, StepGraph] = {}

    def graph(self, key: Hashable, request: GraphRequest) -> StepGraph:
        full = (key, kernels.version())
        found = self._graphs.get(full)
        if found is None:
            impl = kernels.implementations(self.name, torch.device(request.meta.device).type)
            found = self._graphs[full] = lower_step(request, impl)
        return found

    def clear(self) -> None:
        self._graphs.clear()
