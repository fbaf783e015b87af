"""``optloom check FILE...``: exit 0 when every spec is clean, 1 on errors."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("check", help="check spec files and print compiler-style diagnostics")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--quiet", "-q", action="store_true", help="print errors only")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..check.program import check_source
    from ..lang.diagnostics import Diagnostic, Span

    failed = False
    for f in args.files:
        try:
            data = Path(f).read_bytes()
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as e:
                diags = [Diagnostic("error", f"spec is not UTF-8 text (byte {e.start})", Span(file=f))]
            else:
                diags = check_source(text, f)
        except OSError as e:
            diags = [Diagnostic("error", f"cannot read spec: {e.strerror}", Span(file=f))]
        for d in diags:
            if d.severity == "error" or not args.quiet:
                print(d.render(), file=sys.stderr)
        errors = sum(d.severity == "error" for d in diags)
        failed |= errors > 0
        if not args.quiet:
            print(f"{f}: {'ok' if not errors else f'{errors} error(s)'}")
    return 1 if failed else 0
