"""``optloom ablate SPEC --set k=v1,v2 --remove LABEL --replace LABEL=STAGE``: variants vs the base."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from .train_cmd import add_common_args, build_variants, run_experiment


def add_parser(sub) -> None:
    p = sub.add_parser("ablate", help="train a spec next to variants of it (hyperparameter grid, removed or "
                                      "replaced stages)",
                       description="Derive variants of SPEC and train them next to it: --set KEY=V1,V2 is a grid "
                                   "over hyperparameters; --remove LABEL splices the stage labeled LABEL out of its "
                                   "pipe; --replace LABEL=STAGE puts STAGE (parsed as one stage) in its place. "
                                   "Structural variants are crossed with the grid.")
    p.add_argument("spec", metavar="SPEC")
    add_common_args(p)
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=V1,V2",
                   help="values to sweep (a grid over every --set); a single value overrides all variants")
    p.add_argument("--remove", action="append", default=[], metavar="LABEL", help="variant without this stage")
    p.add_argument("--replace", action="append", default=[], metavar="LABEL=STAGE",
                   help="variant with STAGE (e.g. 'normalize()') in place of the stage labeled LABEL")
    p.add_argument("--no-base", action="store_true", help="leave the unmodified spec out of the comparison")
    p.set_defaults(func=run)


def derive_variants(spec: str, removes: list[str], replaces: list[str], sets: list[str],
                    base: bool = True) -> list:
    """The variants of ``optloom ablate`` (each checked like any spec); raises on a bad label or spec."""
    from ..lang.loader import resolve_spec
    from ..train.experiment import UsageError, make_variant, parse_value, split_assignment, split_values
    from ..lang.edits import LabelError, derive, grid

    source, file = resolve_spec(spec)
    if file != "<spec>":  # derived texts keep resolving the spec's own imports
        os.environ["OPTLOOM_SPEC_PATH"] = os.pathsep.join(
            p for p in [str(Path(file).resolve().parent), os.environ.get("OPTLOOM_SPEC_PATH", "")] if p)
    base_variant = make_variant(spec)
    structural: list[tuple[str, str, str]] = [(base_variant.label, spec, source)] if base else []
    try:
        for label in removes:
            structural.append((f"-{label}", text := derive(source, file, remove=label), text))
        for item in replaces:
            if "=" not in item:
                raise UsageError(f"--replace '{item}': expected LABEL=STAGE, e.g. ortho='normalize()'")
            label, stage = (x.strip() for x in item.split("=", 1))
            structural.append((f"{label}={stage}", text := derive(source, file, replace=(label, stage)), text))
    except LabelError as e:
        raise UsageError(f"{spec}: {e}") from None
    if not structural:
        raise UsageError("nothing to compare: --no-base needs --remove or --replace")
    sweep: dict[str, list] = {}
    for item in sets:
        key, raw = split_assignment(item)
        values = [parse_value(v) for v in split_values(raw)]
        if not values:
            raise UsageError(f"--set {item}: no values")
        sweep[key] = values
    varying = [k for k, v in sweep.items() if len(v) > 1]
    variants = []
    for name, spec_arg, text in structural:
        for combo in grid(sweep):
            suffix = " ".join(f"{k}={_fmt(combo[k])}" for k in varying)
            label = f"{name} {suffix}".strip()
            variants.append(make_variant(spec_arg, label, combo, text))
    return variants


def _fmt(v) -> str:
    from ..train.report import format_value

    return format_value(v)


def run(args: argparse.Namespace) -> int:
    variants = build_variants(lambda: derive_variants(args.spec, args.remove, args.replace, args.sets,
                                                      base=not args.no_base))
    if isinstance(variants, int):
        return variants
    return run_experiment(args, variants, title="ablate")
