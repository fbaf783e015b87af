"""Precision policies: how each state stream, and low-precision parameters, are stored between steps.

A policy maps state names (or ``*``, every state that can take it) to a storage format of
:mod:`optloom.primitives.storage` and optionally sets how bfloat16 parameters are written. It
comes from the spec (structural ``str`` hyperparameters ``state_precision`` / ``param_precision``,
read per param group) and from the constructor (``optloom.optimizer(spec, params,
state_precision={"exp_avg_sq": "q8"}, param_precision="bf16_sr")``), the constructor's entries
overriding the spec's name by name.

The step graph computes in float32: :func:`decode` turns the stored buffers into float32 values
before the rule runs and :func:`encode` writes the new values back (``lowering.lower``), so one
fused loop reads codes, updates and writes codes. Which states may take a format is decided here
(:func:`resolve`): integer states (indices), values cached by ``every`` and bases that open a frame
(``rotate``'s ``rotation``) stay as they are; naming one explicitly is an error.
"""
from __future__ import annotations

import dataclasses
import math
import re
import warnings
from dataclasses import dataclass
from typing import Any, Mapping

import torch

from ..check import ir
from ..primitives.registry import State
from ..primitives.storage import Format, decode as decode_parts, encode as encode_parts, entry_bits, pad_to, \
    round_bf16, round_bf16_stochastic, salted_seed, stream_key
from .layout import Layout, layout_of
from .specs import StateSpec

PARAM_MODES = ("bf16", "bf16_sr", "bf16_kahan")
HYPERS = ("state_precision", "param_precision")  # spec-level declarations (structural str hyperparameters)
KAHAN = "param.kahan"
STORED_ONLY = (KAHAN,)  # buffers the rule never sees


class PrecisionWarning(UserWarning):
    """A policy that works but is known to hurt (an 8-bit second moment with a linear code)."""


@dataclass(frozen=True)
class Policy:
    """State formats by name (``*``: every state that can take it) and the bf16 parameter mode."""

    states: tuple[tuple[str, Format], ...] = ()
    param: str | None = None
    seed: int = 0

    @classmethod
    def of(cls, state_precision: Any = None, param_precision: str | None = None, seed: int = 0) -> "Policy":
        states = parse_states(state_precision)
        if param_precision is not None and param_precision not in PARAM_MODES:
            raise ValueError(f"param_precision must be one of {', '.join(PARAM_MODES)} (for bfloat16 parameters), "
                             f"got {param_precision!r}")
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**31:
            raise ValueError(f"precision_seed must be an int in [0, 2**31), got {seed!r}")
        return cls(tuple(states.items()), param_precision or None, seed)

    def over(self, base: "Policy") -> "Policy":
        """This policy's entries over ``base``'s (name by name)."""
        merged = {**dict(base.states), **dict(self.states)}
        return Policy(tuple(merged.items()), self.param or base.param, self.seed or base.seed)

    def format_for(self, name: str) -> tuple[Format | None, bool]:
        """(format or None, named explicitly?)."""
        table = dict(self.states)
        if name in table:
            return table[name], True
        return table.get("*"), False

    @property
    def trivial(self) -> bool:
        return self.param is None and all(f.kind == "float32" for _, f in self.states)

    def text(self) -> str:
        parts = [f"{k}: {f.name}" for k, f in self.states]
        if self.param:
            parts.append(f"param: {self.param}")
        return ", ".join(parts) or "fp32"


def parse_states(value: Any) -> dict[str, Format]:
    """``"bf16_sr"`` (every state), ``"exp_avg: bf16_sr, exp_avg_sq: q8"`` (``,``/``;`` between
    entries, ``:``/``=`` in them; ``*`` is every other state) or a dict of the same."""
    if value is None or value == "":
        return {}
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, (str, Format)):
        text = str(value)
        if not re.search(r"[:=]", text):
            items = [("*", text)]
        else:
            items = []
            for entry in filter(None, (e.strip() for e in re.split(r"[,;]", text))):
                name, sep, fmt = (s.strip() for s in re.split(r"([:=])", entry, maxsplit=1)) if re.search(
                    r"[:=]", entry) else (entry, "", "")
                if not sep or not name or not fmt:
                    raise ValueError(f"state_precision entry {entry!r}: write NAME: FORMAT (e.g. 'exp_avg_sq: q8')")
                items.append((name, fmt))
    else:
        raise TypeError(f"state_precision must be a str or a dict of state name -> format, got {value!r}")
    out: dict[str, Format] = {}
    for name, fmt in items:
        if not isinstance(name, str) or not (name == "*" or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name)):
            raise ValueError(f"state_precision: {name!r} is not a state name (or '*')")
        out[name] = Format.parse(fmt)
    return out


