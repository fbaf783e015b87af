"""Cold vs warm second-process start of the inductor backend (issue 5: warm first step ≤ 5 s).

For each spec: one cold probe (fresh ``TORCHINDUCTOR_CACHE_DIR``, which also holds optloom's
compiled-step cache), then ``--repeat`` rounds of two warm probes on the same cache directory,
interleaved so that machine load hits both alike:

- ``step cache``: optloom's compiled-step cache on (the default): the step is loaded from one file;
- ``inductor caches only``: ``OPTLOOM_COMPILE_CACHE=0``: Dynamo traces again and hits
  AOTAutograd's and Inductor's on-disk caches (the behaviour before the step cache).

Each probe is a fresh interpreter (``python -m benchmarks.compile_time``), run one at a time.
Reported per row: the median over the rounds of the first step's wall time, its CPU time (this
process only: less sensitive to other processes on the machine than wall time, but it misses the
C++ compiler and the ISA probes Inductor runs in subprocesses), the steady step, the first step
minus the steady step ("start overhead") and the whole process's wall time (interpreter start,
``import torch``, building the parameters included).

    python -m benchmarks.warm_start --specs adamw,muon --params gpt2-small --repeat 3 --threads 2
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile

from .compile_time import run_probe


def _median(rows: list[dict], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def measure(specs: list[str], params: str, repeat: int, threads: int, device: str | None,
            log=print) -> list[dict]:
    out = []
    for spec in specs:
        cache = tempfile.mkdtemp(prefix="optloom-warm-start-")
        try:
            log(f"  {spec} on {params}: cold")
            cold = run_probe(spec, params, None, cache, threads, device, 1)
            rows: dict[str, list[dict]] = {"step cache": [], "inductor caches only": []}
            for i in range(repeat):
                for mode, env in (("step cache", {}), ("inductor caches only", {"OPTLOOM_COMPILE_CACHE": "0"})):
                    log(f"  {spec} on {params}: warm, {mode} ({i + 1}/{repeat})")
                    rows[mode].append(run_probe(spec, params, None, cache, threads, device, 1, env=env))
            for mode, rs in [("cold", [cold]), *rows.items()]:
                errors = [r["error"] for r in rs if "error" in r]
                first, steady = _median(rs, "first_step_s"), _median(rs, "steady_step_ms")
                out.append({"spec": spec, "params": params, "mode": mode, "n": len(rs) - len(errors),
                            "first_step_s": first, "first_step_cpu_s": _median(rs, "first_step_cpu_s"),
                            "steady_step_ms": steady,
                            "overhead_s": None if first is None or steady is None else first - steady / 1e3,
                            "compile_s": _median(rs, "compile_s"),
                            "process_wall_s": _median(rs, "process_wall_s"),
                            "step_cache": sorted({e for r in rs for e in r.get("step_cache", [])}),
                            "errors": errors[:1]})
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    return out


def render(rows: list[dict]) -> str:
    def f(v, fmt="{:.2f}"):
        return "—" if v is None else fmt.format(v)

    lines = ["| spec | params | start | runs | first step s | first step CPU s | steady step ms | "
             "start overhead s | compile s | process wall s | step cache |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['spec']} | {r['params']} | {r['mode']} | {r['n']} | {f(r['first_step_s'])} | "
                     f"{f(r['first_step_cpu_s'])} | {f(r['steady_step_ms'], '{:.1f}')} | {f(r['overhead_s'])} | "
                     f"{f(r['compile_s'])} | {f(r['process_wall_s'])} | {', '.join(r['step_cache']) or '—'} |")
        if r["errors"]:
            lines.append(f"|  |  | error: {r['errors'][0][-300:]!r} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--specs", default="adamw,muon")
    p.add_argument("--params", default="gpt2-small")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device")
    p.add_argument("--json")
    a = p.parse_args(argv)
    rows = measure(a.specs.split(","), a.params, a.repeat, a.threads, a.device,
                   log=lambda m: print(m, file=sys.stderr, flush=True))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    print(render(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
