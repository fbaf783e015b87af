"""Storage formats: how an optimizer state (or a low-precision parameter) is kept in memory between
steps. A primitive-family helper, like :mod:`.streams` and :mod:`.linalg`: the lowering decodes a
stored state to float32 at the start of the step graph and encodes the new value at its end, so
Inductor fuses decode, update and encode into the step's one loop and the float32 value never
lives in memory between steps.

Formats (the text a precision policy names; ``_sr`` asks for stochastic rounding of every write,
``/B`` sets the block size of a block-quantized format):

- ``fp32`` — float32, as without a policy.
- ``bf16``, ``bf16_sr`` — bfloat16 (2 bytes per entry), rounded to nearest (even) or stochastically.
- ``q8`` = ``q8_dynamic``, ``q8_linear`` (``/256`` by default) — 8-bit codes (1 byte per entry)
  and one float32 scale per block of ``B`` consecutive entries of a parameter (4/B bytes per
  entry). ``q4_dynamic``, ``q4_linear`` (``/128`` by default): 4-bit codes, two per byte.

Block codes. A block is *non-negative* (all entries ≥ 0: a second moment) or *signed*; the sign of
its stored scale says which (a scale ≥ 0: non-negative). Its largest magnitude ``a`` maps to the
largest code value ``C``: ``scale = a / C`` and an entry is stored as the code nearest ``x / scale``.

- ``dynamic``: a small float with no infinities and gradual underflow below the smallest normal:
  8 bits are ``s1 e4 m3`` for signed blocks (bias 15) and ``e5 m3`` for non-negative ones (bias
  31); 4 bits are ``s1 e2 m1`` (bias 3) and ``e3 m1`` (bias 7). ``C = 2 − 2⁻ᵐ``. Relative
  spacing ``2⁻ᵐ`` (8 bits: 12.5 %, so at most 6.25 % error rounding to nearest) down to
  ``2¹⁻ᵇⁱᵃˢ·C`` of the block's largest value — ``2⁻¹⁴`` for signed, ``2⁻³⁰`` for non-negative
  8-bit blocks: a small-value-aware code, what a second moment needs (bitsandbytes' and torchao's
  dynamic maps serve the same purpose; this one is computed with bit operations, no table search).
- ``linear``: ``C = 2ᵇ⁻¹ − 1`` evenly spaced levels each side of zero (signed, stored with offset
  ``C``) or ``2ᵇ − 1`` levels above zero (non-negative): absolute error at most ``scale/2``.

Rounding of a write is to nearest (dynamic: ties away from zero) or stochastic: the value rounds
up with probability equal to its distance from the lower neighbour over the gap, so the stored
value is unbiased. Random bits come from the counter-based streams of :mod:`.streams`
(``fmix32`` of ``key + φ·j``; ``key = hash_key(seed', step, id)``): a pure function of the seed,
the state's name (mixed into ``seed'``), the step, the parameter's id and the entry's index, so
eager and compiled steps round alike and a resumed run rounds as the uninterrupted one. The 32-bit
arithmetic is done in int32 (wrapping), which vectorizes; its bits equal ``hash_stream``'s.
"""
from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .streams import GOLDEN, hash_key

Tensor = torch.Tensor

KINDS = ("float32", "bfloat16", "q8", "q4")
CODES = ("dynamic", "linear")
DEFAULT_BLOCK = {"q8": 256, "q4": 128}
_ALIASES = {"fp32": "float32", "float32": "float32", "f32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16",
            "q8": "q8", "int8": "q8", "8bit": "q8", "q4": "q4", "int4": "q4", "4bit": "q4"}
_TEXT = re.compile(r"^(?P<kind>[a-z0-9]+?)(?:_(?P<code>dynamic|linear))?(?P<sr>_sr)?(?:/(?P<block>\d+))?$")


def _i32(c: int) -> int:
    """A 32-bit pattern as a signed int32 constant."""
    c &= 0xFFFFFFFF
    return c - (1 << 32) if c >= (1 << 31) else c


_GOLDEN32, _C1, _C2 = _i32(GOLDEN), _i32(0x85EBCA6B), _i32(0xC2B2AE35)


@dataclass(frozen=True)
class Part:
    """One stored buffer of a format: name suffix, entries of the logical value per stored entry
    (``granularity``: 1 for values and 8-bit codes, 2 for packed 4-bit codes, the block size for
    scales) and dtype."""

    suffix: str
    granularity: int
    dtype: torch.dtype


