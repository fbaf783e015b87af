"""``optloom export SPEC [--name NAME] [-o FILE]``: the spec as one standalone PyTorch module."""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="write a spec as one standalone Python module (a torch.optim.Optimizer "
                                      "that depends on torch alone)",
                       description="Export SPEC (a shipped name, a .opt file or spec text) as one readable Python "
                                   "module defining a torch.optim.Optimizer subclass: the spec's hyperparameters, "
                                   "routing rules, state names and state_dict format, its step in plain PyTorch. "
                                   "It equals optloom's eager backend to fp32 rounding; see docs/export.md.")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--name", default=None, help="the optimizer to export from a file that defines several")
    p.add_argument("--class-name", default=None, metavar="CLASS",
                   help="the optimizer class's name (default: the optimizer's name in CamelCase)")
    p.add_argument("-o", "--output", default=None, metavar="FILE", help="write here (default: standard output)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..export import ExportError, export

    command = shlex.join(["optloom", "export", args.spec] + (["--name", args.name] if args.name else []))
    try:
        text = export(args.spec, name=args.name, class_name=args.class_name, command=command)
    except ExportError as e:
        print(f"optloom: error: cannot export {args.spec}: {e}", file=sys.stderr)
        return 1
    if args.output is None:
        sys.stdout.write(text)
        return 0
    out = Path(args.output)
    if out.suffix != ".py":
        print(f"optloom: error: {out} should end in .py (it is a Python module)", file=sys.stderr)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out} ({len(text.splitlines())} lines): from {out.stem} import ...", file=sys.stderr)
    return 0
