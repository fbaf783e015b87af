"""The GPU check: one command that runs the ``cuda`` tests and the GPU benchmark within a time
budget and writes ``gpu_check.json`` and ``gpu_check.md`` (plus ``gpu_check.log``, ``parts.log``
and ``pytest-junit.xml``) to an output folder. Started by ``benchmarks/gpu_check.sh`` (which
first installs the carried wheels) or ``python -m optloom.benchmarks.gpu OUTDIR``.

Every part is a subprocess with its own timeout: ``min(its cap, time left − the minimum the later
parts need)``; a part that fails or times out is recorded and the next one runs, and the reports
are rewritten after every part, so a run cut short still leaves every number it got. Progress
lines carry the seconds since the start and the wall-clock time. ``--smoke`` runs the same parts
on the CPU at toy sizes with the eager backend (what ``tests/test_gpu_check_smoke.py`` runs).
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from . import report

ROOT = Path(__file__).resolve().parents[3]  # the repository (the package sits in ROOT/optloom/)
OUT_FILES = ("gpu_check.json", "gpu_check.md", "gpu_check.log", "parts.log", "pytest-junit.xml")


@dataclass
class Part:
    name: str
    argv: list[str]
    cap_s: float                 # this part's own timeout
    min_s: float                 # run it only with at least this long left for it
    env: dict[str, str] = field(default_factory=dict)


def plan(py: str, work: Path, smoke: bool, pytest_target: str) -> list[Part]:
    """The parts in the order they run: most wanted first (lion last: same code as adamw)."""
    mod = [py, "-m", "optloom.benchmarks.gpu.parts"]
    flag = ["--smoke"] if smoke else []
    bench_env = {"TORCHINDUCTOR_CACHE_DIR": str(work / "inductor-bench")}
    pytest = [py, "-m", "pytest", "-p", "no:cacheprovider", "-m", "cuda", "-q", "-rfEs",
              f"--junitxml={work / 'pytest-junit.xml'}", pytest_target]
    pytest_env = {}
    if not smoke:
        pytest.append("--continue-on-collection-errors")
        if importlib.util.find_spec("xdist"):
            pytest += ["-n", "8"]
            pytest_env["TORCHINDUCTOR_COMPILE_THREADS"] = "2"  # 8 workers share the 16 cores
    s = 0.5 if smoke else 1.0
    parts = [
        Part("machine", mod + ["machine", "--work", str(work)] + flag, 60 * s, 15 * s, bench_env),
        Part("pytest", pytest, 150 if not smoke else 60, 40 * s, pytest_env),
        Part("steps-adamw", mod + ["steps-adamw", "--work", str(work)] + flag, 110 * s, 30 * s, bench_env),
        Part("steps-muon", mod + ["steps-muon", "--work", str(work)] + flag, 120 * s, 30 * s, bench_env),
        Part("train", mod + ["train", "--work", str(work)] + flag, 150 * s, 40 * s, bench_env),
    ]
    probe = [py, "-m", "optloom.benchmarks.gpu.compile_probe"]
    for spec in ("adamw",) if smoke else ("adamw", "muon"):
        params, backend = ("tiny", "eager") if smoke else ("gpt2-small", "inductor")
        cache = {"TORCHINDUCTOR_CACHE_DIR": str(work / f"inductor-compile-{spec}")}
        args = probe + ["--spec", spec, "--params", params, "--backend", backend]
        parts.append(Part(f"compile-{spec}-cold", args, (90 if spec == "muon" else 75) * s, 20 * s, cache))
        if not smoke:  # (the same probe again: the smoke keeps to the seconds it has)
            parts.append(Part(f"compile-{spec}-warm", args, 45, 15, cache))
    if not smoke:
        parts.append(Part("steps-lion", mod + ["steps-lion", "--work", str(work)], 80, 30, bench_env))
    return parts


class Clock:
    def __init__(self, log_file: Path):
        self.t0 = time.perf_counter()
        self.file = log_file.open("a")

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def log(self, msg: str, echo: bool = True) -> None:
        line = f"[{self.now():6.1f}s {datetime.datetime.now():%H:%M:%S}] {msg}"
        self.file.write(line + "\n")
        self.file.flush()
        if echo:
            print(line, flush=True)


def run_part(part: Part, timeout: float, clock: Clock, parts_log: Path, env: dict[str, str]) -> dict:
    """Run one part under ``timeout`` seconds, its output streamed (prefixed) to the progress lines
    and appended to ``parts_log``; killed with its whole process group when it overruns."""
    start = clock.now()
    with parts_log.open("a") as plog:
        plog.write(f"\n===== {part.name} ({' '.join(part.argv)}) timeout {timeout:.0f} s =====\n")
        plog.flush()
        proc = subprocess.Popen(part.argv, cwd=ROOT, env={**env, **part.env}, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True)
        lines: list[str] = []

        def pump() -> None:
            for line in proc.stdout:  # type: ignore[union-attr]
                plog.write(line)
                plog.flush()
                lines.append(line.rstrip("\n"))
                clock.log(f"  {part.name}| {line.rstrip()[:240]}")

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        timed_out = False
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill(proc)
            rc = proc.returncode
        finally:
            if proc.poll() is None:  # interrupted (Stop): the part goes with us
                _kill(proc)
        reader.join(timeout=10)
    status = "timeout" if timed_out else ("ok" if rc == 0 else "failed")
    return {"status": status, "rc": rc, "seconds": clock.now() - start, "timeout_s": timeout,
            "tail": "\n".join(lines[-25:]) if status != "ok" else None, "_lines": lines}


class Stop(Exception):
    """SIGTERM (the outer ``timeout`` of gpu_check.sh): write the reports and stop."""


def _stop(signum: int, frame: object) -> None:
    raise Stop(f"signal {signum}")


def _kill(proc: subprocess.Popen) -> None:
    """End the part we started (its process group: pytest workers, compile workers), TERM then KILL."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def junit_summary(path: Path) -> dict:
    """Counts and failures from pytest's junit XML."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        return {"error": f"no junit report: {e}"}
    out = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "failed": [], "skip_reasons": []}
    for case in root.iter("testcase"):
        out["tests"] += 1
        name = f"{case.get('classname')}::{case.get('name')}"
        for tag in ("failure", "error"):
            el = case.find(tag)
            if el is not None:
                out["failures" if tag == "failure" else "errors"] += 1
                out["failed"].append({"test": name, "kind": tag, "message": (el.get("message") or "")[:600]})
        sk = case.find("skipped")
        if sk is not None:
            out["skipped"] += 1
            reason = (sk.get("message") or "")[:200]
            if reason not in out["skip_reasons"]:
                out["skip_reasons"].append(reason)
    out["passed"] = out["tests"] - out["failures"] - out["errors"] - out["skipped"]
    return out


def last_json(lines: list[str]) -> dict | None:
    for line in reversed(lines):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


def merge(rep: dict, part: Part, res: dict, work: Path) -> None:
    name = part.name
    if name == "machine":
        data = _read(work / "machine.json")
        rep["env"], rep["machine"] = data.get("env"), data.get("machine")
    elif name == "pytest":
        rep["pytest"] = junit_summary(work / "pytest-junit.xml")
    elif name.startswith("steps-"):
        rep.setdefault("cases", []).extend(_read(work / f"{name}.json").get("cases", []))
    elif name == "train":
        rep["train_share"] = _read(work / "train.json") or None
    elif name.startswith("compile-"):
        row = last_json(res["_lines"]) or {"error": res.get("tail") or "no output"}
        row["start"] = name.rsplit("-", 1)[1]
        row["process_wall_s"] = res["seconds"]
        row.setdefault("spec", name.split("-")[1])
        rep.setdefault("compile", {"rows": []})["rows"].append(row)


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def write(rep: dict, out: Path) -> None:
    """Both reports; a bug in the targets or the rendering is written down, never fatal."""
    try:
        rep["targets"] = report.targets(rep)
    except Exception:  # noqa: BLE001
        rep["targets"], rep["targets_error"] = [], traceback.format_exc()[-2000:]
    tmp = out / "gpu_check.json.tmp"
    tmp.write_text(json.dumps(rep, indent=1, default=str))
    os.replace(tmp, out / "gpu_check.json")
    try:
        text = report.render(rep)
    except Exception:  # noqa: BLE001
        text = "# GPU check\n\nthe markdown report failed; gpu_check.json has everything:\n\n```\n" \
               + traceback.format_exc()[-3000:] + "```\n"
    (out / "gpu_check.md").write_text(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m optloom.benchmarks.gpu", description=__doc__.splitlines()[0])
    p.add_argument("out", nargs="?", type=Path, help="output folder (default $OUT, else runs/gpu-check)")
    p.add_argument("--smoke", action="store_true", help="the same parts on the CPU at toy sizes (seconds)")
    p.add_argument("--budget", type=float, help="seconds for all parts (default 450; smoke 150)")
    p.add_argument("--only", help="comma-separated parts to run (e.g. steps-muon,compile-muon-cold)")
    p.add_argument("--skip", default="", help="comma-separated parts to leave out")
    p.add_argument("--pytest-target", help="tests to run with -m cuda (default tests; smoke tests/test_cuda.py)")
    p.add_argument("--python", default=sys.executable, help="interpreter of the parts")
    a = p.parse_args(argv)
    out = a.out or Path(os.environ.get("OUT") or ROOT / "runs" / "gpu-check")
    out.mkdir(parents=True, exist_ok=True)
    for f in OUT_FILES:
        (out / f).unlink(missing_ok=True)
    budget = a.budget or (150.0 if a.smoke else 450.0)
    work = Path(tempfile.mkdtemp(prefix="optloom-gpu-check-"))
    clock = Clock(out / "gpu_check.log")
    target = a.pytest_target or ("tests/test_cuda.py" if a.smoke else "tests")
    parts = plan(a.python, work, a.smoke, target)
    only = {x for x in (a.only or "").split(",") if x}
    skip = {x for x in a.skip.split(",") if x}
    unknown = (only | skip) - {pt.name for pt in parts}
    if unknown:
        print(f"unknown part(s): {', '.join(sorted(unknown))}; parts: {', '.join(pt.name for pt in parts)}",
              file=sys.stderr)
        return 2
    parts = [pt for pt in parts if (not only or pt.name in only) and pt.name not in skip]
    env = {k: v for k, v in os.environ.items() if k not in ("OPTLOOM_CACHE_DIR", "OPTLOOM_BACKEND", "OUT")}
    env.update(PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join(x for x in (str(ROOT), env.get("PYTHONPATH")) if x))
    if a.smoke:
        env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")  # the CPU, one thread: a test of the script
    rep: dict = {"meta": {"date": datetime.datetime.now().isoformat(timespec="seconds"), "smoke": a.smoke,
                          "budget_s": budget, "argv": sys.argv, "commit": _commit(), "python": a.python},
                 "parts": {}}
    import torch  # (imported with optloom already; the check itself never touches the device)

    clock.log(f"GPU check: {len(parts)} parts in {budget:.0f} s ({'smoke, CPU' if a.smoke else 'device'}); "
              f"Python {sys.version.split()[0]}, torch {torch.__version__}; reports in {out}; work in {work}")
    signal.signal(signal.SIGTERM, _stop)
    try:
        run_all(parts, rep, budget, clock, out, work, env)
    except Stop as e:
        clock.log(f"stopped by {e}: writing what was measured")
        rep["meta"]["stopped"] = str(e)
    if (work / "pytest-junit.xml").exists():
        (out / "pytest-junit.xml").write_bytes((work / "pytest-junit.xml").read_bytes())
    write(rep, out)
    shutil.rmtree(work, ignore_errors=True)
    clock.log(f"done in {clock.now():.0f} s; {out / 'gpu_check.json'}, {out / 'gpu_check.md'}")
    print(report.summary(rep), flush=True)
    return 124 if "stopped" in rep["meta"] else 0


def run_all(parts: list[Part], rep: dict, budget: float, clock: Clock, out: Path, work: Path,
            env: dict[str, str]) -> None:
    for i, part in enumerate(parts):
        left = budget - clock.now()
        reserve = sum(q.min_s for q in parts[i + 1:])
        # its cap, less what the later parts need at least; never below its own minimum while time is left
        timeout = min(part.cap_s, max(left - reserve, part.min_s), left)
        if timeout < part.min_s:
            rep["parts"][part.name] = {"status": "skipped", "note": f"{left:.0f} s left, needs {part.min_s:.0f}"}
            clock.log(f"{part.name}: skipped ({left:.0f} s left, needs {part.min_s:.0f} s)")
            write(rep, out)
            continue
        clock.log(f"{part.name}: start (timeout {timeout:.0f} s)")
        res = run_part(part, timeout, clock, out / "parts.log", env)
        try:
            merge(rep, part, res, work)
        except Exception as e:  # noqa: BLE001 - a report that cannot be read is recorded, not fatal
            res["merge_error"] = f"{type(e).__name__}: {e}"
        res.pop("_lines", None)
        rep["parts"][part.name] = res
        clock.log(f"{part.name}: {res['status']} in {res['seconds']:.1f} s"
                  + (f" (rc {res['rc']})" if res["status"] == "failed" else ""))
        write(rep, out)


def _commit() -> str | None:
    try:
        res = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10)
        return res.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
