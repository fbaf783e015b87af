"""What a bucket's step graph is specialized to (:class:`BucketMeta`) and its state buffers
(:class:`StateSpec`): plain data shared by lowering, backends and the runtime."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ..check import ir
from ..primitives.context import Ctx
from ..primitives.storage import Format
from .layout import Layout, layout_of


@dataclass(frozen=True)
class BucketMeta:
    """What a bucket's step graph is specialized to: layout, buffer shape, dtype, device."""

    layout: Layout
    shape: tuple[int, ...]
    dtype: torch.dtype
    device: torch.device

    @classmethod
    def of_param(cls, rule: ir.RuleIR, p: torch.Tensor) -> "BucketMeta":
        """The meta of a bucket holding ``p`` alone."""
        layout = layout_of(rule)
        return cls(layout, layout.buffer_shape([tuple(p.shape)]), p.dtype, p.device)


@dataclass(frozen=True)
class StateSpec:
    """A state buffer of a bucket: its name, buffer shape and dtype, and the primitive's State
    declaration that builds its initial value (of the logical state, for a stored part)."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    init: Any
    # a stored part of a formatted state (precision policy): its format, the logical state's name
    # and bucket shape, which part (0: values or codes, 1: block scales) and logical entries per entry
    fmt: Format | None = None
    logical: str = ""
    part: int = 0
    logical_shape: tuple[int, ...] = ()
    granularity: int = 1

    @property
    def key(self) -> tuple:
        """What a step graph depends on (its cache key's part)."""
        return (self.name, self.shape, self.dtype, None if self.fmt is None else self.fmt.name, self.part)

    def allocate(self, layout: Layout, device: torch.device, ids: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        like = torch.zeros(self.shape, dtype=self.dtype, device=device)
        ctx = Ctx(layout=layout, param=like, step=step, states={}, ids=ids)  # type: ignore[arg-type]
        return self.init.initial(ctx, like).to(device)

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * torch.empty((), dtype=self.dtype).element_size()
