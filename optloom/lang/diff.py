"""Structural diff: what differs between two optimizers of the language, as ASTs (not as text);
what ``optloom diff A B`` prints.

Hyperparameters: added, removed, changed (type or default). Rules (matched by label): added,
removed, moved, selector changed, and per rule the ``let``/``state`` statements and the main
pipeline's stages added, removed or changed (stages are matched by label, else by primitive).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass

from . import ast as A
from .printer import print_expr


def _param_text(p: A.Param) -> str:
    typ = f": {p.type}" if p.type else ""
    return f"{p.name}{typ}" + (f" = {print_expr(p.default)}" if p.default is not None else "")


def pipeline_stages(expr: A.Node) -> tuple[str, list[A.Stage]]:
    """``head |> s1 |> s2`` -> (head text, [s1, s2])."""
    stages = []
    while isinstance(expr, A.Pipe):
        stages.append(expr.stage)
        expr = expr.left
    return print_expr(expr), list(reversed(stages))


def stage_text(s: A.Stage) -> str:
    body = print_expr(s.callee)
    return f"{s.label}: {body}" if s.label else body


def _stage_key(s: A.Stage) -> str:
    if s.label:
        return f"label:{s.label}"
    c = s.callee
    return f"call:{c.func}" if isinstance(c, A.Call) else f"name:{c.id}" if isinstance(c, A.Name) else "block"


def _stmt_key(s: A.Node) -> str:
    return f"{type(s).__name__}:{getattr(s, 'name', '')}"


def _stmt_text(s: A.Node) -> str:
    if isinstance(s, A.Let):
        return f"let {s.name} = {print_expr(s.value)}"
    if isinstance(s, A.StateDecl):
        return f"state {s.name}{': ' + s.dtype if s.dtype else ''} = {print_expr(s.init)}"
    return f"{s.name} <- {print_expr(s.value)}"


def _seq_diff(old: list, new: list, key, text, what: str) -> list[str]:
    """Aligned by key; a replaced run pairs items one to one as 'changed'."""
    out = []
    sm = difflib.SequenceMatcher(a=[key(x) for x in old], b=[key(x) for x in new], autojunk=False)
    for op, i1, i2, j1, j2 in sm.get_opcodes():
        if op == "equal":
            for a, b in zip(old[i1:i2], new[j1:j2]):
                if text(a) != text(b):
                    out.append(f"~ {what} {text(a)}  ->  {text(b)}")
            continue
        pairs = min(i2 - i1, j2 - j1) if op == "replace" else 0
        for a, b in zip(old[i1:i1 + pairs], new[j1:j1 + pairs]):
            out.append(f"~ {what} {text(a)}  ->  {text(b)}")
        out += [f"- {what} {text(a)}" for a in old[i1 + pairs:i2]]
        out += [f"+ {what} {text(b)}  (position {j + 1})" for j, b in enumerate(new[j1 + pairs:j2], j1 + pairs)]
    return out


def diff_rules(a: A.Rule, b: A.Rule) -> list[str]:
    out = []
    sa = "*" if a.selector is None else print_expr(a.selector)
    sb = "*" if b.selector is None else print_expr(b.selector)
    if sa != sb:
        out.append(f"~ selector {sa}  ->  {sb}")
    out += _seq_diff(a.body.stmts, b.body.stmts, _stmt_key, _stmt_text, "statement")
    ha, stages_a = pipeline_stages(a.body.result)
    hb, stages_b = pipeline_stages(b.body.result)
    if ha != hb:
        out.append(f"~ pipeline input {ha}  ->  {hb}")
    out += _seq_diff(stages_a, stages_b, _stage_key, stage_text, "stage")
    return out


@dataclass
class SpecDiff:
    lines: list[str]

    @property
    def same(self) -> bool:
        return not self.lines


def diff_optimizers(a: A.Optimizer, b: A.Optimizer) -> SpecDiff:
    out: list[str] = []
    if a.name != b.name:
        out.append(f"optimizer name: {a.name}  ->  {b.name}")
    pa, pb = {p.name: p for p in a.params}, {p.name: p for p in b.params}
    hyper = [f"  + {_param_text(pb[n])}" for n in pb if n not in pa]
    hyper += [f"  - {_param_text(pa[n])}" for n in pa if n not in pb]
    hyper += [f"  ~ {_param_text(pa[n])}  ->  {_param_text(pb[n])}" for n in pa
              if n in pb and _param_text(pa[n]) != _param_text(pb[n])]
    if hyper:
        out += ["hyperparameters:", *hyper]
    ra, rb = {r.label: r for r in a.rules}, {r.label: r for r in b.rules}
    rules: list[str] = []
    for r in b.rules:
        if r.label not in ra:
            sel = "*" if r.selector is None else print_expr(r.selector)
            rules.append(f"  + rule {r.label}: {sel}  ({len(pipeline_stages(r.body.result)[1])} stages)")
    for r in a.rules:
        if r.label not in rb:
            rules.append(f"  - rule {r.label}")
    order_a = [r.label for r in a.rules if r.label in rb]
    order_b = [r.label for r in b.rules if r.label in ra]
    if order_a != order_b:
        rules.append(f"  ~ rule order (first match wins): {', '.join(order_a)}  ->  {', '.join(order_b)}")
    for r in a.rules:
        if r.label in rb:
            changes = diff_rules(r, rb[r.label])
            if changes:
                rules += [f"  ~ rule {r.label}:", *(f"      {c}" for c in changes)]
    if rules:
        out += ["rules:", *rules]
    return SpecDiff(out)
