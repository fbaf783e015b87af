"""Training runs on tiny settings: determinism, divergence, interruption."""
from __future__ import annotations

import json

import pytest

from optloom.train.experiment import Experiment, make_variant
from optloom.train.runner import train_one
from optloom.train.tasks import get_task
from optloom.train.tasks.charlm import CharLM
from optloom.train.tasks.corpus import stdlib_files
from optloom.train.tasks.lsq import LeastSquares


@pytest.fixture
def tiny(monkeypatch):
    """Shrink the shipped tasks so a run takes well under a second."""
    monkeypatch.setattr(LeastSquares, "dim", 8)
    monkeypatch.setattr(LeastSquares, "out", 4)
    monkeypatch.setattr(LeastSquares, "hidden", 8)
    monkeypatch.setattr(LeastSquares, "n_val", 64)
    monkeypatch.setattr(LeastSquares, "batch", 16)
    monkeypatch.setattr(LeastSquares, "eval_every", 2)
    for k, v in dict(d=16, layers=1, heads=2, context=16, batch=4, val_windows=8, eval_every=2).items():
        monkeypatch.setattr(CharLM, k, v)


def _task(name: str):
    t = get_task(name)
    t.prepare()
    return t


@pytest.mark.parametrize("task,spec", [("lsq", "muon"), ("charlm", "adamw"), ("charlm", "muon")])
def test_same_seed_same_numbers(tiny, task, spec):
    t = _task(task)
    v = make_variant(spec)
    a = train_one(t, v, seed=3, steps=4, progress=False)
    b = train_one(t, v, seed=3, steps=4, progress=False)
    c = train_one(t, v, seed=4, steps=4, progress=False)
    assert a.status == b.status == "ok", a.message
    assert a.train_loss == b.train_loss and a.val_loss == b.val_loss
    assert a.train_loss != c.train_loss


def test_nan_lr_is_recorded_not_raised(tiny):
    t = _task("lsq")
    res = train_one(t, make_variant("sgd", overrides={"lr": 1e30}), seed=0, steps=20, progress=False)
    assert res.status in {"diverged", "error"}
    assert res.message and res.steps_done < 20


def test_interrupt_leaves_readable_results(tiny, tmp_path, monkeypatch):
    t = _task("lsq")
    calls = {"n": 0}
    real = LeastSquares.loss

    def loss(self, model, gen):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(self, model, gen)

    monkeypatch.setattr(LeastSquares, "loss", loss)
    exp = Experiment(t, [make_variant("adamw"), make_variant("sgd")], [0], 8, tmp_path, progress=False,
                     command=["optloom", "train"])
    assert exp.run() == 130
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["status"] == "interrupted"
    assert [r["status"] for r in data["runs"]] == ["interrupted"]
    assert data["runs"][0]["steps_done"] == 4
    assert (tmp_path / "log.csv").read_text().count("\n") == 1 + 1 + 4  # header, step 0, 4 steps


def test_charlm_corpus_is_stdlib_without_tests():
    files = stdlib_files()
    assert len(files) > 100 and files == stdlib_files()  # deterministic order
    assert not any(p.name.startswith("test_") or "tests" in p.parts or "test" in p.parts for p in files)


def test_digits_without_sklearn_says_how_to_install(monkeypatch):
    import sys

    from optloom.train.tasks import TaskError

    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(TaskError, match=r"pip install 'optloom\[train\]'"):
        get_task("digits").prepare()
