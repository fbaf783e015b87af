"""``optloom list``: every registered primitive, grouped by family, with signature and summary."""
from __future__ import annotations

import argparse
import json
import sys


def add_parser(sub) -> None:
    p = sub.add_parser("list", help="list the primitives a spec can use (or, with --specs, the shipped specs)")
    p.add_argument("--specs", action="store_true", help="list the shipped specs and their optimizers")
    p.add_argument("--family", "-f", metavar="FAMILY", help="only this family (e.g. moments)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except BrokenPipeError:  # `optloom list | head`
        sys.stderr.close()
        return 0


def _run(args: argparse.Namespace) -> int:
    if args.specs:
        return _list_specs()
    from ..primitives.docs import families, primitive_info
    from ..primitives.registry import did_you_mean

    fams = families()
    if args.family:
        if args.family not in fams:
            hint = did_you_mean(args.family, list(fams))
            print(f"error: no primitive family '{args.family}'" + (f"; {hint}" if hint else "")
                  + f" (families: {', '.join(fams)})", file=sys.stderr)
            return 1
        fams = {args.family: fams[args.family]}
    if args.json:
        print(json.dumps([primitive_info(p) for prims in fams.values() for p in prims], indent=2, ensure_ascii=False))
        return 0
    for k, (fam, prims) in enumerate(fams.items()):
        if k:
            print()
        print(f"{fam}:")
        for p in prims:
            tags = [t for t, on in (("stateful: " + ", ".join(s.name for s in p.state), p.stateful),
                                    ("matrix", p.needs_matrix), ("writes param", p.writes_param)) if on]
            print(f"  {p.signature_text()}" + (f"  [{'; '.join(tags)}]" if tags else ""))
            if p.summary:
                print(f"      {p.summary}")
    return 0


def _list_specs() -> int:
    """Each shipped spec: its optimizers and the first line of its header comment."""
    from ..lang.loader import SHIPPED, shipped_names
    from ..lang.parser import parse

    for name in shipped_names():
        text = (SHIPPED / f"{name}.opt").read_text()
        header = next((ln.lstrip("# ").strip() for ln in text.splitlines() if ln.startswith("#")), "")
        opts = ", ".join(o.name for o in parse(text).optimizers)
        print(f"{name:14s} [{opts}]  {header}")
    return 0
