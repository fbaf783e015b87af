"""``optloom`` command line. Each subcommand lives in its own module exposing
``add_parser(subparsers)`` (which sets ``func``) and is listed in :data:`COMMANDS`."""
from __future__ import annotations

import argparse
import importlib
import sys

from ..dsl.diagnostics import SpecError

# subcommand modules, in the order `optloom --help` lists them
COMMANDS = ["check", "fmt", "list", "show"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="optloom", description="optimizer specs for PyTorch: check, inspect, train")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
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