def policy_of(option: Policy, hypers: Mapping[str, Any]) -> Policy:
    """The policy of one param group: the constructor's ``option`` over the group's spec-level
    ``state_precision`` / ``param_precision`` hyperparameters (when the spec declares them)."""
    base = Policy.of(hypers.get("state_precision") or None, hypers.get("param_precision") or None)
    return option.over(base)


# ---- which states may take a format ------------------------------------------------------------
def state_roles(rule: ir.RuleIR) -> dict[str, str]:
    """Each state of ``rule``: ``moment`` (a linear moving average), ``second moment`` (declared
    non-linear, e.g. ``exp_avg_sq``), ``cached`` (an ``every`` value), ``basis`` (a frame's
    operator), ``integer`` or ``state`` (declared with ``state NAME = ...``)."""
    roles: dict[str, str] = {}
    for node in ir.walk(rule.roots):
        if isinstance(node, ir.Every):
            roles[node.name] = "cached"
        elif isinstance(node, ir.StateRef):
            roles.setdefault(node.name, "integer" if node.dtype and "int" in node.dtype else "state")
        elif isinstance(node, ir.Call) and node.prim is not None:
            for s in node.prim.state:
                full = node.state_names.get(s.name, s.name)
                if node.prim.frame is not None and node.prim.frame.state == s.name:
                    roles[full] = "basis"
                elif s.dtype and "int" in s.dtype:
                    roles[full] = "integer"
                else:
                    roles.setdefault(full, "moment" if s.linear else "second moment")
    return roles


def resolve(policy: Policy, rule: ir.RuleIR, specs: list[Any], spec_name: str,
            warn: bool = True) -> dict[str, Format]:
    """The format of each of ``specs`` (a bucket's logical states) that the policy stores other
    than as computed. Raises ``ValueError`` naming the state, rule and spec where a format is asked
    for a state that cannot take it; warns (:class:`PrecisionWarning`) where it is known to hurt."""
    roles = state_roles(rule)
    out: dict[str, Format] = {}
    for s in specs:
        fmt, explicit = policy.format_for(s.name)
        if fmt is None or fmt.kind == "float32":
            continue
        role = roles.get(s.name, "state")
        reason = None
        if not s.dtype.is_floating_point or role == "integer":
            reason = f"an integer state ({s.dtype})"
        elif role == "cached":
            reason = "a value cached by every(...): it is recomputed, not accumulated"
        elif role == "basis":
            reason = "the basis of a frame: rounding it would make it non-orthogonal"
        elif s.dtype not in (torch.float32, torch.bfloat16, torch.float16):
            reason = f"a {s.dtype} state (policies store float32 states)"
        if reason is not None:
            if explicit:
                raise ValueError(f"spec '{spec_name}', rule '{rule.label}': state '{s.name}' cannot be stored as "
                                 f"{fmt.name}: it is {reason}")
            continue
        if fmt.quantized and not explicit and layout_of(rule) is Layout.STACKED and math.prod(s.shape[1:]) == 1:
            continue  # a per-parameter scalar: a block format would store more than it saves
        if warn and fmt.quantized and fmt.code == "linear" and role == "second moment":
            warnings.warn(f"spec '{spec_name}', rule '{rule.label}': state '{s.name}' is a second moment stored "
                          f"as {fmt.name}: a linear code rounds its small values to zero, and an update divided "
                          "by their square root explodes; use the dynamic code (q8 / q8_dynamic)",
                          PrecisionWarning, stacklevel=4)
        out[s.name] = fmt
    return out


