"""``optloom bench SPEC...``: time compiled specs against torch.optim on the same parameters.

The runner is the ``optloom.benchmarks`` subpackage (also ``python -m optloom.benchmarks``).
Method and tables: docs/performance.md.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..backends import backend_names

PARAM_SETS = ["gpt2-small", "gpt2-mini", "gpt2-tiny", "adamw-10m", "many-small", "muon-large", "muon-small", "tiny"]
SECTIONS = ["machine", "steps", "memory", "compile"]


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="benchmark spec steps against torch.optim (see docs/performance.md)",
                       description="Time the optimizer step of each SPEC against the nearest torch.optim "
                                   "baselines, interleaved, in one process; measure bandwidth, matmul peak, "
                                   "memory and compile time. Run it alone: other torch processes on the "
                                   "same cores wreck the timings.")
    p.add_argument("specs", nargs="*", metavar="SPEC", help="shipped spec name or .opt path (adamw, muon, lion…)")
    p.add_argument("--params", action="append", metavar="SET",
                   help=f"parameter set ({', '.join(PARAM_SETS)}); repeat or comma-separate; "
                        "default per spec: adamw/lion adamw-10m,many-small; muon muon-large,muon-small")
    p.add_argument("--steps", type=int, default=40, help="timed interleaved rounds per case (default 40)")
    p.add_argument("--warmup", type=int, default=5, help="untimed rounds first, incl. the first step (default 5)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's default); always reported")
    p.add_argument("--backend", default="inductor", choices=backend_names())
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--skip", default="", metavar="SECTIONS",
                   help=f"comma-separated sections to skip: {', '.join(SECTIONS)}")
    p.add_argument("--precision", action="append", metavar="POLICY",
                   help="also time the spec under this state precision policy (bf16_sr, q8, q8_linear, q4, "
                        "'exp_avg: bf16_sr, exp_avg_sq: q8', …); repeat or comma-separate; adds the torchao / "
                        "bitsandbytes low-precision AdamW baselines that import (docs/performance.md)")
    p.add_argument("--no-baselines", action="store_true", help="time the optloom step alone")
    p.add_argument("--no-compiled-baselines", action="store_true",
                   help="leave out torch.compile(opt.step) baselines (they compile for tens of seconds)")
    p.add_argument("--case-budget", type=float, default=900,
                   help="seconds per case: fewer rounds (or a skipped case) when the floor estimate "
                        "exceeds it; 0 = no limit (default 900)")
    p.add_argument("--matmul-shapes", metavar="MxKxN,...",
                   help="matmul shapes (default 1024x1024x1024,768x3072x768,768x768x768,768x768x3072)")
    p.add_argument("--stream-floats", type=float, default=1e8,
                   help="fp32 entries per bandwidth vector (default 1e8 = 400 MB each)")
    p.add_argument("--compile-params", default="gpt2-small", choices=PARAM_SETS,
                   help="parameter set of the compile-time table (default gpt2-small)")
    p.add_argument("--compile-counts", default="10,50,all",
                   help="tensor counts of the compile-time table, 'all' = whole set (default 10,50,all)")
    p.add_argument("--compile-specs", help="comma-separated specs for the compile table (default: SPECs)")
    p.add_argument("--probe-steps", type=int, default=1,
                   help="steady steps after the first in each compile probe (default 1; 0 skips)")
    p.add_argument("--json", metavar="FILE", help="write the full report as JSON")
    p.add_argument("--markdown", action="store_true", help="print markdown tables (for docs/performance.md)")
    p.add_argument("--from-json", metavar="FILE", help="render a saved report instead of running")
    p.set_defaults(func=run)


def _split(values) -> list[str]:
    return [v for item in values or [] if item for v in item.split(",") if v]


def run(args: argparse.Namespace) -> int:
    from ..benchmarks import report, runner
    from ..benchmarks.precision import parse as parse_policies

    if args.from_json:
        data = json.loads(Path(args.from_json).read_text())
        print(report.render(data, markdown=args.markdown))
        return 0
    if not args.specs:
        print("optloom bench: give at least one SPEC (or --from-json FILE)", file=sys.stderr)
        return 2
    skip = set(_split([args.skip]))
    unknown = skip - set(SECTIONS)
    if unknown:
        print(f"optloom bench: unknown section(s) {', '.join(sorted(unknown))} in --skip", file=sys.stderr)
        return 2
    params = _split(args.params) or None
    for name in params or []:
        if name not in PARAM_SETS:
            print(f"optloom bench: unknown parameter set {name!r}; choose from {', '.join(PARAM_SETS)}",
                  file=sys.stderr)
            return 2
    counts = [None if c == "all" else int(c) for c in _split([args.compile_counts])]
    cfg = runner.Config(specs=args.specs, params=params, steps=args.steps, warmup=args.warmup,
                        threads=args.threads, backend=args.backend, device=args.device,
                        sections=tuple(s for s in SECTIONS if s not in skip),
                        stream_floats=int(args.stream_floats), compile_params=args.compile_params,
                        compile_counts=counts, compile_specs=_split([args.compile_specs]) or None,
                        baselines=not args.no_baselines, compiled_baselines=not args.no_compiled_baselines,
                        case_budget_s=args.case_budget or None, probe_steps=args.probe_steps,
                        matmul_shapes=[tuple(int(x) for x in s.split("x")) for s in _split([args.matmul_shapes])]
                        or None, precision=parse_policies(args.precision))
    data = runner.run(cfg)
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=1, default=str))
        print(f"wrote {args.json}", file=sys.stderr)
    print(report.render(data, markdown=args.markdown))
    return 0
