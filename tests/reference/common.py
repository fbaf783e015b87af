"""Shared building blocks of the reference oracles.

Nothing here imports ``optloom``: these are independent, deliberately plain re-statements of the
equations of the papers and official code (docs/optimizers.md, "Sources"), computed in float64
unless a dtype is asked for.

* ``ReferenceOptimizer`` — the uniform interface: ``params: dict[name, tensor]`` (float64 copies),
  ``state: dict[name, dict[str, tensor]]``, ``step(grads: dict[name, tensor])``.
* ``newton_schulz`` — the quintic NS iteration (KellerJordan/Muon muon.py,
  zeropower_via_newtonschulz5; docs/derivations.md#newton-schulz) with presets ``muon`` (a.k.a.
  ``muon_cursed``), ``you5``, ``polar_express`` (which brings its 1.02 safety and eps 1e-6).
* ``polar_svd`` — exact polar factor ``U Vᵀ`` from a thin SVD.
* ``shape_scale`` — the update scales of docs/derivations.md#shape-factors.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch

F64 = torch.float64

# Coefficient presets: muon = KellerJordan/Muon muon.py; you5 = Dao-AILab/gram-newton-schulz
# gram_newton_schulz/coefficients.py; polar_express = Polar Express (arXiv 2505.16932) as in
# KellerJordan/modded-nanogpt train_gpt.py and microsoft/dion dion/polar_express.py. A single
# triple is reused for every iteration; lists are per iteration and the last triple repeats if
# more steps are asked for (the Polar Express recipe).
MUON_COEFFS = (3.4445, -4.7750, 2.0315)
NS_PRESETS: dict[str, list[tuple[float, float, float]]] = {
    "muon": [MUON_COEFFS],
    "muon_cursed": [MUON_COEFFS],
    "you5": [
        (4.0848, -6.8946, 2.9270),
        (3.9505, -6.3029, 2.6377),
        (3.7418, -5.5913, 2.3037),
        (2.8769, -3.1427, 1.2046),
        (2.8366, -3.0525, 1.2012),
    ],
    "polar_express": [
        (8.156554524902461, -22.48329292557795, 15.878769915207462),
        (4.042929935166739, -2.808917465908714, 0.5000178451051316),
        (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
        (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
        (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
    ],
}
NS_PRESETS["polar_express_5"] = NS_PRESETS["polar_express"]
# Pre-normalisation X / (‖X‖_F·s + ε) per preset: (1, 1e-7) in KellerJordan/Muon muon.py,
# (1.02, 1e-6) in modded-nanogpt and dion/polar_express.py. you5 is not said to use the 1.02
# safety; we give it Keller's (1, 1e-7) (an assumption).
NS_NORMALIZATION = {
    "muon": (1.0, 1e-7),
    "muon_cursed": (1.0, 1e-7),
    "you5": (1.0, 1e-7),
    "polar_express": (1.02, 1e-6),
    "polar_express_5": (1.02, 1e-6),
}


def resolve_coeffs(coeffs) -> list[tuple[float, float, float]]:
    if isinstance(coeffs, str):
        return NS_PRESETS[coeffs]
    coeffs = list(coeffs)
    if len(coeffs) == 3 and not isinstance(coeffs[0], (tuple, list)):
        return [tuple(float(c) for c in coeffs)]
    return [tuple(float(c) for c in abc) for abc in coeffs]


def newton_schulz(G: torch.Tensor, coeffs="muon", steps: int = 5, safety: float | None = None,
                  eps: float | None = None, dtype: torch.dtype = F64,
                  eps_mode: str = "add") -> torch.Tensor:
    """Quintic Newton–Schulz (KellerJordan/Muon zeropower_via_newtonschulz5), returned in float64.

    1. X ← G in ``dtype``; 2. transpose if rows > cols; 3. X ← X / (‖X‖_F·s + ε)
    (``eps_mode="clamp"``: X / max(‖X‖_F, ε), as torch.optim.Muon does);
    4. K times: A = XXᵀ; B = b_k A + c_k AA; X = a_k X + BX; 5. transpose back.
    """
    preset = coeffs if isinstance(coeffs, str) else None
    table = resolve_coeffs(coeffs)
    s0, e0 = NS_NORMALIZATION.get(preset, (1.0, 1e-7))
    s = s0 if safety is None else safety
    e = e0 if eps is None else eps
    X = G.to(dtype)
    tall = X.shape[0] > X.shape[1]
    if tall:
        X = X.T
    if eps_mode == "clamp":
        X = X / X.norm().clamp(min=e)
    else:
        X = X / (X.norm() * s + e)
    for k in range(steps):
        a, b, c = table[min(k, len(table) - 1)]
        A = X @ X.T
        B = torch.addmm(A, A, A, beta=b, alpha=c)  # b·A + c·A·A
        X = torch.addmm(X, B, X, beta=a)  # a·X + B·X
    if tall:
        X = X.T
    return X.to(F64)


def ns_scalar_map(sigma: torch.Tensor, coeffs="muon", steps: int = 5) -> torch.Tensor:
    """p_K∘…∘p_1 applied to (already normalised) singular values: p(σ) = aσ + bσ³ + cσ⁵."""
    table = resolve_coeffs(coeffs)
    x = sigma.to(F64)
    for k in range(steps):
        a, b, c = table[min(k, len(table) - 1)]
        x = a * x + b * x**3 + c * x**5
    return x


def polar_svd(X: torch.Tensor) -> torch.Tensor:
    """Exact orthogonal polar factor U Vᵀ of X = U Σ Vᵀ (thin SVD, float64)."""
    U, _, Vh = torch.linalg.svd(X.to(F64), full_matrices=False)
    return U @ Vh


def shape_scale(kind: str, m: int, n: int, coeff: float = 0.2) -> float:
    """docs/derivations.md#shape-factors: muon max(1,m/n)^½ | moonlight/rms_norm 0.2·max(m,n)^½ |
    spectral (m/n)^½ | none 1."""
    if kind in ("muon", "original", "kj"):
        return max(1.0, m / n) ** 0.5
    if kind in ("moonlight", "rms_match", "rms_norm", "match_rms_adamw", "kimi"):
        return coeff * math.sqrt(max(m, n))
    if kind in ("spectral", "dion"):
        return math.sqrt(m / n)
    if kind == "none":
        return 1.0
    raise ValueError(f"unknown shape scale {kind!r}")


def as_matrix(t: torch.Tensor) -> torch.Tensor:
    """Conv (out, in, kh, kw) → (out, in·kh·kw) (KellerJordan/Muon
    ``update.view(len(update), -1)``); 2-D and 1-D tensors unchanged."""
    return t.reshape(t.shape[0], -1) if t.ndim > 2 else t


def matrix_dims(t: torch.Tensor) -> tuple[int, int]:
    M = as_matrix(t)
    return (M.shape[0], M.shape[1]) if M.ndim == 2 else (M.numel(), 1)


def counter(st: dict, key: str = "step") -> int:
    """Increment and return the 1-based step counter kept as a 0-d tensor in ``st``."""
    st[key] = st.get(key, torch.tensor(0, dtype=torch.int64)) + 1
    return int(st[key])


class ReferenceOptimizer:
    """Uniform interface: float64 copies of the params, per-name state, ``step(grads)``.

    Only names present in ``grads`` are updated (like ``p.grad is None`` in torch), in the order
    the params were given. Subclasses implement ``_update(name, W, G, st) -> new W``.
    """

    def __init__(self, params: Iterable[tuple[str, torch.Tensor]]):
        self.params: dict[str, torch.Tensor] = {
            name: t.detach().clone().to(F64) for name, t in params}
        self.state: dict[str, dict[str, torch.Tensor]] = {name: {} for name in self.params}

    def step(self, grads: dict[str, torch.Tensor]) -> None:
        for name in self.params:
            if name in grads and grads[name] is not None:
                G = grads[name].detach().to(F64)
                self.params[name] = self._update(name, self.params[name], G, self.state[name])

    def _update(self, name, W, G, st):  # pragma: no cover - abstract
        raise NotImplementedError
