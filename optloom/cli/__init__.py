"""``optloom`` command line. Each subcommand lives in its own module ``<name>_cmd.py`` exposing
``add_parser(subparsers)`` (which sets ``func``); modules are discovered by name."""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from ..lang.diagnostics import SpecError

ORDER = ["check", "fmt", "list", "show", "train", "ablate", "diff", "demo", "bench"]


def _commands() -> list[str]:
    found = {m.name[: -len("_cmd")] for m in pkgutil.iter_modules(__path__) if m.name.endswith("_cmd")}
    return sorted(found, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="optloom", description="optimizer specs for PyTorch: check, inspect, train")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _commands():
        importlib.import_module(f"optloom.cli.{name}_cmd").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except SpecError as e:
        print(e.render(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
