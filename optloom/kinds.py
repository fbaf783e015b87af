"""Structural or runtime: the one rule that decides how a hyperparameter reaches a step graph.

A *runtime* value is a float, or a tuple of runtime values: it enters the step graph as 0-d
tensors, so LR schedulers and edits of ``param_groups`` (including ``OneCycleLR`` cycling
``betas``) change it without recompiling. A *structural* value is an int, bool, str, or any
tuple holding one: it is baked into the graph (Newton–Schulz steps, a base-map name), and a
change builds another graph. A primitive argument whose floats its implementation needs as
Python numbers (a coefficient table) is declared ``Baked[...]``: a tuple of floats passed there is
baked too. The primitive registry (argument kinds), the checker (hyperparameter kinds) and
lowering (which tuple hyperparameters are graph inputs) all ask this module.
"""
from __future__ import annotations

import typing
from typing import Any, Literal, get_args, get_origin

_STRUCTURAL_TYPES = (bool, int, str)


class _BakedMarker:
    def __repr__(self) -> str:
        return "BAKED"


BAKED = _BakedMarker()


class Baked:
    """``Baked[T]``: an argument of type ``T`` whose value the implementation needs at trace time."""

    def __class_getitem__(cls, item: Any) -> Any:
        return typing.Annotated[item, BAKED]


def structural_value(value: Any) -> bool:
    """Is this hyperparameter value baked into the graph (True) or fed at run time (False)?"""
    if isinstance(value, (tuple, list)):
        return not value or any(structural_value(v) for v in value)
    return isinstance(value, _STRUCTURAL_TYPES)


def structural_annotation(ann: Any) -> bool:
    """The same rule for a primitive argument's type annotation (``Annotated`` is looked through;
    ``Literal`` and ``list`` are structural; a union is structural when every member is)."""
    while get_origin(ann) is typing.Annotated:
        if any(m is BAKED for m in get_args(ann)[1:]):
            return True
        ann = get_args(ann)[0]
    origin = get_origin(ann)
    if ann in _STRUCTURAL_TYPES or origin is Literal or origin is list:
        return True
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return all(structural_annotation(a) or a is type(None) for a in get_args(ann))
    if origin is tuple:
        return all(structural_annotation(a) for a in get_args(ann) if a is not Ellipsis)
    return False


def runtime_leaves(value: Any) -> list[float]:
    """The floats of a runtime value, in order (one 0-d graph input each)."""
    if isinstance(value, (tuple, list)):
        return [x for v in value for x in runtime_leaves(v)]
    return [float(value)]


def rebuild(template: Any, leaves: typing.Iterator[Any]) -> Any:
    """A runtime value of ``template``'s form with its floats taken from ``leaves`` (the graph's
    0-d inputs): a float becomes one leaf, a tuple a tuple of leaves."""
    if isinstance(template, (tuple, list)):
        return tuple(rebuild(v, leaves) for v in template)
    return next(leaves)
