"""Assemble an export: the class docstring (spec text, hash, update rule), imports, the copied
primitives and helpers, the standalone runtime, the spec's tables and rule functions, and the
optimizer class with the spec's hyperparameters as keyword arguments."""
from __future__ import annotations

import ast
import collections
import keyword
import math
import re
import sys
import typing
from pathlib import Path

import torch

from ..check.program import Program
from ..primitives.context import Ctx
from ..primitives.reductions import group_combine
from ..primitives.registry import State
from .collect import Collector, ExportError
from .pysource import docstring, literal
from .rules import RuleWriter, rule_source
from .tables import constraints_table, hyperparams_table, rule_entry, selector_function, states_table

MARKER = "# ---- standalone runtime (copied into every export) ----"
TEMPLATES = ("standalone.py", "standalone_optim.py")
GENERATED = {"SPEC_NAME", "SPEC_HASH", "SPEC_FILE", "HYPERPARAMS", "CONSTRAINTS", "STATES", "RULES"}


def template_parts() -> list[str]:
    """The runtime's text: each template module below its marker line."""
    out = []
    for name in TEMPLATES:
        text = (Path(__file__).parent / name).read_text()
        out.append(text[text.index(MARKER) + len(MARKER):].strip("\n") + "\n")
    return out


def top_level_names(text: str) -> set[str]:
    names: set[str] = set()
    for stmt in ast.parse(text).body:
        if isinstance(stmt, (ast.FunctionDef, ast.ClassDef)):
            names.add(stmt.name)
        elif isinstance(stmt, ast.Assign):
            names |= {t.id for t in stmt.targets if isinstance(t, ast.Name)}
    return names


def class_name_of(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part) or "Exported"


def build(program: Program, class_name: str | None = None, command: str = "") -> str:
    """The exported module's text for a checked spec."""
    version = getattr(sys.modules.get("optloom"), "__version__", "?")
    cls = class_name or class_name_of(program.name)
    if not cls.isidentifier() or keyword.iskeyword(cls):
        raise ExportError(f"'{cls}' is not a Python class name")
    templates = template_parts()
    reserved = set().union(*(top_level_names(t) for t in templates)) | GENERATED | {cls}
    reserved |= {f"rule_{r.label}" for r in program.rules} | {f"select_{r.label}" for r in program.rules}
    col = Collector(reserved)
    # what the runtime itself uses, claimed first so that it keeps these names
    for value in (torch, math, re):
        if col.module(value) != value.__name__:
            raise ExportError(f"internal: the name '{value.__name__}' is taken")
    col.preimport("defaultdict", "from collections import defaultdict", collections.defaultdict)
    col.preimport("Any", "from typing import Any, Callable, NamedTuple", typing.Any)
    col.preimport("Callable", "from typing import Any, Callable, NamedTuple", typing.Callable)
    col.preimport("NamedTuple", "from typing import Any, Callable, NamedTuple", typing.NamedTuple)
    roots = [Ctx, State] + ([group_combine] if any(r.reductions for r in program.rules) else [])
    for value in roots:
        if col.obj(value) != value.__name__:
            raise ExportError(f"internal: the name '{value.__name__}' is taken")
    writers = [RuleWriter(r, col, set(), program.ir.source) for r in program.rules]
    for w in writers:
        w.taken = reserved | set(col.taken)
    rule_fns = [w.write() for w in writers]
    stateful = {k: v for w in writers for k, v in w.states.items()}
    states = states_table(stateful, col)  # may copy initializers: before the pieces are written out
    pieces = col.ordered()
    hypers = set(program.hyperparams)
    parts = [
        f'"""{cls}: the optloom spec \'{program.name}\' as a standalone PyTorch optimizer (see {cls}\'s docstring).\n\n'
        f"Exported by optloom {version}{f' (`{command}`)' if command else ''}. It depends on torch alone.\n"
        f'"""',
        "from __future__ import annotations",
        "\n".join(sorted(set(col.imports.values()), key=lambda s: (s.startswith("from"), s))),
    ]
    module = None
    for p in pieces:
        if p.module != module:
            module = p.module
            parts.append(f"# ---- from {module.replace('.', '/')}.py " + "-" * max(4, 80 - len(module)))
        parts.append(p.text.rstrip("\n"))
    parts += [f"# ---- the step's helpers (optloom/export/standalone.py) " + "-" * 30, templates[0].rstrip("\n")]
    parts += ["# ---- the spec " + "-" * 70,
              f"SPEC_NAME = {literal(program.name)}\nSPEC_HASH = {literal(program.hash)}  # optloom's hash of the canonical spec text",
              hyperparams_table(program).rstrip("\n"), constraints_table(program).rstrip("\n"),
              states.rstrip("\n")]
    parts += [selector_function(r, hypers).rstrip("\n") for r in program.rules]
    parts += [fn.rstrip("\n") for fn in rule_fns]
    parts.append("RULES = [  # in order: a parameter takes the first rule whose selector holds\n"
                 + "\n".join(rule_entry(program, r, w.fn_name) for r, w in zip(program.rules, writers)) + "\n]")
    parts += ["# ---- the optimizer (optloom/export/standalone_optim.py) " + "-" * 30, templates[1].rstrip("\n")]
    parts.append(optimizer_class(program, cls))
    return "\n\n\n".join(p for p in parts if p.strip()) + "\n"


