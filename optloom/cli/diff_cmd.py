"""``optloom diff A B``: structural differences between two specs (exit 0 when the same, 1 when not)."""
from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("diff", help="show structurally what differs between two specs",
                       description="Compare two specs (shipped names, .opt files or spec text): hyperparameters "
                                   "added/removed/changed, rules added/removed, per rule the stages that differ. "
                                   "Exit 0 when they are structurally the same, 1 when they differ.")
    p.add_argument("a", metavar="A")
    p.add_argument("b", metavar="B")
    p.add_argument("--name", default=None, help="which optimizer to compare when a file defines several")
    p.set_defaults(func=run)


def _load(spec: str, name: str | None):
    from ..lang.loader import resolve_spec
    from ..lang.diagnostics import Diagnostic, Span, SpecError
    from ..lang.parser import parse

    source, file = resolve_spec(spec)
    module = parse(source, file)
    opts = [o for o in module.optimizers if name is None or o.name == name]
    if not opts:
        found = ", ".join(o.name for o in module.optimizers) or "none"
        raise SpecError([Diagnostic("error", f"no optimizer{f' named {name!r}' if name else ''} in this spec "
                                             f"(found: {found})", Span(file=file))])
    return module, opts[0], file


def run(args: argparse.Namespace) -> int:
    from ..lang.printer import canonical_hash, print_expr
    from ..lang.diff import diff_optimizers

    ma, oa, fa = _load(args.a, args.name)
    mb, ob, fb = _load(args.b, args.name)
    d = diff_optimizers(oa, ob)
    da, db = {x.name: x for x in ma.defs}, {x.name: x for x in mb.defs}
    defs = [f"  + def {n}" for n in db if n not in da] + [f"  - def {n}" for n in da if n not in db]
    defs += [f"  ~ def {n}: {print_expr(da[n].body.result)}  ->  {print_expr(db[n].body.result)}"
             for n in da if n in db and da[n] != db[n]]
    lines = d.lines + (["defs:", *defs] if defs else [])
    print(f"--- {fa}  ({oa.name}, hash {canonical_hash(ma)})")
    print(f"+++ {fb}  ({ob.name}, hash {canonical_hash(mb)})")
    if not lines:
        print("no structural differences")
        return 0
    print("\n".join(lines))
    return 1
