"""Defs on their own: a library file of defs is checked even when no optimizer uses them.

Inlining (:meth:`.rule.RuleChecker.inline`) checks a def fully where it is used; this pass only
catches what is wrong regardless of the call site: unknown stages and calls, unknown names.
"""
from __future__ import annotations

from ..lang import ast as A
from ..lang.diagnostics import Reporter
from ..primitives.registry import all_primitives, did_you_mean, lookup
from .common import INPUTS
from .forms import FORMS


def check_def_names(rep: Reporter, d: A.Def, defs: dict[str, A.Def]) -> None:
    """Unknown stages/calls and unknown value names in a def body (inlining checks the rest)."""
    local = Reporter(rep.source)
    _def_names(local, d, defs)
    rep.diagnostics.extend(sorted(local.diagnostics, key=lambda x: (x.span.line, x.span.col)))


def _def_names(rep: Reporter, d: A.Def, defs: dict[str, A.Def]) -> None:
    known = {p.name for p in d.params} | set(INPUTS) | {"_"} | \
        {n.name for n in A.walk(d.body) if isinstance(n, A.Let | A.StateDecl)}
    prims = [p.name for p in all_primitives()] + list(defs)
    nodes = list(A.walk(d.body))
    stage_names = {id(n.callee) for n in nodes if isinstance(n, A.Stage)}
    for n in nodes:
        if isinstance(n, A.Stage) and isinstance(n.callee, A.Name):
            if lookup(n.callee.id) is None and n.callee.id not in defs and n.callee.id not in FORMS:
                rep.error(f"unknown primitive '{n.callee.id}'", n.callee.span, did_you_mean(n.callee.id, prims))
        elif isinstance(n, A.Stage) and isinstance(n.callee, A.Call | A.Block):
            continue  # the callee itself is visited as a node
        elif isinstance(n, A.Call) and lookup(n.func) is None and n.func not in defs and n.func not in FORMS:
            rep.error(f"unknown primitive '{n.func}'", n.func_span, did_you_mean(n.func, prims))
        elif isinstance(n, A.Name) and n.id not in known and id(n) not in stage_names:
            rep.error(f"unknown name '{n.id}' in def '{d.name}'", n.span,
                      did_you_mean(n.id, sorted(known)) or "a def sees its parameters, its lets, grad and param")