_REFUSED = {"cached": "a value cached by every(...): it is recomputed, not accumulated",
            "basis": "the basis of a frame: rounding it would make it non-orthogonal",
            "integer": "an integer state"}


def check_names(policy: Policy, program: Any) -> None:
    """At construction: every state the policy names explicitly is a state of some rule of the
    spec, and none of them is one that cannot take a format (by its role in the rule; a state's
    dtype is checked again when its buffers are made)."""
    roles = [(r, state_roles(r)) for r in program.rules]
    known = set().union(*(k for _, k in roles)) if roles else set()
    for name, fmt in policy.states:
        if name == "*":
            continue
        if name not in known:
            raise ValueError(f"state_precision names state '{name}', which spec '{program.name}' does not have "
                             f"(its states: {', '.join(sorted(known)) or 'none'})")
        for rule, kinds in roles:
            if fmt.kind != "float32" and kinds.get(name) in _REFUSED:
                raise ValueError(f"spec '{program.name}', rule '{rule.label}': state '{name}' cannot be stored as "
                                 f"{fmt.name}: it is {_REFUSED[kinds[name]]}")


def alignment(policy: Policy, rule: ir.RuleIR, layout: Layout) -> int:
    """Entries each member of a flat bucket is padded to a multiple of: the largest block of a
    block format the policy may give one of the rule's states (1 when none; stacked: 1)."""
    if layout is not Layout.FLAT:
        return 1
    blocks = [1]
    for name in state_roles(rule):
        fmt, _ = policy.format_for(name)
        if fmt is not None and fmt.quantized:
            blocks.append(fmt.block)
    return math.lcm(*blocks)


