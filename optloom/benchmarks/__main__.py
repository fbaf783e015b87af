"""``python -m benchmarks SPEC...`` — the same command line as ``optloom bench``."""
import argparse
import sys

from optloom.cli import bench_cmd

parser = argparse.ArgumentParser(prog="python -m benchmarks")
bench_cmd.add_parser(parser.add_subparsers(dest="command"))
sys.exit(bench_cmd.run(parser.parse_args(["bench", *sys.argv[1:]])))
