"""``optloom fmt FILE...``: rewrite specs in canonical form; ``--check`` only reports (for CI).

Comments on their own lines between top-level items (the header block, the comment above a
``def`` or ``optimizer``, the end of the file) are kept; a comment anywhere else is an error
(exit 1, the file is left alone) unless ``--strip-comments`` is given.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("fmt", help="rewrite spec files in canonical form")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--check", action="store_true",
                   help="change nothing; list files that would change and exit 1 if any")
    p.add_argument("--strip-comments", action="store_true",
                   help="drop comments that fmt cannot keep (inside optimizers/defs, end of line)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..lang.comments import format_source
    from ..lang.diagnostics import SpecError

    status = 0
    for f in args.files:
        path = Path(f)
        try:
            data = path.read_bytes()
            text = data.decode("utf-8")
        except OSError as e:
            print(f"{f}:1:1: error: cannot read spec: {e.strerror}", file=sys.stderr)
            status = 1
            continue
        except UnicodeDecodeError as e:
            print(f"{f}:1:1: error: spec is not UTF-8 text (byte {e.start})", file=sys.stderr)
            status = 1
            continue
        try:
            new, errors = format_source(text, f, strip_comments=args.strip_comments)
        except SpecError as e:
            print(e.render(), file=sys.stderr)
            status = 1
            continue
        if errors:
            for d in errors:
                print(d.render(), file=sys.stderr)
            print(f"{f}: not formatted", file=sys.stderr)
            status = 1
            continue
        if new == text:
            continue
        if args.check:
            print(f"would reformat {f}")
            status = 1
        else:
            path.write_text(new)
            print(f"reformatted {f}")
    return status