def optimizer_class(program: Program, cls: str) -> str:
    hp = program.hyperparams
    names = list(hp)
    explicit = all(n.isidentifier() and not keyword.iskeyword(n) and n not in ("self", "params", "nonfinite")
                   for n in names)
    annotation = {"float": "float", "int": "int", "bool": "bool", "str": "str", "tuple": "tuple"}
    if explicit:
        args = "".join(f"\n                 {n}: {annotation[hp[n].type]}{' | None' if getattr(hp[n], 'optional', False) else ''}"
                       f" = {literal(hp[n].default)}," for n in names)
        sig = f"    def __init__(self, params,{args}\n                 *, nonfinite: str = \"raise\") -> None:"
        pairs = "".join(f"\n            {n}={n}," for n in names)
        call = f"        hyperparams = dict({pairs}\n        )\n        super().__init__(params, hyperparams, nonfinite=nonfinite)"
    else:
        sig = "    def __init__(self, params, *, nonfinite: str = \"raise\", **hyperparams) -> None:"
        call = ("        unknown = [k for k in hyperparams if k not in HYPERPARAMS]\n"
                "        if unknown:\n"
                "            raise TypeError(f\"unknown hyperparameter(s) {unknown}; it has: {', '.join(HYPERPARAMS)}\")\n"
                "        defaults = {k: v[1] for k, v in HYPERPARAMS.items()}\n"
                "        super().__init__(params, {**defaults, **hyperparams}, nonfinite=nonfinite)")
    return "\n".join([f"class {cls}(SpecOptimizer):", docstring(class_doc(program, cls), "    "), "",
                      sig, call]) + "\n"


def class_doc(program: Program, cls: str) -> str:
    hp = program.hyperparams
    lines = [f"The optloom spec '{program.name}' (hash {program.hash}) as a torch.optim.Optimizer.", "",
             f"    opt = {cls}(model.named_parameters(), {next(iter(hp), 'lr')}=...)", "",
             "Hyperparameters live in each param_groups entry under these names; float ones (and tuples of floats",
             "that only feed runtime arguments) reach the step as 0-d float64 tensors, so LR schedulers and edits",
             "never change the code path (`opt.compile()` compiles each rule's step once). Values are checked:",
             "TypeError for a wrong type, ValueError for a value out of a primitive's declared range.", ""]
    lines += [f"    {h.name}: {h.type} = {literal(h.default)}" for h in hp.values()]
    lines += ["", "Update rule: each parameter takes the first rule whose selector holds (give parameters as",
              "(name, tensor) pairs: model.named_parameters(), where selectors read names).", ""]
    for r in program.rules:
        layout = "elementwise, one flat vector" if r.elementwise else "stacked by shape"
        text = rule_source(r, program.ir.source) or f"{r.label}: {r.selector_text} => ..."
        lines += [f"    {ln}" for ln in text.splitlines()]
        lines += [f"      ({layout}; state: {', '.join(s.name for s in r.states) or 'none'})", ""]
    lines += ["state_dict() is optloom's format: the same state names and `step`, plus",
              "{'optloom': {'format': 1, 'spec', 'hash'}}; a checkpoint moves between this class and",
              f"optloom.optimizer({program.name!r}) both ways.", "", f"The spec ({Path(program.ir.file).name}):", ""]
    lines += [f"    {ln}" if ln.strip() else "" for ln in program.ir.source.rstrip().splitlines()]
    return "\n".join(lines)
