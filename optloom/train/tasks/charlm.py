"""``charlm``: a small decoder-only transformer, byte-level, on the Python standard library's source.

Corpus: every ``.py`` file under the running interpreter's stdlib folder
(``sysconfig.get_paths()["stdlib"]``), walked in sorted order, skipping the folders ``test``,
``tests``, ``idle_test``, ``site-packages``, ``dist-packages``, ``__pycache__`` and files named
``test_*.py`` (Python 3.11: 734 files, 12.1 MB). Files are read as bytes (vocabulary of 256) and
joined with a blank line. Split: every 10th file in that order is validation (~10%), the rest is
training. Validation loss is the mean over a fixed set of windows (the same for every run).
"""
from __future__ import annotations

import math
import os
import sysconfig
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import Task, register_task

EXCLUDE_DIRS = frozenset({"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"})
VAL_EVERY_NTH_FILE = 10


def stdlib_files(root: str | None = None) -> list[Path]:
    """The stdlib ``.py`` files of the corpus, in a deterministic order."""
    base = Path(root or sysconfig.get_paths()["stdlib"])
    out: list[Path] = []
    for d, dirs, files in os.walk(base):
        dirs[:] = sorted(x for x in dirs if x not in EXCLUDE_DIRS)
        out.extend(Path(d) / f for f in sorted(files) if f.endswith(".py") and not f.startswith("test_"))
    return out


@lru_cache(maxsize=2)
def load_corpus(root: str | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(train bytes, validation bytes, number of files) as uint8 tensors."""
    train, val = bytearray(), bytearray()
    files = stdlib_files(root)
    for i, path in enumerate(files):
        try:
            data = path.read_bytes() + b"\n\n"
        except OSError:
            continue
        (val if i % VAL_EVERY_NTH_FILE == 0 else train).extend(data)
    if len(train) < 10_000 or len(val) < 10_000:
        raise RuntimeError(f"the standard library source under {root or sysconfig.get_paths()['stdlib']} "
                           "is too small to train on")
    as_tensor = lambda b: torch.frombuffer(bytearray(b), dtype=torch.uint8).clone()  # noqa: E731
    return as_tensor(train), as_tensor(val), len(files)


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

    def prepare(self) -> None:
        self.train_data, self.val_data, self.n_files = load_corpus()
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
        return {**super().info(), "corpus": sysconfig.get_paths()["stdlib"], "files": self.n_files,
                "train_bytes": len(self.train_data), "val_bytes": len(self.val_data),
                "split": f"every {VAL_EVERY_NTH_FILE}th file (sorted order) is validation",
                "d": self.d, "layers": self.layers, "heads": self.heads, "context": self.context,
                "batch": self.batch, "val_windows": self.val_windows, "loss": "cross-entropy, nats per byte"}