@dataclass(frozen=True)
class Format:
    """A storage format (see the module docstring). ``Format.parse("q8_linear_sr/128")``."""

    kind: str = "float32"           # float32 | bfloat16 | q8 | q4
    rounding: str = "nearest"       # nearest | stochastic
    code: str = "dynamic"           # dynamic | linear (block formats)
    block: int = 0                  # entries per scale (block formats)

    @classmethod
    def parse(cls, text: "str | Format") -> "Format":
        if isinstance(text, Format):
            return text
        m = _TEXT.match(str(text).strip().lower())
        kind = _ALIASES.get(m.group("kind")) if m else None
        if m is None or kind is None:
            raise ValueError(f"unknown storage format {text!r}; formats: fp32, bf16, bf16_sr, q8 (= q8_dynamic), "
                             "q8_linear, q4_dynamic, q4_linear; add _sr for stochastic rounding and /B for the "
                             "block size of q8/q4 (e.g. q8_dynamic_sr/128)")
        quantized = kind in DEFAULT_BLOCK
        if not quantized and (m.group("code") or m.group("block")):
            raise ValueError(f"storage format {text!r}: a code and a block size apply to q8/q4 only")
        if kind == "float32" and m.group("sr"):
            raise ValueError(f"storage format {text!r}: float32 is not rounded (the step computes in float32)")
        block = int(m.group("block")) if m.group("block") else DEFAULT_BLOCK.get(kind, 0)
        if quantized and (block < 2 or block % 2 or block > 1 << 16):
            raise ValueError(f"storage format {text!r}: the block size must be even, from 2 to 65536")
        return cls(kind, "stochastic" if m.group("sr") else "nearest",
                   (m.group("code") or "dynamic") if quantized else "dynamic", block if quantized else 0)

    @property
    def name(self) -> str:
        """Canonical text: ``fp32``, ``bf16_sr``, ``q8_dynamic/256``, ``q4_linear_sr/128``…"""
        if self.kind == "float32":
            return "fp32"
        sr = "_sr" if self.rounding == "stochastic" else ""
        if self.kind == "bfloat16":
            return "bf16" + sr
        return f"{self.kind}_{self.code}{sr}/{self.block}"

    def __str__(self) -> str:
        return self.name

    @property
    def quantized(self) -> bool:
        return self.kind in DEFAULT_BLOCK

    @property
    def bits(self) -> int:
        return {"float32": 32, "bfloat16": 16, "q8": 8, "q4": 4}[self.kind]

    @property
    def stochastic(self) -> bool:
        return self.rounding == "stochastic"

    def parts(self) -> tuple[Part, ...]:
        if self.kind == "float32":
            return (Part("", 1, torch.float32),)
        if self.kind == "bfloat16":
            return (Part("", 1, torch.bfloat16),)
        return (Part("", 1 if self.kind == "q8" else 2, torch.uint8), Part(".scale", self.block, torch.float32))

    def stored_entries(self, n: int) -> list[int]:
        """Entries of each stored buffer for ``n`` logical entries."""
        return [-(-n // p.granularity) for p in self.parts()]

    def nbytes(self, n: int) -> int:
        """Bytes stored for ``n`` logical entries."""
        return sum(k * p.dtype.itemsize for k, p in zip(self.stored_entries(n), self.parts()))


FP32 = Format()


# ---- random bits -------------------------------------------------------------------------------
def salted_seed(seed: int, salt: str) -> int:
    """The seed of one stream: the policy's seed mixed with a name (a state's, or ``param``)."""
    return (int(seed) ^ zlib.crc32(salt.encode())) & 0x7FFFFFFF


def fmix32(h: Tensor) -> Tensor:
    """MurmurHash3's finalizer on int32 (wrapping multiply, logical shifts): the bits of
    :func:`optloom.primitives.streams.hash_stream`'s int64 computation, vectorizable."""
    h = h ^ ((h >> 16) & 0xFFFF)
    h = h * _C1
    h = h ^ ((h >> 13) & 0x7FFFF)
    h = h * _C2
    return h ^ ((h >> 16) & 0xFFFF)


def entry_bits(key: Tensor, n: int) -> Tensor:
    """``(rows, n)`` int32 stream values ``fmix32(key + φ·j)`` for keys ``(rows,)`` (32-bit values
    held in int64, as :func:`hash_key` returns them) and entries ``j < n``."""
    k = torch.where(key >= 1 << 31, key - (1 << 32), key).to(torch.int32)
    j = torch.arange(n, dtype=torch.int32, device=key.device) * _GOLDEN32
    return fmix32(k.unsqueeze(-1) + j)


def stream_key(seed: int, salt: str, step: Tensor | float, ids: Tensor) -> Tensor:
    """The keys of a named stream: ``hash_key(salted_seed(seed, salt), step, ids)``."""
    return hash_key(salted_seed(seed, salt), step, ids)


# ---- bfloat16 ------------------------------------------------------------------------------------
def round_bf16(x: Tensor) -> Tensor:
    """``x`` to bfloat16, to nearest even."""
    return x.to(torch.bfloat16)


def round_bf16_stochastic(x: Tensor, seed: int, step: Tensor | float, ids: Tensor) -> Tensor:
    """``x`` (``(rows, n)``, float32) to bfloat16 with stochastic rounding: the precision family's
    ``cast(x, "bfloat16", "stochastic", seed)`` (one definition of it), row ``i`` keyed by
    ``ids[i]``: its random bits are ``hash_stream(hash_key(seed, step, ids[i]), n)``, the bits
    :func:`entry_bits` gives for the same key."""
    from .context import Ctx
    from .precision import cast

    ctx = Ctx(layout="stacked", param=x, step=step, states={}, ids=ids)
    return cast.fn(ctx, x, "bfloat16", "stochastic", seed)


# ---- block codes -------------------------------------------------------------------------------
def _float_code(bits: int, signed: bool) -> tuple[int, int, int]:
    """(exponent bits, mantissa bits, bias) of the dynamic code's magnitude."""
    e, m = (4, 3) if bits == 8 else (2, 1)
    e = e if signed else e + 1
    return e, m, (1 << e) - 1


def code_max(fmt: Format, signed: bool) -> float:
    """The largest code value ``C`` (a block's largest magnitude is stored as ``C·scale``)."""
    if fmt.code == "linear":
        return float((1 << (fmt.bits - 1)) - 1 if signed else (1 << fmt.bits) - 1)
    return 2.0 - 2.0 ** -_float_code(fmt.bits, signed)[1]


def _per_block(nonneg: Tensor, unsigned: float, signed: float) -> Tensor | float:
    """A constant that depends on the block's kind, as arithmetic on the 0/1 flag (no branches:
    the step computes one code per entry, not both and a selection)."""
    return signed if unsigned == signed else signed + (unsigned - signed) * nonneg


def _codes(fmt: Format, y: Tensor, r: Tensor | None, nonneg: Tensor) -> Tensor:
    """Codes (int32 patterns of ``fmt.bits``) of ``y = x/scale``; ``nonneg``: the block's flag
    (int32 0/1, broadcast over its entries)."""
    k, kf = nonneg, nonneg.to(torch.float32)
    if fmt.code == "linear":
        ls, lu = code_max(fmt, True), code_max(fmt, False)
        u = (r & 0xFFFFFF).to(torch.float32) * 2.0 ** -24 if r is not None else 0.5
        q = torch.floor(y + u)
        q = torch.minimum(torch.maximum(q, -ls * (1.0 - kf)), _per_block(kf, lu, ls))
        return q.to(torch.int32) + int(ls) * (1 - k)
    e, m, bs = _float_code(fmt.bits, True)
    bu = _float_code(fmt.bits, False)[2]
    s = 23 - m
    a = y.abs()
    add = (r & ((1 << s) - 1)) if r is not None else (1 << (s - 1))
    normal = ((a.view(torch.int32) + add) >> s) - _per_block(k, (127 - bu) << m, (127 - bs) << m)
    u = add.to(torch.float32) * 2.0 ** -s if r is not None else 0.5
    sub = torch.floor(a * _per_block(kf, 2.0 ** (bu - 1 + m), 2.0 ** (bs - 1 + m)) + u).to(torch.int32)
    code = torch.where(a < _per_block(kf, 2.0 ** (1 - bu), 2.0 ** (1 - bs)), sub, normal)
    code = torch.minimum(code.clamp_min(0), _per_block(k, (1 << fmt.bits) - 1, (1 << (fmt.bits - 1)) - 1))
    return code | ((y < 0).to(torch.int32) << (fmt.bits - 1))  # no negative entry in a non-negative block


def _values(fmt: Format, c: Tensor, nonneg: Tensor) -> Tensor:
    """Code values (float32, before the scale) of codes ``c`` (int32) of blocks flagged ``nonneg``."""
    k, kf = nonneg, nonneg.to(torch.float32)
    if fmt.code == "linear":
        return (c - int(code_max(fmt, True)) * (1 - k)).to(torch.float32)
    e, m, bs = _float_code(fmt.bits, True)
    bu = _float_code(fmt.bits, False)[2]
    top = 1 << (fmt.bits - 1)
    mag = c & (top - 1 + top * k)
    normal = ((mag + _per_block(k, (127 - bu) << m, (127 - bs) << m)) << (23 - m)).view(torch.float32)
    v = torch.where(mag < (1 << m), mag.to(torch.float32) * _per_block(kf, 2.0 ** (1 - bu - m), 2.0 ** (1 - bs - m)),
                    normal)
    return torch.where((c >= top) & (k == 0), -v, v)


def encode(fmt: Format, x: Tensor, bits: Tensor | None = None,
           key: tuple[int, Tensor | float, Tensor] | None = None) -> list[Tensor]:
    """The stored buffers of ``x`` (``(rows, n)``, float32) in ``fmt``, each ``(rows, entries)``.
    Stochastic rounding: ``bits``, ``(rows, n)`` int32 random bits (block codes), or ``key`` =
    ``(seed, step, ids)`` with one id per row (bfloat16); neither: to nearest."""
    if fmt.kind == "float32":
        return [x.to(torch.float32)]
    if fmt.kind == "bfloat16":
        return [round_bf16_stochastic(x, *key) if fmt.stochastic and key is not None else round_bf16(x)]
    rows, n = x.shape
    nb = -(-n // fmt.block)
    pad = nb * fmt.block - n
    xb = (F.pad(x, (0, pad)) if pad else x).reshape(rows, nb, fmt.block)
    rb = None if bits is None else (F.pad(bits, (0, pad)) if pad else bits).reshape(rows, nb, fmt.block)
    amax = xb.abs().amax(-1, keepdim=True)
    nonneg = (xb.amin(-1, keepdim=True) >= 0).to(torch.int32)
    cmax = _per_block(nonneg.to(torch.float32), code_max(fmt, False), code_max(fmt, True))
    inv = torch.where(amax > 0, cmax / torch.where(amax > 0, amax, 1.0), 0.0)
    codes = _codes(fmt, xb * inv, rb, nonneg).reshape(rows, nb * fmt.block)
    scale = (amax / cmax * (2 * nonneg - 1).to(torch.float32)).reshape(rows, nb)
    if fmt.kind == "q4":
        pairs = codes.reshape(rows, -1, 2)
        codes = pairs[..., 0] | (pairs[..., 1] << 4)
        return [codes[:, : -(-n // 2)].to(torch.uint8), scale]
    return [codes[:, :n].to(torch.uint8), scale]


def decode(fmt: Format, parts: list[Tensor], n: int) -> Tensor:
    """The float32 value ``(rows, n)`` of stored buffers ``parts`` (each ``(rows, entries)``)."""
    if fmt.kind in ("float32", "bfloat16"):
        return parts[0].to(torch.float32)
    codes, scale = parts
    rows, nb = scale.shape
    c = codes.to(torch.int32)
    if fmt.kind == "q4":
        c = torch.stack([c & 15, c >> 4], dim=-1).reshape(rows, -1)
    s = scale.unsqueeze(-1).expand(rows, nb, fmt.block).reshape(rows, nb * fmt.block)[:, :n]
    v = _values(fmt, c[:, :n], (s >= 0).to(torch.int32))
    return v * s.abs()


def error_bound(fmt: Format, x: Tensor, scale: Tensor, signed: Tensor) -> Tensor:
    """The largest ``|decode(encode(x)) − x|`` rounding to nearest, per entry (float64): ``x``'s
    values, ``scale`` the magnitude of its block's scale, ``signed`` whether its block is signed.
    Stochastic rounding: twice this (one gap instead of half of one)."""
    x, scale = x.to(torch.float64), scale.to(torch.float64)
    if fmt.kind == "float32":
        return torch.zeros_like(x)
    if fmt.kind == "bfloat16":
        return x.abs() * 2.0 ** -8
    if fmt.code == "linear":
        return scale * 0.5
    out = []
    for flag in (False, True):
        _, m, bias = _float_code(fmt.bits, flag)
        out.append(torch.maximum(x.abs() * 2.0 ** -(m + 1), scale * 2.0 ** (-bias - m)))
    return torch.where(signed, out[1], out[0])


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def pad_to(n: int, align: int) -> int:
    """``n`` rounded up to a multiple of ``align``."""
    return ceil_div(n, align) * align if align > 1 else n


__all__ = ["Format", "FP32", "Part", "code_max", "decode", "encode", "entry_bits", "error_bound", "fmix32",
           "round_bf16", "round_bf16_stochastic", "salted_seed", "stream_key", "pad_to", "ceil_div"]
