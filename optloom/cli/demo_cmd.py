"""``optloom demo``: AdamW vs Muon vs ARO on ``charlm`` at the default budget (< 5 minutes on 2 cores)."""
from __future__ import annotations

import argparse
import sys

from .train_cmd import add_common_args, build_variants, run_experiment

#: The demo's contenders and their learning rates on charlm (the best of a small sweep at the
#: default budget, docs/results.md). Keys a spec does not declare are skipped.
DEMO_SPECS = ["adamw", "muon", "aro"]
FALLBACK = "lion"
DEMO_SETTINGS: dict[str, dict[str, float]] = {
    "adamw": {"lr": 1e-3},
    "muon": {"lr": 0.02, "adam_lr": 3e-3},
    "aro": {"lr": 6e-4, "adam_lr": 3e-3},
    "lion": {"lr": 3e-4},
}


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="AdamW vs Muon vs ARO on charlm: a table and a plot in a few minutes",
                       description="Train AdamW, Muon and ARO on the charlm task (a small transformer on the "
                                   "Python standard library's source) and print the comparison table and the "
                                   "plot path. Options as for `optloom train`.")
    add_common_args(p, default_task="charlm")
    p.set_defaults(func=run)


def demo_specs() -> tuple[list[str], str | None]:
    """The shipped specs the demo trains, and a note when ARO is not shipped yet."""
    from ..lang.loader import shipped_names

    names = shipped_names()
    specs = [s for s in DEMO_SPECS if s in names]
    note = None
    if "aro" not in names:
        specs.append(FALLBACK)
        note = f"note: ARO is not among the shipped specs yet; the demo compares against {FALLBACK} instead"
    return specs, note


def run(args: argparse.Namespace) -> int:
    from ..train.experiment import make_variant

    specs, note = demo_specs()
    if note:
        print(note, file=sys.stderr)

    def build() -> list:
        out = []
        for s in specs:
            v = make_variant(s)
            settings = {k: x for k, x in DEMO_SETTINGS.get(s, {}).items() if k in v.hyperparams}
            out.append(make_variant(s, v.label, settings))
        return out

    variants = build_variants(build)
    if isinstance(variants, int):
        return variants
    code = run_experiment(args, variants, title="demo")
    if note:
        print(note)
    return code
