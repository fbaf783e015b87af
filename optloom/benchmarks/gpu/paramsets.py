"""Parameter sets of the GPU benchmark: the CPU benchmark's sets (``optloom.benchmarks.paramsets``)
plus ``gpt2-1b``, GPT-2's layout scaled to about a billion parameters (d = 2048, 18 blocks, the
full vocabulary), and, for smoke runs, ``gpt2-nano`` (GPT-2's layout at toy size) and
``muon-nano`` (8 matrices 16x32)."""
from __future__ import annotations

from .. import paramsets as base
from ..paramsets import ParamSet

SETS = {
    "gpt2-1b": lambda: base.gpt2("gpt2-1b", 2048, 18, 50257, 1024, "about 1.01B parameters (the ~1B AdamW target)"),
    "gpt2-nano": lambda: base.gpt2("gpt2-nano", 16, 2, 64, 16, "GPT-2's layout at toy size (smoke runs)"),
    "muon-nano": lambda: ParamSet("muon-nano", "8 same-shape matrices 16x32 (smoke runs)",
                                  tuple((f"h.{i}.attn.w.weight", (16, 32)) for i in range(8))),
}


def get(name: str) -> ParamSet:
    """A GPU set by name, else the CPU benchmark's set of that name."""
    return SETS[name]() if name in SETS else base.get(name)


def names() -> list[str]:
    return [*base.SETS, *SETS]
