"""``optloom check``, ``optloom fmt`` and ``optloom list`` from the command line."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from optloom.cli import main
from optloom.lang.loader import SHIPPED

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted(str(p) for p in SHIPPED.glob("*.opt"))
BAD = "optimizer o(lr = 0.1) {\n  all =>\n    grad |> newton_shulz(5) |> apply(lr)\n}\n"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The real console entry point, in a fresh process."""
    return subprocess.run([sys.executable, "-m", "optloom", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_check_subprocess(tmp_path):
    """One real process (torch import dominates its time): exit 1, compiler-style stderr, no traceback."""
    bad = tmp_path / "bad.opt"
    bad.write_text(BAD)
    res = run_cli("check", str(bad), *SPECS)
    assert res.returncode == 1
    assert all(f"{s}: ok" in res.stdout for s in SPECS)
    assert f"{bad}:3:13: error: unknown primitive 'newton_shulz'" in res.stderr
    assert "hint: did you mean 'newton_schulz'?" in res.stderr
    assert "Traceback" not in res.stderr + res.stdout


def test_check_exit_codes(tmp_path, capsys):
    assert main(["check", *SPECS]) == 0
    assert capsys.readouterr().out == "".join(f"{s}: ok\n" for s in SPECS)
    bad = tmp_path / "bad.opt"
    bad.write_text(BAD)
    assert main(["check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{bad}:3:13: error: unknown primitive 'newton_shulz'\n")
    assert "\n        grad |> newton_shulz(5) |> apply(lr)\n                ^^^^^^^^^^^^\n" in err


def test_check_reports_shapes_at_the_call(tmp_path, capsys):
    """Issue 14: a transposed update on a 3×2 parameter used to be applied as a reshaped transpose;
    `optloom check` now refuses it, located at the `apply` call with a caret, and warns about a
    state that is written but never read."""
    bad = tmp_path / "t.opt"
    bad.write_text("optimizer o(lr = 0.1) {\n  m: ndim == 2 =>\n    state z = zeros(grad)\n    z <- grad\n"
                   "    grad.T |> apply(lr)\n  rest => grad |> apply(lr)\n}\n")
    assert main(["check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:5:15: error: apply: the update has shape (n, m), but the parameter has shape (m, n)\n" \
           "        grad.T |> apply(lr)\n                  ^^^^^^^^^\n" in err
    assert f"{bad}:3:5: warning: state 'z' is written but never read" in err


@pytest.mark.parametrize("content,message", [
    (b"", "no optimizer in this spec"),
    (b"\x00\x01binary", "NUL byte"),
    (b"\xff\xfe\x00", "not UTF-8"),
    (b"optimizer o(lr = 0.1) { all => grad |>", "unexpected end of file"),
    (b"optimizer o(lr = 0.1) { all => grad |> apply(lr) } " + b"x" * (1 << 20), "unexpected name"),
    (b"optimizer o() { r => " + b"(" * 10000, "nested too deeply"),
])
def test_check_bad_input_never_tracebacks(tmp_path, capsys, content, message):
    f = tmp_path / "junk.opt"
    f.write_bytes(content)
    assert main(["check", str(f)]) == 1
    out = capsys.readouterr()
    assert f"{f}:" in out.err and ": error: " in out.err and message in out.err
    assert "Traceback" not in out.err


def test_check_missing_file(tmp_path, capsys):
    assert main(["check", str(tmp_path / "nope.opt")]) == 1
    assert "cannot read spec" in capsys.readouterr().err


def test_check_warnings_do_not_fail(tmp_path, capsys):
    f = tmp_path / "w.opt"
    f.write_text("optimizer o(lr = 0.1, wd = 0.1) {\n  all => grad |> apply(lr)\n}\n")
    assert main(["check", str(f)]) == 0
    assert f"{f}:1:23: warning: hyperparameter 'wd' is never used" in capsys.readouterr().err
    assert main(["check", "-q", str(f)]) == 0
    assert capsys.readouterr().err == ""


# ---- fmt ----------------------------------------------------------------------------------------

UGLY = "# header\noptimizer o(lr=1e-3){all=>grad|>ema(0.9)|>sign|>apply(lr)}\n"
PRETTY = "# header\noptimizer o(lr = 1e-3) {\n  all =>\n    grad\n      |> ema(0.9)\n      |> sign\n      |> apply(lr)\n}\n"


def test_fmt_check_and_rewrite(tmp_path, capsys):
    f = tmp_path / "a.opt"
    f.write_text(UGLY)
    assert main(["fmt", "--check", str(f)]) == 1
    assert capsys.readouterr().out == f"would reformat {f}\n"
    assert f.read_text() == UGLY  # --check changes nothing
    assert main(["fmt", str(f)]) == 0
    assert f.read_text() == PRETTY
    assert main(["fmt", "--check", str(f)]) == 0
    assert capsys.readouterr().out == f"reformatted {f}\n"


BASELINE = [str(SHIPPED / f"{n}.opt") for n in ("sgd", "adamw", "lion", "signum", "muon")]


def test_fmt_check_baseline_specs_clean(capsys):
    assert main(["fmt", "--check", *BASELINE]) == 0
    assert capsys.readouterr().out == ""


def test_fmt_refuses_misplaced_comments(tmp_path, capsys):
    f = tmp_path / "c.opt"
    src = "optimizer o(lr = 0.1) {\n  all => grad |> apply(lr)  # why\n}\n"
    f.write_text(src)
    assert main(["fmt", str(f)]) == 1
    err = capsys.readouterr().err
    assert f"{f}:2:29: error: fmt cannot keep this comment" in err
    assert f.read_text() == src
    assert main(["fmt", "--strip-comments", str(f)]) == 0
    assert "#" not in f.read_text()


def test_fmt_bad_spec(tmp_path, capsys):
    f = tmp_path / "bad.opt"
    f.write_text("optimizer o(")
    assert main(["fmt", str(f)]) == 1
    assert f"{f}:1:13: error: unexpected end of file" in capsys.readouterr().err


# ---- list ---------------------------------------------------------------------------------------

def test_list_groups_by_family(capsys):
    from optloom.primitives import all_primitives

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for p in all_primitives():
        assert f"  {p.signature_text()}" in out
    assert "moments:\n" in out and "  ema(x, beta: float = 0.9, debias: bool = false)  [stateful: exp_avg]" in out


def test_list_family_and_json(capsys):
    assert main(["list", "--family", "orthogonalize", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {d["family"] for d in data} == {"orthogonalize"}
    ns = next(d for d in data if d["name"] == "newton_schulz")
    assert ns["needs_matrix"] is True and ns["state"] == []
    steps = next(a for a in ns["args"] if a["name"] == "steps")
    assert steps == {"name": "steps", "type": "int", "kind": "structural", "required": False, "default": 5,
                     "range": ">= 1, <= 100"}
    assert main(["list", "--family", "moment"]) == 1
    assert "did you mean 'moments'?" in capsys.readouterr().err
