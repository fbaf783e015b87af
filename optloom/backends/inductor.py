"""``inductor``: the whole step — every bucket's graph — as one ``torch.compile`` graph.

Compile time grows with the number of buckets' inputs (a handful each), not with the number of
parameters; the compiled step is reused while the set of buckets stays the same, and saved to
disk so a later process loads it (:mod:`.compile_cache`). The 0-d arithmetic of each bucket
(bias corrections, ``lr·λ``) is hoisted out of the fused loops and run once before them.
"""
from __future__ import annotations

from typing import Any, Callable, Hashable, Sequence

import torch
import torch.fx as fx

from ..lowering.lower import StepGraph
from ..lowering.passes import split_scalar_prologue
from . import compile_cache
from .base import GraphCache


class InductorBackend(GraphCache):
    name = "inductor"

    def __init__(self) -> None:
        super().__init__()
        self._split: dict[Hashable, tuple[Any, Any]] = {}
        # compiled whole steps, keyed by their buckets' graph keys: shared across optimizers
        # (Dynamo's guards check the input tensors' shapes and dtypes, not their identity)
        self._compiled: dict[tuple, Callable[..., None]] = {}

    def run(self, keys: Sequence[Hashable], graphs: Sequence[StepGraph], inputs: Sequence[list[Any]]) -> None:
        parts = [self._split_graph(k, g.fn) for k, g in zip(keys, graphs)]
        flat: list[Any] = []
        counts: list[int] = []
        for (prologue, _), args in zip(parts, inputs):
            hoisted = prologue(*args) if prologue is not None else ()  # the 0-d arithmetic, once
            flat += [*args, *hoisted]
            counts.append(len(args) + len(hoisted))
        key = tuple(keys)
        fn = self._compiled.get(key)
        if fn is None:
            fn = self._compiled[key] = _whole_step([main for _, main in parts], counts)
        fn(*flat)

    def clear(self) -> None:
        super().clear()
        self._split.clear()
        self.forget_compiled()

    def forget_compiled(self) -> None:
        """Drop the compiled steps held in memory (the on-disk cache stays): the next step
        compiles again or loads from disk."""
        self._compiled.clear()

    def _split_graph(self, key: Hashable, gm: fx.GraphModule) -> tuple[Any, Any]:
        """(prologue or None, main graph) of a bucket's step graph, cached by its graph key."""
        if key not in self._split:
            self._split[key] = split_scalar_prologue(gm) or (None, gm)
        return self._split[key]


def _whole_step(graphs: list[Callable[..., None]], counts: list[int]) -> Callable[..., None]:
    """One GraphModule calling every bucket's graph. (A GraphModule, not a Python closure: each
    gets its own code object, so Dynamo keeps one cache entry per step program.)"""
    root = torch.nn.Module()
    graph = fx.Graph()
    for i, (gm, n) in enumerate(zip(graphs, counts)):
        root.add_module(f"bucket{i}", gm)  # type: ignore[arg-type]
        args = [graph.placeholder(f"b{i}_{j}") for j in range(n)]
        graph.call_module(f"bucket{i}", tuple(args))
    graph.output(None)
    whole_step = fx.GraphModule(root, graph)
    # emulate_precision_casts: round low-precision intermediates (bf16 Newton–Schulz) as eager does;
    # compiled on the first call, or loaded from optloom's on-disk cache
    return compile_cache.compile_step(whole_step, {"emulate_precision_casts": True})
