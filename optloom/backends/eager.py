"""``eager``: each bucket's GraphModule is called in turn, uncompiled."""
from __future__ import annotations

from typing import Any, Hashable, Sequence

from ..lowering.lower import StepGraph
from .base import GraphCache


class EagerBackend(GraphCache):
    name = "eager"

    def run(self, keys: Sequence[Hashable], graphs: Sequence[StepGraph], inputs: Sequence[list[Any]]) -> None:
        for graph, args in zip(graphs, inputs):
            graph.fn(*args)
