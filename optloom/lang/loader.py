"""Finding and loading specs: shipped names, files, or text; ``import`` on the search path."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from . import ast as A
from .diagnostics import Diagnostic, Reporter, Span, SpecError
from .parser import parse

SHIPPED = Path(__file__).resolve().parent.parent / "specs"


def search_path(extra: list[Path] | None = None) -> list[Path]:
    """Roots an ``import`` may resolve in: the importing file's folder, $OPTLOOM_SPEC_PATH, shipped specs."""
    env = [Path(p) for p in os.environ.get("OPTLOOM_SPEC_PATH", "").split(os.pathsep) if p]
    return [*(extra or []), *env, SHIPPED]


def shipped_names() -> list[str]:
    return sorted(p.stem for p in SHIPPED.glob("*.opt"))


@dataclass
class Loaded:
    """A spec with everything it imports: modules by file, and the merged defs."""

    module: A.Module
    source: str
    file: str
    defs: dict[str, A.Def] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)


def split_optimizer(spec: str, name: str | None) -> tuple[str, str | None]:
    """``FILE.opt:NAME`` or ``SHIPPED:NAME`` picks one optimizer of a file; a bare name that is not
    a shipped file but an optimizer inside one (``auon_head`` in ``auon.opt``) resolves to it."""
    if name is not None or "\n" in spec or "{" in spec:
        return spec, name
    head, sep, tail = spec.rpartition(":")
    if sep and tail.isidentifier() and (head.endswith(".opt") or head in shipped_names()):
        return head, tail
    if spec.isidentifier() and spec not in shipped_names() and not Path(spec).exists():
        pattern = re.compile(rf"^\s*optimizer\s+{re.escape(spec)}\s*\(", re.M)
        for stem in shipped_names():
            if pattern.search((SHIPPED / f"{stem}.opt").read_text()):
                return stem, spec
    return spec, name


def resolve_spec(spec: str) -> tuple[str, str]:
    """``spec`` is a shipped name, a path to a .opt file, or spec text -> (source, file). A name
    of one optimizer in a file (see :func:`split_optimizer`) gives that file."""
    spec = split_optimizer(spec, None)[0]
    if "\n" not in spec and "{" not in spec:
        if spec in shipped_names():
            path = SHIPPED / f"{spec}.opt"
            return path.read_text(), str(path)
        path = Path(spec)
        if path.suffix == ".opt" or path.exists():
            if not path.is_file():
                raise SpecError([_diag(f"no spec file '{spec}'", spec,
                                       f"shipped specs: {', '.join(shipped_names())}")])
            try:
                return path.read_text(), str(path)
            except (OSError, UnicodeDecodeError) as e:
                raise SpecError([_diag(f"cannot read spec: {e}", spec)]) from None
        raise SpecError([_diag(f"'{spec}' is not a shipped spec, a .opt file or spec text", "<spec>",
                               f"shipped specs: {', '.join(shipped_names())}")])
    return spec, "<spec>"


def _diag(msg: str, file: str, hint: str | None = None) -> Diagnostic:
    return Diagnostic("error", msg, Span(file=file), hint)


def load(source: str, file: str) -> Loaded:
    """Parse ``source`` and its imports (transitively); collect defs; report cycles and escapes."""
    module = parse(source, file)
    loaded = Loaded(module, source, file, sources={file: source})
    rep = Reporter(source)
    _collect(module, file, loaded, rep, stack=[_key(file)])
    rep.raise_if_failed()
    return loaded


def _key(file: str) -> str:
    return str(Path(file).resolve()) if file != "<spec>" else file


def _collect(module: A.Module, file: str, loaded: Loaded, rep: Reporter, stack: list[str]) -> None:
    base = [Path(file).resolve().parent] if file != "<spec>" else [Path.cwd()]
    for item in module.imports:
        target = _find(item.path, base)
        if target is None:
            roots = ", ".join(str(r) for r in search_path(base))
            rep.error(f"cannot import \"{item.path}\": not found on the spec search path", item.span,
                      f"search path: {roots}" if not (".." in item.path or item.path.startswith("/"))
                      else "imports must stay inside the spec search path")
            continue
        key = str(target)
        if key in stack:
            chain = " -> ".join(Path(s).name for s in [*stack[stack.index(key):], key])
            rep.error(f"cyclic import ({chain})", item.span)
            continue
        if key in loaded.sources:
            continue
        try:
            text = target.read_text()
            sub = parse(text, str(target))
        except SpecError as e:
            rep.diagnostics.extend(e.diagnostics)
            continue
        except (OSError, UnicodeDecodeError) as e:
            rep.error(f"cannot read \"{item.path}\": {e}", item.span)
            continue
        loaded.sources[key] = text
        _collect(sub, str(target), loaded, rep, [*stack, key])
        for d in sub.defs:
            loaded.defs.setdefault(d.name, d)
    if module is loaded.module:  # a file's own defs shadow imported ones
        loaded.defs.update({d.name: d for d in module.defs})


def _find(rel: str, base: list[Path]) -> Path | None:
    if rel.startswith("/") or "\\" in rel:
        return None
    for root in search_path(base):
        try:
            root = root.resolve()
            cand = (root / rel).resolve()
            if cand.is_file() and (cand == root or root in cand.parents):
                return cand
        except (OSError, ValueError):  # a name too long, a loop of links: not importable
            continue
    return None
