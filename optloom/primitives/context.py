"""The execution context a primitive implementation sees.

Fast implementations run on a *bucket*: parameters of one rule stacked along a leading batch
dimension (``layout="stacked"``, values shaped ``(B, *shape)``) or concatenated into one flat
vector (``layout="flat"``, only for rules made of elementwise primitives). Per-parameter scalars
are ``(B,)`` tensors; :meth:`Ctx.bcast` aligns them with a tensor. Reference implementations
see ``layout="single"``: one parameter, no batch dimension.
"""
from __future__ import annotations

from typing import Any, Callable, Literal

import torch

Tensor = torch.Tensor
Layout = Literal["flat", "stacked", "single"]


class Ctx:
    """Functional view of one bucket during one step: read state, write state, update param."""

    def __init__(self, *, layout: Layout, param: Tensor, step: Tensor | float, states: dict[str, Tensor],
                 init_state: Callable[[str, Tensor, Any], Tensor] | None = None, lr: Any = None,
                 ids: Tensor | int = 0, phases: dict[int, bool] | None = None, group: tuple[int, ...] = ()):
        self.layout = layout
        self.ids = ids  # stable per-parameter ids: (B,) int64 when stacked, an int when single
        self.phases = phases or {}  # period T -> does a period start at this step (every, restart)
        self.group = group  # ids of every parameter of this rule, in order (group samplers)
        # group reductions across buckets: the probe pass records each reduction's local values,
        # the step pass reads the reduced values (one 0-d tensor per reduction, in rule order)
        self.probe: dict[int, Tensor] | None = None
        self.reduced: list[Tensor] | None = None
        self.param = param
        self.step = step
        self.states = states
        self.lr = lr
        self._init_state = init_state
        self._names: dict[str, str] = {}
        self._specs: dict[str, Any] = {}

    # -- call-site binding (the compiler maps a primitive's local state names to unique names)
    def bind(self, names: dict[str, str], specs: dict[str, Any]) -> "Ctx":
        self._names, self._specs = names, specs
        return self

    def state(self, local: str, like: Tensor) -> Tensor:
        """Current value of this call site's state ``local``; initialized from ``like``'s shape."""
        full = self._names.get(local, local)
        if full not in self.states:
            spec = self._specs[local]
            if self._init_state is None:
                self.states[full] = spec.initial(self, like)
            else:
                self.states[full] = self._init_state(full, like, spec)
        return self.states[full]

    def set_state(self, local: str, value: Tensor) -> None:
        self.states[self._names.get(local, local)] = value

    def group_position(self) -> tuple[Tensor | int, int]:
        """Each member's position in its rule's parameter group (``(B,)`` or an int) and the group's
        size. Without a group (shape discovery, direct calls) the bucket is the whole group."""
        if not self.group:
            return (torch.arange(self.ids.shape[0]) if isinstance(self.ids, Tensor) else 0), \
                (int(self.ids.shape[0]) if isinstance(self.ids, Tensor) else 1)
        if isinstance(self.ids, Tensor):
            table = torch.tensor(self.group, dtype=torch.int64, device=self.ids.device)
            return torch.searchsorted(table, self.ids), len(self.group)
        return self.group.index(int(self.ids)), len(self.group)

    # -- shapes
    @property
    def batched(self) -> bool:
        return self.layout == "stacked"

    def bcast(self, s: Any, like: Tensor) -> Any:
        """Align a per-parameter scalar ``(B,)`` with a batched tensor ``(B, ...)``."""
        if isinstance(s, Tensor) and s.ndim == 1 and self.layout == "stacked" and like.ndim > 1:
            return s.reshape(s.shape[0], *([1] * (like.ndim - 1)))
        return s

    def reduce_dims(self, x: Tensor) -> tuple[int, ...]:
        """Dimensions holding one parameter's entries (all but the batch dimension)."""
        return tuple(range(1, x.ndim)) if self.layout == "stacked" else tuple(range(x.ndim))

    def mat_shape(self, x: Tensor) -> tuple[int, int]:
        """(rows, cols) of the matrix each member of ``x`` holds."""
        return int(x.shape[-2]), int(x.shape[-1])

    def mT(self, x: Tensor) -> Tensor:
        return x.transpose(-2, -1)