# ---- stored buffers ----------------------------------------------------------------------------
def stored_specs(specs: list[Any], formats: dict[str, Format], layout: Layout, param_mode: str | None,
                 meta: Any) -> list[Any]:
    """The buffers a bucket keeps: each logical state's parts (``name``, ``name.scale``) and the
    Kahan companion of bf16 parameters (``param.kahan``)."""
    out = []
    for s in specs:
        fmt = formats.get(s.name)
        if fmt is None:
            out.append(s)
            continue
        for k, part in enumerate(fmt.parts()):
            if layout is Layout.FLAT:
                shape: tuple[int, ...] = (s.shape[0] // part.granularity,)
            elif part.granularity == 1:
                shape = s.shape
            else:
                shape = (s.shape[0], -(-math.prod(s.shape[1:]) // part.granularity))
            out.append(dataclasses.replace(s, name=s.name + part.suffix, shape=shape, dtype=part.dtype, fmt=fmt,
                                           logical=s.name, part=k, logical_shape=s.shape,
                                           granularity=part.granularity))
    if param_mode == "bf16_kahan" and meta.dtype == torch.bfloat16:
        out.append(StateSpec(KAHAN, tuple(meta.shape), torch.bfloat16, State(KAHAN, dtype="bfloat16")))
    return out


def groups(specs: list[Any]) -> dict[str, list[Any]]:
    """Stored specs of each formatted logical state, in part order."""
    out: dict[str, list[Any]] = {}
    for s in specs:
        if getattr(s, "fmt", None) is not None:
            out.setdefault(s.logical, []).append(s)
    return out


def _rows(shape: tuple[int, ...], layout: Any) -> tuple[int, int]:
    """(rows, entries per row) of a bucket-layout buffer: one row per member when stacked."""
    if str(layout) == "flat":
        return 1, math.prod(shape)
    return shape[0], math.prod(shape[1:])


def _key_ids(ids: torch.Tensor, layout: Any) -> torch.Tensor:
    """The ids keying the rows of a bucket's random streams: its first member's for a flat bucket
    (one stream over the padded buffer), each member's for a stacked one."""
    return ids[:1] if str(layout) == "flat" else ids


def _keys(seed: int, salt: str, step: Any, ids: torch.Tensor, layout: Any) -> torch.Tensor:
    return stream_key(seed, salt, step, _key_ids(ids, layout))


def _code_rows(first: Any, layout: Any) -> tuple[int, int]:
    """(rows, entries) a formatted state is coded as: a flat bucket's blocks as rows (its members
    start at block multiples), a stacked bucket's members."""
    rows, n = _rows(first.logical_shape, layout)
    if str(layout) == "flat" and first.fmt.quantized and n % first.fmt.block == 0:
        return n // first.fmt.block, first.fmt.block
    return rows, n


def decode(parts: list[torch.Tensor], first: Any, layout: Any) -> torch.Tensor:
    """The float32 value of a formatted state from its stored buffers (``first``: its part-0 spec)."""
    rows, n = _code_rows(first, layout)
    flat = [p.reshape(rows, -1) for p in parts]
    return decode_parts(first.fmt, flat, n).reshape(first.logical_shape)


def encode(value: torch.Tensor, first: Any, layout: Any, seed: int, step: Any, ids: torch.Tensor) -> list[torch.Tensor]:
    """The stored buffers of a formatted state's new float32 ``value`` (shaped as each part).
    Random bits: entry ``j`` of a stacked member, or of a flat bucket's (padded) buffer."""
    rows, n = _code_rows(first, layout)
    x = value.to(torch.float32).reshape(rows, n)
    if first.fmt.stochastic and first.fmt.kind == "bfloat16":
        return encode_parts(first.fmt, x, key=(salted_seed(seed, first.logical), step, _key_ids(ids, layout)))
    bits = None
    if first.fmt.stochastic:
        r, m = _rows(first.logical_shape, layout)
        bits = entry_bits(_keys(seed, first.logical, step, ids, layout), m).reshape(rows, n)
    return encode_parts(first.fmt, x, bits)


def encode_param(value: torch.Tensor, mode: str, layout: Any, seed: int, step: Any, ids: torch.Tensor,
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A bf16 parameter's new float32 value rounded per ``mode``: (parameter, Kahan companion or None)."""
    if mode == "bf16_sr":
        rows, n = _rows(tuple(value.shape), layout)
        x = value.to(torch.float32).reshape(rows, n)
        return round_bf16_stochastic(x, salted_seed(seed, "param"), step, _key_ids(ids, layout)).reshape(value.shape), None
    hi = round_bf16(value)
    if mode == "bf16_kahan":
        return hi, round_bf16(value - hi.to(torch.float32))
    return hi, None


def logical_nbytes(fmt: Format | None, n: int, dtype: torch.dtype) -> int:
    """Bytes one member of ``n`` entries stores (unpadded, as its state_dict entries)."""
    return n * dtype.itemsize if fmt is None else fmt.nbytes(n)


def padded(n: int, align: int) -> int:
    return pad_to(n, align)


def encode_member(value: torch.Tensor, fmt: Format, layout: Any, member: bool = False) -> list[torch.Tensor]:
    """Stored parts of a logical value, rounded to nearest (outside the step: initial values and
    conversions). ``member``: ``value`` is one parameter's (parts shaped as its state_dict
    entries: values and codes as the member, scales and packed codes flat); else a bucket-layout
    value (parts as ``(rows, entries)``)."""
    if member:
        n = value.numel()
        parts = encode_parts(fmt, value.to(torch.float32).reshape(1, n))
        return [p.reshape(value.shape) if part.granularity == 1 else p.reshape(-1)
                for p, part in zip(parts, fmt.parts())]
    rows, n = _rows(tuple(value.shape), layout)
    return encode_parts(fmt, value.to(torch.float32).reshape(rows, n))


def decode_member(parts: list[torch.Tensor], fmt: Format, shape: tuple[int, ...]) -> torch.Tensor:
    """One parameter's float32 state from its stored parts (its state_dict entries)."""
    n = math.prod(shape)
    return decode_parts(fmt, [p.reshape(1, -1) for p in parts], n).reshape(shape)


def member_parts(name: str, fmt: Format | None, shape: tuple[int, ...], dtype: torch.dtype
                 ) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """The state_dict entries (name -> shape, dtype) of one parameter's state ``name`` of
    per-parameter ``shape`` stored in ``fmt`` (None: as computed)."""
    if fmt is None:
        return {name: (shape, dtype)}
    n = math.prod(shape)
    return {name + p.suffix: (shape if p.granularity == 1 else (-(-n // p.granularity),), p.dtype)
            for p in fmt.parts()}
