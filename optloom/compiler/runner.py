"""Running one optimizer step over the buckets that have gradients.

``eager`` calls each bucket's GraphModule in turn. ``inductor`` compiles one function that calls
every bucket's graph — the whole step is a single ``torch.compile`` graph, so compile time grows
with the number of buckets' inputs (a handful each), not with the number of parameters — and
reuses it while the set of buckets stays the same.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from .buckets import Bucket

BACKENDS = ("eager", "inductor")


class StepRunner:
    def __init__(self, backend: str):
        self.backend = backend
        self._compiled: dict[tuple, Callable[..., None]] = {}

    def run(self, work: Sequence[Bucket], inputs: list[list[Any]]) -> None:
        """``inputs[i]`` are bucket ``i``'s graph inputs (param, grad, step, ids, states..., runtime...)."""
        if self.backend == "eager":
            for b, args in zip(work, inputs):
                b.fn(*args)  # type: ignore[misc]
            return
        key = tuple((id(b), b.fn_key) for b in work)
        fn = self._compiled.get(key)
        if fn is None:
            fn = self._compiled[key] = _whole_step([b.fn for b in work], [len(a) for a in inputs])  # type: ignore[misc]
        fn(*(t for args in inputs for t in args))

    def clear(self) -> None:
        self._compiled.clear()


def _whole_step(graphs: list[Callable[..., None]], counts: list[int]) -> Callable[..., None]:
    def whole_step(*flat: torch.Tensor) -> None:
        i = 0
        for gm, n in zip(graphs, counts):
            gm(*flat[i: i + n])
            i += n

    # emulate_precision_casts: round low-precision intermediates (bf16 Newton–Schulz) as eager does
    return torch.compile(whole_step, backend="inductor", fullgraph=True, dynamic=False,
                         options={"emulate_precision_casts": True})
