"""The Python an export carries: exactly the functions, classes and constants of optloom that
the spec's primitives reach, found by following each copied snippet's global names.

Each piece is copied from its module's source (comments and docstrings kept), a primitive's
declaration decorator dropped; names are renamed where two modules use one name for different
things, a closure's free variables are written in, and ``prim.fn`` becomes the function itself.
Modules outside optloom become import lines; only torch and the standard library are allowed.
"""
from __future__ import annotations

import ast
import importlib
import inspect
import sys
import types
from dataclasses import dataclass, field
from typing import Any

from ..primitives.registry import Primitive
from .pysource import (BUILTINS, Edit, apply_edits, def_name_edit, global_loads, literal, name_edit, parse_snippet,
                       safe_identifier)


class ExportError(ValueError):
    """A spec (or a primitive it uses) that cannot be exported as standalone PyTorch."""


ALLOWED_ROOTS = frozenset(sys.stdlib_module_names) | {"torch"}


@dataclass
class Piece:
    """One copied definition: its emitted name and text, where it came from, what it needs."""

    name: str
    module: str
    line: int
    text: str = ""
    needs: list["Piece"] = field(default_factory=list)


@dataclass
class _Source:
    text: str
    tree: ast.Module
    defs: dict[str, ast.stmt]


class Collector:
    """Collects pieces reachable from roots; ``reserved`` names are never given to a piece."""

    def __init__(self, reserved: set[str] | frozenset[str] = frozenset()) -> None:
        self.reserved = set(reserved)
        self.pieces: dict[tuple, Piece] = {}
        self.taken: dict[str, tuple[tuple, Any]] = {}  # emitted name -> (key, the object it holds)
        self.imports: dict[str, str] = {}  # emitted name -> import line
        self._sources: dict[str, _Source] = {}

    # ---- roots ------------------------------------------------------------------------------------
    def primitive(self, prim: Primitive) -> str:
        """The emitted name of a primitive's batched implementation (copied on first use)."""
        key = ("primitive", prim.name)
        if key not in self.pieces:
            fn = prim.fn
            name = self._claim(key, safe_identifier(prim.name), prim)
            piece = self.pieces[key] = Piece(name, fn.__module__, fn.__code__.co_firstlineno)
            self._fill_function(piece, fn, rename_def=True)
        return self.pieces[key].name

    def module(self, value: types.ModuleType) -> str:
        """The emitted name of an imported module (``import torch``)."""
        return self._import_module(value, value.__name__.split(".")[-1], "")

    def preimport(self, name: str, line: str, value: Any) -> None:
        """Claim ``name`` for an import the caller writes itself (``from typing import Any``)."""
        if self._claim(("object", line, name), name, value) != name:
            raise ExportError(f"internal: the name '{name}' is taken")
        self.imports[name] = line

    def obj(self, value: Any, context: str = "") -> str:
        """The emitted name of an optloom function/class (or an importable object)."""
        if isinstance(value, Primitive):
            return self.primitive(value)
        mod, name = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
        if not mod or not name or "." in name:
            raise ExportError(f"cannot export {value!r}{context}: not a module-level function or class")
        if mod.split(".")[0] == "optloom":
            return self._definition(mod, name, context)
        return self._import_object(value, name, context)

    # ---- resolution -----------------------------------------------------------------------------
    def _claim(self, key: tuple, want: str, value: Any) -> str:
        """An emitted name for ``key``: ``want``, or ``want_2``… where it is taken by something else."""
        name, n = want, 1
        while name in self.reserved or name in BUILTINS or (name in self.taken and self.taken[name][0] != key):
            n += 1
            name = f"{want}_{n}"
        self.taken[name] = (key, value)
        return name

    def _same_as_taken(self, want: str, value: Any) -> str | None:
        """``want`` when it already names this very object (``Tensor = torch.Tensor`` in two modules)."""
        held = self.taken.get(want)
        return want if held is not None and held[1] is value and not isinstance(value, (int, float, str)) else None

    def _source(self, module: str) -> _Source:
        if module not in self._sources:
            text = inspect.getsource(sys.modules[module])
            tree = ast.parse(text)
            defs: dict[str, ast.stmt] = {}
            for stmt in tree.body:
                if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    defs[stmt.name] = stmt
                elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
                    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                    for t in targets:
                        if isinstance(t, ast.Name):
                            defs[t.id] = stmt
            self._sources[module] = _Source(text, tree, defs)
        return self._sources[module]

    def _resolve(self, module: str, name: str, context: str) -> str | None:
        """The emitted name for global ``name`` as module ``module`` sees it (None: a builtin)."""
        scope = vars(sys.modules[module])
        if name not in scope:
            if name in BUILTINS:
                return None
            raise ExportError(f"{module} reads the global '{name}', which it does not define{context}")
        value = scope[name]
        if isinstance(value, Primitive):
            return self.primitive(value)
        if isinstance(value, types.ModuleType):
            return self._import_module(value, name, context)
        site = self._site(module, name)
        if site is None:  # imported from outside optloom
            return self._import_object(value, name, context)
        return self._definition(*site, context)

    def _site(self, module: str, name: str) -> tuple[str, str] | None:
        """Where ``name`` of ``module`` is defined: (optloom module, name there), following
        ``from .x import name`` chains; None when it comes from outside optloom."""
        for _ in range(20):
            src = self._source(module)
            if name in src.defs:
                return module, name
            found = None
            for stmt in src.tree.body:
                if isinstance(stmt, ast.ImportFrom):
                    for a in stmt.names:
                        if (a.asname or a.name) == name:
                            base = module if module_is_package(module) else module.rsplit(".", 1)[0]
                            for _ in range(max(stmt.level - 1, 0)):
                                base = base.rsplit(".", 1)[0]
                            target = (f"{base}.{stmt.module}" if stmt.module else base) if stmt.level else stmt.module
                            found = (target, a.name)
            if found is None or not found[0].startswith("optloom"):
                return None
            module, name = found
        return None

    def _import_module(self, value: types.ModuleType, name: str, context: str) -> str:
        full = value.__name__
        if full.split(".")[0] not in ALLOWED_ROOTS:
            raise ExportError(f"the export would need the module '{full}'{context}: only torch and the standard "
                              "library may be imported")
        existing = self._same_as_taken(name, value)
        if existing:
            return existing
        emitted = self._claim(("module", full), name, value)
        self.imports[emitted] = f"import {full}" if emitted == full else f"import {full} as {emitted}"
        return emitted

    def _import_object(self, value: Any, name: str, context: str) -> str:
        mod, qual = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
        if not mod or not qual or mod.split(".")[0] not in ALLOWED_ROOTS:
            raise ExportError(f"the export would need '{name}' from '{mod}'{context}: only torch and the standard "
                              "library may be imported")
        try:
            ok = getattr(importlib.import_module(mod), qual) is value
        except (ImportError, AttributeError):
            ok = False
        if not ok:
            raise ExportError(f"cannot import '{name}' ({mod}.{qual}){context}")
        existing = self._same_as_taken(name, value)
        if existing:
            return existing
        emitted = self._claim(("object", mod, qual), name, value)
        self.imports[emitted] = f"from {mod} import {qual}" + (f" as {emitted}" if emitted != qual else "")
        return emitted

    def _definition(self, module: str, name: str, context: str) -> str:
        """Copy the top-level statement defining ``name`` in ``module`` (once)."""
        key = ("def", module, name)
        if key in self.pieces:
            return self.pieces[key].name
        src = self._source(module)
        if name not in src.defs:
            raise ExportError(f"cannot find the definition of {module}.{name}{context}")
        value = vars(sys.modules[module])[name]
        existing = self._same_as_taken(name, value)
        if existing:
            return existing
        emitted = self._claim(key, name, value)
        stmt = src.defs[name]
        piece = self.pieces[key] = Piece(emitted, module, stmt.lineno)
        first = min([stmt.lineno, *(d.lineno for d in getattr(stmt, "decorator_list", []))])
        lines = src.text.splitlines(keepends=True)[first - 1: stmt.end_lineno]
        self._fill(piece, "".join(lines), module, {}, rename_def=emitted != name)
        return emitted

    # ---- filling pieces --------------------------------------------------------------------------
    def _fill_function(self, piece: Piece, fn: Any, rename_def: bool) -> None:
        """A (possibly nested) function's source, without decorators, closure variables written in."""
        text, tree = parse_snippet(inspect.getsource(fn))
        node = next(n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
        text = "".join(text.splitlines(keepends=True)[node.lineno - 1: node.end_lineno])
        cells = dict(zip(fn.__code__.co_freevars, (c.cell_contents for c in fn.__closure__ or ())))
        free = {k: self._value_source(v, f" (closure variable '{k}' of {fn.__qualname__})") for k, v in cells.items()}
        self._fill(piece, text, fn.__module__, free, rename_def)

    def _fill(self, piece: Piece, text: str, module: str, free: dict[str, str], rename_def: bool) -> None:
        text, tree = parse_snippet(text)
        stmt = tree.body[0]
        context = f" (in {module}.{getattr(stmt, 'name', piece.name)})"
        edits: list[Edit] = []
        if rename_def and isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            edits.append(def_name_edit(text, stmt, piece.name))  # type: ignore[arg-type]
        elif rename_def:
            edits += [name_edit(t, piece.name) for t in ast.walk(stmt) if isinstance(t, ast.Name)
                      and isinstance(t.ctx, ast.Store)]
        loads = global_loads(stmt)
        scope = vars(sys.modules[module])
        for attr in ast.walk(stmt):  # prim.fn(...) -> the primitive's function itself
            if isinstance(attr, ast.Attribute) and attr.attr == "fn" and isinstance(attr.value, ast.Name) \
                    and attr.value in loads and isinstance(scope.get(attr.value.id), Primitive):
                edits.append(name_edit(attr, self.primitive(scope[attr.value.id])))
                loads.remove(attr.value)
        for n in loads:
            if n.id in free:
                edits.append(name_edit(n, free[n.id]))
                continue
            emitted = self._resolve(module, n.id, context)
            if emitted is None:
                continue
            if emitted != n.id:
                edits.append(name_edit(n, emitted))
            dep = self._piece_named(emitted)
            if dep is not None and dep is not piece and dep not in piece.needs:
                piece.needs.append(dep)
        piece.text = apply_edits(text, edits).rstrip() + "\n"

    def _piece_named(self, name: str) -> Piece | None:
        key = self.taken.get(name, (None,))[0]
        return self.pieces.get(key) if key is not None else None

    def _value_source(self, value: Any, context: str) -> str:
        """Source text for a closure variable's value: a literal, an optloom object or a torch/stdlib
        callable by its public path."""
        try:
            return literal(value)
        except TypeError:
            pass
        mod = getattr(value, "__module__", None) or ""
        if mod.startswith("optloom") or isinstance(value, Primitive):
            return self.obj(value, context)
        name = getattr(value, "__name__", None)
        for path in ("torch", "torch.linalg", "torch.special", "torch.nn.functional", "math", "operator"):
            m = importlib.import_module(path)
            if name and getattr(m, name, None) is value:
                root = self._import_module(importlib.import_module(path.split(".")[0]), path.split(".")[0], context)
                return f"{root}{path[len(path.split('.')[0]):]}.{name}"
        raise ExportError(f"cannot write {value!r} as source{context}")

    # ---- output ---------------------------------------------------------------------------------
    def ordered(self) -> list[Piece]:
        """Pieces grouped by module, modules after the modules they need, each module's pieces in
        source order (module-level statements run in the order their modules ran them)."""
        mods: dict[str, list[Piece]] = {}
        for p in self.pieces.values():
            mods.setdefault(p.module, []).append(p)
        order: list[str] = []
        state: dict[str, int] = {}

        def visit(m: str) -> None:
            if state.get(m):
                return
            state[m] = 1
            for p in mods[m]:
                for d in p.needs:
                    if d.module != m:
                        visit(d.module)
            state[m] = 2
            order.append(m)

        for m in mods:  # in the order modules were first reached: the runtime's own (Ctx, State) first
            visit(m)
        return [p for m in order for p in sorted(mods[m], key=lambda p: p.line)]


def module_is_package(module: str) -> bool:
    return hasattr(sys.modules[module], "__path__")
