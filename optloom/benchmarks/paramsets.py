"""Parameter sets a step is timed over. Only shapes and names matter: values are N(0, 0.02²), and
gradients are refilled with fresh N(0, 1) values before every timed step (never recomputed).

Names follow GPT-2 (``h.{i}.attn.c_attn.weight``…) so that Muon's routing (``embed|wte|wpe|
lm_head|head`` and <2-D tensors to AdamW) applies as it would on a real model. Linear weights are
stored ``(out, in)`` as ``nn.Linear`` does (qkv 2304x768, fc 3072x768, proj 768x3072).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

Shape = tuple[int, ...]


@dataclass(frozen=True)
class ParamSet:
    name: str
    description: str
    shapes: tuple[tuple[str, Shape], ...]

    @property
    def tensors(self) -> int:
        return len(self.shapes)

    @property
    def numel(self) -> int:
        return sum(math.prod(s) for _, s in self.shapes)

    def prefix(self, count: int) -> "ParamSet":
        """The first ``count`` tensors (compile-time scaling)."""
        count = min(count, self.tensors)
        return ParamSet(f"{self.name}[:{count}]", f"first {count} tensors of {self.name}", self.shapes[:count])

    def make(self, device: torch.device, seed: int = 0, dtype: torch.dtype = torch.float32):
        """``[(name, Parameter)]`` with zero gradients allocated."""
        gen = torch.Generator(device=device).manual_seed(seed)
        out = []
        for name, shape in self.shapes:
            p = torch.nn.Parameter(torch.randn(shape, device=device, dtype=dtype, generator=gen) * 0.02)
            p.grad = torch.zeros_like(p)
            out.append((name, p))
        return out

    def summary(self) -> dict:
        return {"name": self.name, "description": self.description, "tensors": self.tensors, "numel": self.numel}


def gpt2(name: str, d: int, blocks: int, vocab: int, ctx: int, note: str) -> ParamSet:
    shapes: list[tuple[str, Shape]] = [("wte.weight", (vocab, d)), ("wpe.weight", (ctx, d))]
    for i in range(blocks):
        h = f"h.{i}."
        shapes += [
            (h + "ln_1.weight", (d,)), (h + "ln_1.bias", (d,)),
            (h + "attn.c_attn.weight", (3 * d, d)), (h + "attn.c_attn.bias", (3 * d,)),
            (h + "attn.c_proj.weight", (d, d)), (h + "attn.c_proj.bias", (d,)),
            (h + "ln_2.weight", (d,)), (h + "ln_2.bias", (d,)),
            (h + "mlp.c_fc.weight", (4 * d, d)), (h + "mlp.c_fc.bias", (4 * d,)),
            (h + "mlp.c_proj.weight", (d, 4 * d)), (h + "mlp.c_proj.bias", (d,)),
        ]
    shapes += [("ln_f.weight", (d,)), ("ln_f.bias", (d,))]
    desc = f"GPT-2-shaped: {blocks} blocks of d={d}, vocab {vocab}, context {ctx}, tied head; {note}"
    return ParamSet(name, desc, tuple(shapes))


def adamw_10m() -> ParamSet:
    """~10M parameters in 61 tensors: the AdamW target of the issue."""
    d = 256
    shapes: list[tuple[str, Shape]] = [("wte.weight", (2048, d))]
    for i in range(12):
        h = f"h.{i}."
        shapes += [(h + "attn.c_attn.weight", (3 * d, d)), (h + "attn.c_proj.weight", (d, d)),
                   (h + "mlp.c_fc.weight", (4 * d, d)), (h + "mlp.c_proj.weight", (d, 4 * d)),
                   (h + "ln.weight", (d,))]
    return ParamSet("adamw-10m", "12 blocks of d=256 (qkv, proj, fc, proj, LayerNorm) + wte 2048x256: "
                    "~10M parameters in 61 tensors (the AdamW target)", tuple(shapes))


def many_small() -> ParamSet:
    cycle: list[Shape] = [(64, 64), (3072,), (48, 64), (2000,), (32, 128)]
    shapes = tuple((f"t{i}.weight", cycle[i % len(cycle)]) for i in range(200))
    return ParamSet("many-small", "200 tensors of 2,000-4,096 entries (2-D and 1-D mixed)", shapes)


def muon_large() -> ParamSet:
    shapes = tuple((f"h.{i}.mlp.c_proj.weight", (768, 3072)) for i in range(12))
    return ParamSet("muon-large", "12 same-shape matrices 768x3072 (all take Newton–Schulz)", shapes)


def muon_small() -> ParamSet:
    shapes = tuple((f"h.{i}.attn.w.weight", (64, 256)) for i in range(96))
    return ParamSet("muon-small", "96 same-shape matrices 64x256 (all take Newton–Schulz)", shapes)


def tiny() -> ParamSet:
    shapes: tuple[tuple[str, Shape], ...] = (
        ("wte.weight", (64, 16)), ("h.0.attn.c_attn.weight", (48, 16)), ("h.0.attn.c_attn.bias", (48,)),
        ("h.0.mlp.c_fc.weight", (64, 16)), ("h.1.mlp.c_fc.weight", (64, 16)), ("ln_f.weight", (16,)),
    )
    return ParamSet("tiny", "6 tiny tensors (smoke tests only)", shapes)


SETS = {
    "gpt2-small": lambda: gpt2("gpt2-small", 768, 12, 50257, 1024, "full GPT-2 vocabulary"),
    "gpt2-mini": lambda: gpt2("gpt2-mini", 384, 6, 8192, 512,
                              "scaled down for a 2-core machine (vocab 8192, context 512)"),
    "gpt2-tiny": lambda: gpt2("gpt2-tiny", 64, 12, 512, 64,
                              "GPT-2-small's 148-tensor structure at d=64: compile time without the step's work"),
    "adamw-10m": adamw_10m,
    "many-small": many_small,
    "muon-large": muon_large,
    "muon-small": muon_small,
    "tiny": tiny,
}

# parameter sets a spec is timed on when ``--params`` is not given
DEFAULTS = {
    "adamw": ["adamw-10m", "many-small"],
    "muon": ["muon-large", "muon-small"],
    "lion": ["adamw-10m", "many-small"],
}
FALLBACK = ["adamw-10m"]


def get(name: str) -> ParamSet:
    try:
        return SETS[name]()
    except KeyError:
        raise ValueError(f"unknown parameter set {name!r}; choose one of {', '.join(SETS)}") from None


def defaults_for(spec: str) -> list[str]:
    return DEFAULTS.get(spec, FALLBACK)
