"""Reference text generated from the primitive registry: ``docs/primitives.md`` and ``optloom list``.

    python -m optloom.primitives.docs > docs/primitives.md

A test compares the committed page with :func:`render_markdown`, so the page cannot go stale.
"""
from __future__ import annotations

import inspect
import sys
import typing
from typing import Any, get_args, get_origin

from .registry import Arg, Primitive, all_primitives, show_value

FAMILY_BLURB = {
    "apply": "Stages that touch the parameter: weight decay and the final update.",
    "elementwise": "Pointwise maps of the update.",
    "init": "Initial values of feedback states (`state NAME = init`).",
    "kronecker": "Kronecker-factored preconditioners: factor statistics and inverse roots.",
    "moments": "Stateful stream primitives: moving averages, momentum, Adam, Lion.",
    "normalizers": "Division of an update by a statistic of itself: norms, row/column norms, Sinkhorn.",
    "precision": "Casts to a named dtype (round-to-nearest, stochastic) and addcmul's once-rounded multiply-add.",
    "orthogonalize": "Orthogonal polar factors of matrices (Newton–Schulz, QDWH, SVD) and QR.",
    "reductions": "Statistics of each parameter (per-parameter scalars) and group reductions.",
    "rotation": "Adaptively rotated frames: the rest of the pipeline runs in a rotated basis.",
    "sampling": "Which parameters of a rule are active this step.",
    "shape": "Matrix views, per-parameter scalars and shape-dependent scaling.",
    "spectral": "Spectral-norm control of matrices.",
    "subspace": "Bases of a matrix's row or column space, coordinates in them and back.",
}


def range_text(arg: Arg) -> str:
    """Allowed range of an argument from its ``Annotated[..., Field(...)]`` bounds ('' if none)."""
    ann, parts = arg.annotation, []
    while get_origin(ann) is typing.Annotated:
        for meta in get_args(ann)[1:]:
            for m in [meta, *getattr(meta, "metadata", [])]:
                for attr, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
                    val = getattr(m, attr, None)
                    if isinstance(val, int | float) and not isinstance(val, bool):
                        parts.append(f"{op} {val}")
        ann = get_args(ann)[0]
    return ", ".join(dict.fromkeys(parts))


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return repr(value)


def primitive_info(p: Primitive) -> dict[str, Any]:
    """A plain-data description of a primitive (``optloom list --json``)."""
    args = []
    for a in p.args.values():
        item: dict[str, Any] = {"name": a.name, "type": a.doc_type,
                                "kind": "structural" if a.structural else "runtime", "required": a.required}
        if not a.required:
            item["default"] = _jsonable(a.default)
        if range_text(a):
            item["range"] = range_text(a)
        args.append(item)
    return {
        "name": p.name, "family": p.family, "signature": p.signature_text(), "summary": p.summary,
        "doc": p.doc, "inputs": list(p.inputs), "args": args, "output": p.output,
        "state": [s.name for s in p.state], "elementwise": p.elementwise, "needs_matrix": p.needs_matrix,
        "reads_param": p.reads_param, "writes_param": p.writes_param, "examples": list(p.examples),
    }


def families() -> dict[str, list[Primitive]]:
    out: dict[str, list[Primitive]] = {}
    for p in all_primitives():
        out.setdefault(p.family, []).append(p)
    return out


def _flags(p: Primitive) -> str:
    flags = [
        f"elementwise: {'yes' if p.elementwise else 'no'}",
        f"needs_matrix: {'yes' if p.needs_matrix else 'no'}",
        f"reads param: {'yes' if p.reads_param else 'no'}",
        f"writes param: {'yes' if p.writes_param else 'no'}",
        f"output: {p.output}",
    ]
    return " · ".join(flags)


def _arg_row(a: Arg) -> str:
    default = "*(required)*" if a.required else f"`{show_value(a.default)}`"
    if a.default is None and not a.required:
        default = "`none` (the rule's apply lr)" if a.name == "lr" else "`none`"
    typ = a.doc_type.replace("|", "\\|")
    return (f"| `{a.name}` | `{typ}` | {default} | {'structural' if a.structural else 'runtime'} "
            f"| {range_text(a) or '—'} |")


def example_text(p: Primitive, example: str) -> str:
    """An example as written in a spec: piped from ``grad``, or alone for a primitive without
    tensor inputs."""
    return f"grad |> {example}" if p.inputs else example


def render_primitive(p: Primitive) -> str:
    lines = [f"### `{p.name}`", "", "```text", p.signature_text(), "```", ""]
    lines.append(f"Inputs: {', '.join(f'`{i}`' for i in p.inputs) or 'none'} (the first one receives the piped "
                 "value). " + _flags(p))
    lines.append("")
    if p.state:
        lines.append("State: " + ", ".join(f"`{s.name}`" + (f" ({s.doc})" if s.doc else "") for s in p.state))
    else:
        lines.append("State: none (stateless)")
    lines.append("")
    if p.args:
        lines += ["| argument | type | default | kind | range |", "|---|---|---|---|---|"]
        lines += [_arg_row(a) for a in p.args.values()]
        lines.append("")
    if p.doc:
        lines += [inspect.cleandoc(p.doc), ""]
    if p.examples:
        lines.append("Examples: " + ", ".join(f"`{example_text(p, e)}`" for e in p.examples))
        lines.append("")
    return "\n".join(lines)


def render_markdown() -> str:
    """The whole ``docs/primitives.md`` page."""
    fams = families()
    out = [
        "# optloom primitives",
        "",
        "<!-- generated by `python -m optloom.primitives.docs > docs/primitives.md`; do not edit -->",
        "",
        "Every primitive usable as a pipeline stage, generated from the registry "
        "(`optloom/primitives/registry.py`). `optloom list` prints the same in short.",
        "A stage `x |> f(a, b)` calls `f(x, a, b)`: the piped value is the first input; a bare name "
        "(`|> sign`) takes every default. *Runtime* arguments accept float hyperparameters (0-d tensors, "
        "changing them never recompiles); *structural* arguments must be compile-time constants "
        "(literals or int/bool/str/tuple hyperparameters).",
        "",
        "## Contents",
        "",
    ]
    for fam, prims in fams.items():
        out.append(f"- **{fam}**: " + ", ".join(f"[`{p.name}`](#{p.name})" for p in prims))
    out.append("")
    for fam, prims in fams.items():
        out += [f"## {fam}", ""]
        if fam in FAMILY_BLURB:
            out += [FAMILY_BLURB[fam], ""]
        out += [render_primitive(p) for p in prims]
    return "\n".join(out).rstrip("\n") + "\n"


def main() -> None:
    sys.stdout.write(render_markdown())


if __name__ == "__main__":
    main()
