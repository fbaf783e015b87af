"""Stage edits: derive a spec variant at the AST level by removing or replacing a labeled stage.

``grad |> mom: ema(0.9) |> sign |> apply(lr)`` with ``remove("mom")`` becomes
``grad |> sign |> apply(lr)`` (the stage is spliced out of the pipe); ``replace("mom",
"normalize()")`` parses the replacement as one stage and puts it in place, keeping the label.
Every optimizer, rule and def of the module is rewritten; the result is printed back to spec
text (``optloom.lang.printer``) and checked like any spec. Nothing is ever evaluated.
"""
from __future__ import annotations

from typing import Any

from . import ast as A
from .diagnostics import Diagnostic, Span, SpecError
from .parser import parse
from .printer import print_module


class LabelError(ValueError):
    """A label that no stage of the spec carries."""


def stage_labels(module: A.Module) -> list[str]:
    """Every stage label in the module, in source order, without repeats."""
    labels = (n.label for n in A.walk(module) if isinstance(n, A.Stage) and n.label)
    return list(dict.fromkeys(labels))


def _require(module: A.Module, label: str) -> None:
    labels = stage_labels(module)
    if label not in labels:
        have = (f"labels in this spec: {', '.join(labels)}" if labels else
                "this spec labels no stage; label one in the spec, e.g. `|> ortho: newton_schulz(5)`")
        raise LabelError(f"no stage labeled '{label}' ({have})")


def remove_stage(module: A.Module, label: str) -> A.Module:
    """Splice every stage labeled ``label`` out of its pipe (``x |> label: f`` becomes ``x``)."""
    _require(module, label)

    def fn(node: A.Node) -> A.Node:
        if isinstance(node, A.Pipe) and node.stage.label == label:
            return node.left
        return node

    return A.rewrite(module, fn)


def parse_stage(text: str) -> A.Stage:
    """One pipeline stage from text (``normalize()``, ``scale(0.5)``, ``ortho: polar()``, ``{ ... }``)."""
    wrapped = f"optimizer __replacement__() {{\n  all => grad |> {text}\n}}\n"
    try:
        module = parse(wrapped, "<--replace>")
    except SpecError as e:
        raise SpecError([Diagnostic("error", f"'{text}' is not one pipeline stage: "
                                             f"{e.errors[0].message if e.errors else 'parse error'}",
                                    Span(file="<--replace>"))]) from None
    opts = module.optimizers
    ok = (len(module.items) == 1 and len(opts) == 1 and len(opts[0].rules) == 1
          and not opts[0].rules[0].body.stmts)
    result = opts[0].rules[0].body.result if ok else None
    if not (isinstance(result, A.Pipe) and isinstance(result.left, A.Name) and result.left.id == "grad"):
        raise SpecError([Diagnostic("error", f"'{text}' is not one pipeline stage "
                                             "(write a call such as `normalize()` or a `{ ... }` block)",
                                    Span(file="<--replace>"))])
    return result.stage


def replace_stage(module: A.Module, label: str, replacement: str | A.Stage) -> A.Module:
    """Put ``replacement`` (text parsed as one stage) where each stage labeled ``label`` is.
    The replacement keeps ``label`` unless it carries its own."""
    _require(module, label)
    new = parse_stage(replacement) if isinstance(replacement, str) else replacement
    if new.label is None:
        new = new.model_copy(update={"label": label})

    def fn(node: A.Node) -> A.Node:
        if isinstance(node, A.Pipe) and node.stage.label == label:
            return node.model_copy(update={"stage": new})
        return node

    return A.rewrite(module, fn)


def derive(source: str, file: str, remove: str | None = None, replace: tuple[str, str] | None = None) -> str:
    """Spec text with one stage removed or replaced (printed canonically)."""
    module = parse(source, file)
    if remove is not None:
        module = remove_stage(module, remove)
    if replace is not None:
        module = replace_stage(module, *replace)
    return print_module(module)


def grid(sets: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The cartesian product of ``{key: [values]}``, in the order given (one empty dict if no keys)."""
    combos: list[dict[str, Any]] = [{}]
    for key, values in sets.items():
        combos = [{**c, key: v} for c in combos for v in values]
    return combos
