"""Python source as data: which global names a snippet reads (a small scope analysis that skips
annotations), and edits of a snippet at the positions of its names — so that copied functions
keep their comments, docstrings and layout while their references are renamed."""
from __future__ import annotations

import ast
import builtins
import keyword
import textwrap
from dataclasses import dataclass

BUILTINS = frozenset(dir(builtins))


@dataclass(frozen=True)
class Edit:
    """Replace the source between two (line, byte column) positions of a snippet by ``text``."""

    line: int
    col: int
    end_line: int
    end_col: int
    text: str


def parse_snippet(text: str) -> tuple[str, ast.Module]:
    """``text`` dedented, and its syntax tree."""
    text = textwrap.dedent(text)
    return text, ast.parse(text)


def global_loads(node: ast.AST) -> list[ast.Name]:
    """The ``Name`` nodes under ``node`` that read a global (or builtin) name: loads not bound in
    an enclosing function, lambda or comprehension scope, outside annotations."""
    found: list[ast.Name] = []
    _visit(node, frozenset(), found)
    return found


def _visit(node: ast.AST, bound: frozenset[str], found: list[ast.Name]) -> None:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        args = node.args
        for d in [*args.defaults, *(k for k in args.kw_defaults if k is not None)]:
            _visit(d, bound, found)
        if not isinstance(node, ast.Lambda):
            for d in node.decorator_list:
                _visit(d, bound, found)
        inner = bound | _arg_names(args) | (_scope_bindings(node.body) if not isinstance(node, ast.Lambda) else set())
        for stmt in node.body if isinstance(node.body, list) else [node.body]:
            _visit(stmt, inner, found)
        return
    if isinstance(node, ast.ClassDef):
        for d in [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]:
            _visit(d, bound, found)
        for stmt in node.body:
            _visit(stmt, bound, found)
        return
    if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
        inner = set(bound)
        for k, gen in enumerate(node.generators):
            _visit(gen.iter, frozenset(inner) if k else bound, found)
            inner |= {n.id for n in ast.walk(gen.target) if isinstance(n, ast.Name)}
            for cond in gen.ifs:
                _visit(cond, frozenset(inner), found)
        for part in ([node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]):
            _visit(part, frozenset(inner), found)
        return
    if isinstance(node, ast.AnnAssign):
        _visit(node.target, bound, found)
        if node.value is not None:
            _visit(node.value, bound, found)
        return
    if isinstance(node, ast.arg):
        return  # an annotation
    if isinstance(node, ast.Name):
        if isinstance(node.ctx, ast.Load) and node.id not in bound:
            found.append(node)
        return
    for child in ast.iter_child_nodes(node):
        _visit(child, bound, found)


def _arg_names(args: ast.arguments) -> set[str]:
    every = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    every += [a for a in (args.vararg, args.kwarg) if a is not None]
    return {a.arg for a in every}


def _scope_bindings(body: list[ast.stmt]) -> set[str]:
    """Names a function body binds (assignments, loop targets, imports, nested defs), not
    descending into nested scopes; names declared ``global`` are left out."""
    names: set[str] = set()
    declared: set[str] = set()
    stack: list[ast.AST] = list(body)
    while stack:
        n = stack.pop()
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(n.name)
            continue
        if isinstance(n, (ast.Lambda, ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            continue
        if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
            names.add(n.id)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in n.names}
        elif isinstance(n, (ast.Global, ast.Nonlocal)):
            declared |= set(n.names)
        elif isinstance(n, ast.ExceptHandler) and n.name:
            names.add(n.name)
        stack.extend(ast.iter_child_nodes(n))
    return names - declared


def name_edit(node: ast.AST, text: str) -> Edit:
    return Edit(node.lineno, node.col_offset, node.end_lineno or node.lineno,  # type: ignore[attr-defined]
                node.end_col_offset or node.col_offset, text)  # type: ignore[attr-defined]


def def_name_edit(source: str, node: ast.FunctionDef | ast.ClassDef, new: str) -> Edit:
    """An edit renaming a ``def``/``class`` statement's own name."""
    line = source.splitlines()[node.lineno - 1].encode()
    word = b"class " if isinstance(node, ast.ClassDef) else b"def "
    start = line.index(word, node.col_offset) + len(word)
    while line[start:start + 1] == b" ":
        start += 1
    return Edit(node.lineno, start, node.lineno, start + len(node.name.encode()), new)


def apply_edits(source: str, edits: list[Edit]) -> str:
    """``source`` with ``edits`` applied (columns are UTF-8 byte offsets, as ``ast`` gives them);
    edits must not overlap."""
    lines = [ln.encode() for ln in source.splitlines(keepends=True)]
    for e in sorted(set(edits), key=lambda e: (e.line, e.col), reverse=True):
        first, last = lines[e.line - 1], lines[e.end_line - 1]
        joined = first[: e.col] + e.text.encode() + last[e.end_col:]
        lines[e.line - 1: e.end_line] = [joined]
    return b"".join(lines).decode()


def safe_identifier(name: str) -> str:
    """``name``, or ``name_`` where it would shadow a builtin or is a keyword."""
    return f"{name}_" if name in BUILTINS or keyword.iskeyword(name) else name


def literal(value: object) -> str:
    """Python source of a plain value (numbers, strings, bools, None, tuples, lists, dicts)."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, float):
        if value != value:
            return 'float("nan")'
        if value in (float("inf"), float("-inf")):
            return 'float("inf")' if value > 0 else '-float("inf")'
        return repr(value)
    if isinstance(value, str):
        return f'"{value}"' if value.isprintable() and '"' not in value and "\\" not in value else repr(value)
    if isinstance(value, int):
        return repr(value)
    if isinstance(value, tuple):
        inner = ", ".join(literal(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no literal for {type(value).__name__} {value!r}")


def docstring(text: str, indent: str = "") -> str:
    """``text`` as a triple-quoted docstring (backslashes and quotes escaped), indented."""
    body = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"').rstrip()
    if body.endswith('"'):
        body = body[:-1] + '\\"'  # not four quotes in a row
    lines = body.splitlines() or [""]
    out = [f'{indent}"""{lines[0]}']
    out += [f"{indent}{ln}" if ln.strip() else "" for ln in lines[1:]]
    if len(lines) > 1:
        out.append(f'{indent}"""')
    else:
        out[-1] += '"""'
    return "\n".join(out)
