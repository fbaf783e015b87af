"""Bucket layouts, and the choice of one for a rule.

A bucket runs one rule's step graph over several parameters at once. Its buffers are laid out
``flat`` (every member's entries concatenated into one vector: any shape can share a bucket) or
``stacked`` (members of one shape stacked along a new leading batch dimension, so matrix
primitives see whole matrices). Reference implementations see ``single``: one parameter, no
batch dimension.
"""
from __future__ import annotations

from enum import Enum

from ..check import ir


class Layout(str, Enum):
    """A bucket's buffer layout (a ``str``: the primitives' ``Ctx.layout`` compares it to text)."""

    FLAT = "flat"
    STACKED = "stacked"
    SINGLE = "single"

    def __str__(self) -> str:
        return self.value

    def buffer_shape(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        """The shape of a bucket buffer holding members of these shapes."""
        if self is Layout.FLAT:
            return (sum(_numel(s) for s in shapes),)
        return (len(shapes), *shapes[0])


def layout_of(rule: ir.RuleIR) -> Layout:
    """``flat`` when every node of the rule acts entry by entry (no matrix, norm or per-parameter
    scalar), so members of any shape share one bucket; else ``stacked`` (one bucket per shape)."""
    return Layout.FLAT if rule.elementwise else Layout.STACKED


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
