"""``optloom.export(spec)``: a spec as one readable Python module that depends on torch alone.

The module defines a ``torch.optim.Optimizer`` subclass with the spec's hyperparameters (names,
defaults, range checks), routing rules (selectors as predicates), state names and ``state_dict``
format. Its step is the spec's dataflow written out as straight-line PyTorch per rule, calling
the batched implementations of exactly the primitives the spec uses — their source copied from
``optloom/primitives`` with the helpers they reach — on the same buckets as optloom's eager
backend, so that the two agree to fp32 rounding (bitwise in practice) and checkpoints move both
ways. See docs/export.md.

Modules: :mod:`.collect` (which source to copy), :mod:`.rules` (IR → Python), :mod:`.tables`
(hyperparameters, constraints, selectors, the rule table), :mod:`.module` (assembly),
:mod:`.standalone` and :mod:`.standalone_optim` (the runtime copied into every export),
:mod:`.pysource` (scopes and edits of Python source).
"""
from __future__ import annotations

from ..check.program import compile as compile_spec
from .collect import ExportError
from .module import build, class_name_of


def export(spec: str, name: str | None = None, class_name: str | None = None, command: str = "") -> str:
    """The standalone module of ``spec`` (a shipped name, a .opt path or spec text; ``name`` picks
    one optimizer of a file with several) as text. ``class_name``: the optimizer class's name
    (default: the optimizer's name in CamelCase, ``lowrank_muon`` → ``LowrankMuon``).
    Raises :class:`optloom.SpecError` for a spec that does not check and :class:`ExportError`
    for one that uses something the export cannot carry."""
    return build(compile_spec(spec, name=name), class_name, command)


__all__ = ["ExportError", "class_name_of", "export"]
