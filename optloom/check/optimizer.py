"""Optimizer-level checks: hyperparameters, rule labels and selectors (satisfiable, not shadowed);
each rule body is checked by :class:`~.rule.RuleChecker` and finished by :func:`~.finish.finish_rule`."""
from __future__ import annotations

import re
from typing import Any

from ..lang import ast as A
from ..lang.diagnostics import Reporter
from ..primitives.registry import did_you_mean
from . import ir, selectors
from .common import HYPER_TYPES, INPUTS, Abort
from .finish import finish_rule
from .rule import RuleChecker
from .consts import ConstError, const_value, type_of_value

# hyperparameters the runtime reads (a spec's default precision policy, docs/runtime.md), not the rules
RUNTIME_OPTIONS = frozenset({"state_precision", "param_precision"})


def check_hyperparams(rep: Reporter, params: list[A.Param], rejected: set[str] | None = None
                      ) -> dict[str, ir.HyperParam]:
    """Typed hyperparameters; the names of declarations with errors go to ``rejected``."""
    out: dict[str, ir.HyperParam] = {}
    rejected = set() if rejected is None else rejected
    for p in params:
        if p.name not in out:
            rejected.add(p.name)  # removed again below once the declaration checks out
        if p.name in out:
            rep.error(f"hyperparameter '{p.name}' declared twice", p.span)
            continue
        if p.name in INPUTS or p.name in selectors.SELECTOR_NAMES:
            rep.error(f"'{p.name}' is reserved and cannot be a hyperparameter", p.span)
            continue
        optional = p.type is not None and p.type.endswith("?")
        declared = p.type[:-1] if optional else p.type
        if declared is not None and declared not in HYPER_TYPES:
            rep.error(f"unknown type '{p.type}'", p.span, did_you_mean(declared, list(HYPER_TYPES)) or
                      f"types are {', '.join(HYPER_TYPES)} (optional: `float?`, …)")
            continue
        if p.default is None:
            rep.error(f"hyperparameter '{p.name}' needs a default value", p.span,
                      f"an optional one defaults to none: `{p.name}: float? = none`" if optional else None)
            continue
        try:
            value = const_value(p.default)
        except ConstError as err:
            rep.error(f"default of '{p.name}': {err}", p.default.span)
            continue
        if value is None:
            if not optional:
                rep.error(f"hyperparameter '{p.name}' defaults to none but is not optional", p.default.span,
                          f"declare it optional with its type: `{p.name}: {declared or 'float'}? = none`")
                continue
            out[p.name] = ir.HyperParam(p.name, declared, None, p.span, optional=True)  # type: ignore[arg-type]
            rejected.discard(p.name)
            continue
        inferred = type_of_value(value)
        typ = declared or inferred
        if typ == "float" and inferred == "int":
            value = float(value)
        elif typ != inferred:
            rep.error(f"hyperparameter '{p.name}' is declared {typ} but its default is {inferred}", p.default.span)
            continue
        if isinstance(value, list):
            rep.error(f"hyperparameter '{p.name}': lists are not hyperparameters; use a tuple", p.default.span)
            continue
        out[p.name] = ir.HyperParam(p.name, typ, value, p.span, optional=optional)
        rejected.discard(p.name)
    return out


def _names_in(rule: A.Rule) -> set[str]:
    """Every identifier mentioned in a rule (selector and body)."""
    roots = [rule.body] + ([rule.selector] if rule.selector is not None else [])
    nodes = [n for r in roots for n in A.walk(r)]
    return {n.id for n in nodes if isinstance(n, A.Name)} | {n.func for n in nodes if isinstance(n, A.Call)}


def check_optimizer(rep: Reporter, opt: A.Optimizer, defs: dict[str, A.Def], source: str, file: str) -> ir.OptimizerIR:
    rejected: set[str] = set()
    hypers = check_hyperparams(rep, opt.params, rejected)
    hyper_defaults = {k: h.default for k, h in hypers.items()}
    constraints: list[ir.Constraint] = []
    used: set[str] = set()
    rules: list[ir.RuleIR] = []
    labels: dict[str, A.Rule] = {}
    catch_all: A.Rule | None = None
    if not opt.rules:
        rep.error(f"optimizer '{opt.name}' has no rules", opt.span, "add `all => grad |> ... |> apply(lr)`")
    for rule in opt.rules:
        if rule.label in labels:
            rep.error(f"rule label '{rule.label}' used twice (first at line {labels[rule.label].span.line})", rule.span)
        labels[rule.label] = rule
        if catch_all is not None:
            rep.error(f"rule '{rule.label}' can never match: rule '{catch_all.label}' (line {catch_all.span.line}) "
                      "above it takes every parameter", rule.span, "move catch-all rules last")
        ndims = _check_selector(rep, rule, hypers, hyper_defaults, used)
        if ndims is None:
            used.update(_names_in(rule))
            continue
        if rule.selector is None:
            catch_all = rule
        checker = RuleChecker(rep, hypers, defs, rule, ndims, constraints, used)
        checker.rejected = rejected
        n_errors = sum(d.severity == "error" for d in rep.diagnostics)
        try:
            result = checker.block(rule.body, {}, top=True)
        except Abort:
            result = None
        if result is None or sum(d.severity == "error" for d in rep.diagnostics) > n_errors:
            used.update(_names_in(rule))  # the rule has errors: count what it mentions as used
        if result is None:
            continue
        rir = finish_rule(rep, rule, checker, result)
        if rir is not None:
            rules.append(rir)
    for name, h in hypers.items():
        if name not in used and name not in RUNTIME_OPTIONS:
            rep.warning(f"hyperparameter '{name}' is never used", h.span)
    return ir.OptimizerIR(opt.name, hypers, rules, constraints, source, file, opt.span)


def _check_selector(rep: Reporter, rule: A.Rule, hypers: dict[str, ir.HyperParam], defaults: dict[str, Any],
                    used: set[str]) -> frozenset[int] | None:
    if rule.selector is None:
        return frozenset(selectors.NDIMS)
    for n in A.walk(rule.selector):
        if isinstance(n, A.Name) and n.id not in selectors.SELECTOR_NAMES:
            if n.id in hypers and hypers[n.id].structural:
                used.add(n.id)
                continue
            hint = did_you_mean(n.id, [*selectors.SELECTOR_NAMES, *hypers]) or \
                "selectors use ndim, shape, numel, name, group and structural hyperparameters"
            rep.error(f"unknown name '{n.id}' in the selector of rule '{rule.label}'", n.span, hint)
            return None
        if isinstance(n, A.Match):
            try:
                re.compile(n.pattern)
            except re.error as err:
                rep.error(f"invalid regular expression: {err}", n.span)
                return None
    try:
        # hyperparameters can be overridden per optimizer and per group: unknown to the static check
        ndims = selectors.admitted_ndims(rule.selector, {k: selectors.UNKNOWN for k in defaults})
    except selectors.SelectorError as err:
        rep.error(f"{err} (rule '{rule.label}')", rule.selector.span)
        return None
    if not ndims:
        rep.error(f"rule '{rule.label}' can never match: its selector is false for every parameter",
                  rule.selector.span)
        return None
    return ndims
