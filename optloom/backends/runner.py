"""Running one optimizer step over the buckets that have gradients.

``eager`` calls each bucket's GraphModule in turn. ``inductor`` compiles one function that calls
every bucket's graph — the whole step is a single ``torch.compile`` graph, so compile time grows
with the number of buckets' inputs (a handful each), not with the number of parameters — and
reuses it while the set of buckets stays the same.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import torch
import torch.fx as fx

from . import compile_cache
from ..runtime.buckets import Bucket
from ..lowering.passes import split_scalar_prologue

BACKENDS = ("eager", "inductor")


def default_backend() -> str:
    """The backend when none is named: ``$OPTLOOM_BACKEND`` if set, else ``"inductor"``."""
    value = os.environ.get("OPTLOOM_BACKEND", "inductor")
    if value not in BACKENDS:
        raise ValueError(f"OPTLOOM_BACKEND={value!r} is not a backend; choose one of {', '.join(BACKENDS)}")
    return value


# compiled whole steps, keyed by their buckets' graph keys: shared across optimizers (Dynamo's
# guards check the input tensors' shapes and dtypes, not their identity)
_COMPILED: dict[tuple, Callable[..., None]] = {}


class StepRunner:
    def __init__(self, backend: str):
        self.backend = backend

    def run(self, work: Sequence[Bucket], inputs: list[list[Any]]) -> None:
        """``inputs[i]`` are bucket ``i``'s graph inputs (param, grad, step, ids, states..., runtime...)."""
        if self.backend == "eager":
            for b, args in zip(work, inputs):
                b.fn(*args)  # type: ignore[misc]
            return
        parts = [_split(b.fn_key, b.fn) for b in work]
        flat: list[Any] = []
        counts: list[int] = []
        for (prologue, _), args in zip(parts, inputs):
            hoisted = prologue(*args) if prologue is not None else ()  # the 0-d arithmetic, once
            flat += [*args, *hoisted]
            counts.append(len(args) + len(hoisted))
        key = tuple(b.fn_key for b in work)
        fn = _COMPILED.get(key)
        if fn is None:
            fn = _COMPILED[key] = _whole_step([main for _, main in parts], counts)
        fn(*flat)


_SPLIT: dict[tuple, tuple[Any, Any]] = {}


def _split(key: tuple, gm: Any) -> tuple[Any, Any]:
    """(prologue or None, main graph) of a bucket's step graph, cached by its graph key."""
    if key not in _SPLIT:
        _SPLIT[key] = split_scalar_prologue(gm) or (None, gm)
    return _SPLIT[key]


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
    # emulate_precision_casts: round low-precision intermediates (bf16 Newton–Schulz) as eager does
    # compiled on the first call, or loaded from optloom's on-disk cache (compile_cache.py)
    return compile_cache.compile_step(whole_step, {"emulate_precision_casts": True})
