"""Round-trip error of each storage format (docs/performance.md#precision-policies):
``python -m optloom.benchmarks.precision_errors`` prints a markdown table.

8 rows of 65,536 values, |x| spread over six decades (random order), rows 4–7 squared (non-negative,
like a second moment); for each format: the largest error over the block's largest magnitude, over
|x| for entries at least 10⁻³ of it, and the mean signed error over the block's largest magnitude
(stochastic rounding's bias)."""
from __future__ import annotations

import torch

from ..primitives import storage as S
from ..primitives.streams import hash_key

FORMATS = ["bf16", "bf16_sr", "q8", "q8_sr", "q8_linear", "q8_linear_sr", "q4", "q4_sr", "q4_linear"]


def measure(names: list[str] = FORMATS, n: int = 1 << 16, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(8, n, generator=g, dtype=torch.float64)
    x = x * torch.logspace(-6, 0, n, dtype=torch.float64)[torch.randperm(n, generator=g)]
    x[4:] = x[4:] ** 2
    x32 = x.float()
    rows = []
    for name in names:
        f = S.Format.parse(name)
        bits = S.entry_bits(hash_key(1, torch.tensor(1.0), torch.arange(8)), n) if f.stochastic else None
        err = S.decode(f, S.encode(f, x32, bits, key=(1, torch.tensor(1.0), torch.arange(8))), n).double() - x32.double()
        b = f.block or 256
        bm = x32.double().abs().reshape(8, -1, b).amax(-1, keepdim=True).expand(-1, -1, b).reshape(8, n)
        big = x32.double().abs() >= 1e-3 * bm
        rows.append({"format": f.name, "max_over_block_max": float((err.abs() / bm).max()),
                     "max_relative": float((err.abs() / x32.double().abs())[big].max()),
                     "mean_over_block_max": float((err / bm).mean())})
    return rows


def main() -> None:
    print("| format | max err / block max | max err / |x| (|x| ≥ 1e-3 of block max) | mean err / block max |")
    print("|---|---|---|---|")
    for r in measure():
        print(f"| {r['format']} | {r['max_over_block_max']:.3g} | {r['max_relative']:.3g} | "
              f"{r['mean_over_block_max']:.2g} |")


if __name__ == "__main__":
    main()
