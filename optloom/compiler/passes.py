"""torch.fx passes run on every lowered step graph: common-subexpression elimination and
dead-code elimination (mutating ops — the in-place state/param write-back — are kept)."""
from __future__ import annotations

import torch
import torch.fx as fx


def _pure(node: fx.Node) -> bool:
    if node.op != "call_function":
        return False
    target = node.target
    schema = getattr(target, "_schema", None)
    if schema is None or schema.is_mutable:
        return False
    tags = getattr(target, "tags", ())
    return torch.Tag.nondeterministic_seeded not in tags


def _key(value):
    if isinstance(value, fx.Node):
        return ("node", value.name)
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_key(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((k, _key(v)) for k, v in value.items())))
    if isinstance(value, float):
        return ("float", repr(value))
    return (type(value).__name__, repr(value))


def cse(gm: fx.GraphModule) -> int:
    """Merge pure nodes with equal targets and arguments; returns how many were removed."""
    seen: dict[tuple, fx.Node] = {}
    removed = 0
    for node in list(gm.graph.nodes):
        if not _pure(node):
            continue
        key = (node.target, _key(node.args), _key(node.kwargs))
        if key in seen:
            node.replace_all_uses_with(seen[key])
            gm.graph.erase_node(node)
            removed += 1
        else:
            seen[key] = node
    return removed


def dce(gm: fx.GraphModule) -> int:
    before = len(gm.graph.nodes)
    gm.graph.eliminate_dead_code()
    return before - len(gm.graph.nodes)


def optimize(gm: fx.GraphModule) -> dict[str, int]:
    stats = {"cse": cse(gm), "dce": dce(gm)}
    gm.graph.lint()
    gm.recompile()
    return stats
