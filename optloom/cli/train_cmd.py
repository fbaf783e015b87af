"""``optloom train SPEC... --task TASK``: train each spec (x seeds), print a table, write a run folder."""
from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import Callable

import torch

from ..lang.diagnostics import SpecError
from ..backends import backend_names


def add_common_args(p: argparse.ArgumentParser, default_task: str | None = None) -> None:
    """Options shared by ``train``, ``ablate`` and ``demo``."""
    p.add_argument("--task", default=default_task, required=default_task is None,
                   help="charlm | charlm-shakespeare | digits | lsq | FILE.py:NAME (a task of your own)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps per run (default: the task's)")
    p.add_argument("--seeds", type=int, default=1, metavar="K", help="seeds 0..K-1 per spec (default 1)")
    p.add_argument("--target", type=float, default=None,
                   help="validation loss for the 'to target' column (default: the task's)")
    p.add_argument("--backend", choices=backend_names(), default="eager")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch CPU threads (default: torch's; 1 is faster on a busy shared machine)")
    p.add_argument("--out", default=None, metavar="DIR", help="run folder (default runs/<timestamp>-<task>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--probe", action="store_true",
                   help="record per rule and step the update's RMS, the gradient's RMS and (matrix rules) the "
                        "update's top singular value: log.csv columns RULE.STAT, probe.png (its cost is printed)")
    p.add_argument("--log", action="append", default=[], choices=["tensorboard"],
                   help="also log every run's scalars: tensorboard (event files in RUN/tensorboard; needs the "
                        "tensorboard package)")


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train specs on a task; print a table, write a run folder with plots",
                       description="Train every SPEC (a shipped name, a .opt file or spec text) once per seed "
                                   "on a task; print a comparison table and write a run folder.")
    p.add_argument("specs", nargs="+", metavar="SPEC")
    add_common_args(p)
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="hyperparameter override for every spec that has KEY; LABEL.KEY=VALUE for one spec")
    p.set_defaults(func=run)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def fail(msg: str, code: int = 2) -> int:
    print(f"optloom: error: {msg}", file=sys.stderr)
    return code


def build_variants(build: Callable[[], list]) -> list | int:
    """Run ``build`` and turn spec and usage errors into messages and an exit code."""
    from ..train.experiment import UsageError

    try:
        return build()
    except SpecError as e:
        print(e.render(), file=sys.stderr)
        return 1
    except UsageError as e:
        return fail(str(e))


def run_experiment(args: argparse.Namespace, variants: list, title: str = "") -> int:
    """Prepare the task, train every variant x seed, print the table and where things are."""
    from ..train.device import resolve_device
    from ..train.experiment import Experiment, elapsed, new_run_dir
    from ..train.tasks import TaskError, get_task

    start = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    signal.signal(signal.SIGTERM, _terminate)  # a kill ends like Ctrl-C: results.json says so
    if args.steps is not None and args.steps < 1 or args.seeds < 1:
        return fail("--steps and --seeds must be at least 1")
    try:
        device = resolve_device(args.device)
        task = get_task(args.task, device)
        task.prepare()
    except TaskError as e:
        return fail(str(e))
    except RuntimeError as e:
        return fail(f"cannot use device/task: {e}")
    steps = args.steps or task.steps
    target = args.target if args.target is not None else task.target
    out = new_run_dir(task.name, args.out)
    print(f"{title or 'train'}: {len(variants)} spec(s) x {args.seeds} seed(s) x {steps} steps on "
          f"{task.name} ({device}, backend {args.backend}); run folder {out}", file=sys.stderr)
    from ..train.tblog import LogUnavailable

    exp = Experiment(task, variants, list(range(args.seeds)), steps, out, args.backend, target,
                     progress=not args.no_progress, probe=args.probe, log=sorted(set(args.log)))
    try:
        code = exp.run()
    except LogUnavailable as e:
        return fail(str(e))
    exp.show_table()
    cost = exp.probe_cost()
    if cost:
        print(f"\n{cost}")
    print(f"\nrun folder: {out}  ({exp.status}; {elapsed(start)})")
    if "tensorboard" in exp.log:
        print(f"tensorboard: tensorboard --logdir {out / 'tensorboard'}")
    for p in exp.plots:
        print(f"plot: {p}")
    if exp.status == "interrupted":
        print(f"interrupted: {exp.message}; what was done is in {out / 'results.json'}", file=sys.stderr)
    elif code:
        print(f"some runs failed: {exp.message} (details in {out / 'results.json'})", file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    from ..train.experiment import apply_sets, make_variant, unique_labels

    def build() -> list:
        errors: list = []
        variants = []
        for spec in args.specs:
            try:
                variants.append(make_variant(spec))
            except SpecError as e:
                errors.extend(e.diagnostics)
        if errors:
            raise SpecError(errors)
        for v, lab in zip(variants, unique_labels([v.label for v in variants])):
            v.label = lab
        return apply_sets(variants, args.sets)

    variants = build_variants(build)
    if isinstance(variants, int):
        return variants
    return run_experiment(args, variants)
