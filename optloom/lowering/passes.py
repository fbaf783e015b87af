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


def split_scalar_prologue(gm: fx.GraphModule) -> tuple[fx.GraphModule, fx.GraphModule] | None:
    """Hoist the 0-d arithmetic (bias corrections ``1 − βᵗ``, ``lr·λ``…) out of the step graph.

    Inductor fuses such scalar expressions into the elementwise loop and recomputes them for every
    vector of the bucket (``std::pow`` per 8 entries); run once before the loop they cost nothing.
    Returns ``(prologue, main)``: ``prologue(*inputs)`` returns the hoisted values and
    ``main(*inputs, *hoisted)`` is the rest of the graph; ``None`` when there is nothing to hoist.
    """
    graph = gm.graph
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]

    def zero_d(n: fx.Node) -> bool:
        v = n.meta.get("val")
        return isinstance(v, torch.Tensor) and v.ndim == 0

    hoist: set[fx.Node] = set()
    for n in graph.nodes:
        if n.op == "call_function" and _pure(n) and zero_d(n) and all(
                (m.op == "placeholder" and zero_d(m)) or m in hoist for m in n.all_input_nodes):
            hoist.add(n)
    boundary = [n for n in graph.nodes if n in hoist and any(u not in hoist for u in n.users)]
    if not boundary:
        return None
    pro, env = fx.Graph(), {}
    for p in placeholders:
        env[p] = pro.placeholder(p.name)
        env[p].meta = dict(p.meta)
    for n in graph.nodes:
        if n in hoist:
            env[n] = pro.node_copy(n, lambda m: env[m])
    pro.output(tuple(env[n] for n in boundary))
    main, env2 = fx.Graph(), {}
    for p in placeholders:
        env2[p] = main.placeholder(p.name)
        env2[p].meta = dict(p.meta)
    for i, n in enumerate(boundary):
        env2[n] = main.placeholder(f"hoisted_{i}")
        env2[n].meta = dict(n.meta)
    for n in graph.nodes:
        if n.op == "placeholder" or n in hoist:
            continue
        env2[n] = main.node_copy(n, lambda m: env2[m])
    prologue, body = fx.GraphModule(gm, pro), fx.GraphModule(gm, main)
    dce(body)
    body.recompile()
    return prologue, body
