"""ARO — Adaptively Rotated Optimization reference (arXiv 2602.09006; microsoft/dion branch dev/aro,
dion/aro.py, aro_update_megabatch_async / _aro_ortho_fn_impl).

Two variants, selected by ``orient``:

* ``orient="as_written"`` — the rule exactly as in the official code: R ∈ O(m) acts on the
  ROW side of the stored m×n matrix. On tall matrices (m > n) C = M F₁ᵀ has rank ≤ n < m, the last
  m − n columns of Q are fixed only by rounding, and row-normalizing base maps blow those rows up
  (docs/derivations.md#aro-on-tall-matrices): the update direction is then ill-posed.
* ``orient="wide"`` — well-posed variant: if m > n, run the identical rule on Mᵀ (R ∈ O(n) acts on
  the smaller side) and transpose the update back. Identical to ``as_written`` when m ≤ n.

Per step (in the chosen orientation, M is m×n):
  1. M ← μM + (1−μ)G                         (EMA, no Nesterov)
  2. X₁ = R_{t−1}ᵀ M;  F₁ = f(X₁)
  3. C = M F₁ᵀ;  R_t = Q of QR(C)             (one Householder QR; R stored in fp32, init I)
  4. U = R_t f(R_tᵀ M)
  5. W ← W(1 − lr·λ) − lr·s·U,  s = 0.2·max(m, n)^½ (adjust_lr="rms_norm") or 1 ("none")
Base maps f: ``row_norm`` (rows to norm √n), ``sign``, ``sinkhorn`` (5 × [rows → √n, cols → √m]),
all with norms clamped at 1e-8. ``fixed_rotation=True`` keeps R = I (skips 2–3): with f = sign it
is Signum with EMA momentum (docs/derivations.md#aro-on-tall-matrices, "Two special cases").
"""
from __future__ import annotations

import math

import torch

from tests.reference.common import F64, ReferenceOptimizer, as_matrix


def row_norm(X: torch.Tensor) -> torch.Tensor:
    """Each row scaled to L2 norm √n (n = #cols), norms clamped at 1e-8."""
    return math.sqrt(X.shape[1]) * X / X.norm(dim=1, keepdim=True).clamp(min=1e-8)


def col_norm(X: torch.Tensor) -> torch.Tensor:
    """Each column scaled to L2 norm √m (m = #rows), norms clamped at 1e-8."""
    return math.sqrt(X.shape[0]) * X / X.norm(dim=0, keepdim=True).clamp(min=1e-8)


def sinkhorn(X: torch.Tensor, iters: int = 5) -> torch.Tensor:
    """SR-Sinkhorn: ``iters`` alternations of row_norm then col_norm."""
    for _ in range(iters):
        X = col_norm(row_norm(X))
    return X


def sign(X: torch.Tensor) -> torch.Tensor:
    return torch.sign(X)


def base_map(name: str, sinkhorn_iters: int = 5):
    if name == "sinkhorn":
        return lambda X: sinkhorn(X, sinkhorn_iters)
    return {"row_norm": row_norm, "sign": sign}[name]


def rotated_update(M: torch.Tensor, R: torch.Tensor, f) -> torch.Tensor:
    """U = R f(Rᵀ M) (the ``in_frame`` combinator)."""
    return R @ f(R.T @ M)


def aro_rotation(M: torch.Tensor, R_prev: torch.Tensor, f) -> torch.Tensor:
    """R_t = Q of QR(M f(R_prevᵀ M)ᵀ) (the official code's rotation update), float64."""
    C = M @ f(R_prev.T @ M).T
    return torch.linalg.qr(C).Q


class ARO(ReferenceOptimizer):
    """ARO (see module docstring). State: ``momentum_buffer`` (stored shape), ``rotation`` (fp32).
    Conv weights are viewed as (out, in·kh·kw)."""

    def __init__(self, params, lr=0.01, momentum=0.95, weight_decay=0.01, base_opt="sinkhorn",
                 sinkhorn_iters=5, adjust_lr="rms_norm", orient="as_written",
                 rotation_dtype=torch.float32, fixed_rotation=False):
        super().__init__(params)
        assert orient in ("as_written", "wide") and adjust_lr in ("rms_norm", "none")
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.base_opt, self.f = base_opt, base_map(base_opt, sinkhorn_iters)
        self.adjust_lr, self.orient = adjust_lr, orient
        self.rotation_dtype, self.fixed_rotation = rotation_dtype, fixed_rotation

    def direction(self, M: torch.Tensor, st: dict) -> torch.Tensor:
        """Steps 2–4 on the matrix M (stored orientation); updates st["rotation"]."""
        flip = self.orient == "wide" and M.shape[0] > M.shape[1]
        X = M.T if flip else M
        k = X.shape[0]
        R_prev = st.get("rotation", torch.eye(k, dtype=self.rotation_dtype)).to(F64)
        R = R_prev if self.fixed_rotation else aro_rotation(X, R_prev, self.f)
        st["rotation"] = R.to(self.rotation_dtype)
        U = rotated_update(X, st["rotation"].to(F64), self.f)
        return U.T if flip else U

    def _update(self, name, W, G, st):
        mu = self.momentum
        st["momentum_buffer"] = mu * st.get("momentum_buffer", torch.zeros_like(G)) + (1 - mu) * G
        M = as_matrix(st["momentum_buffer"])
        U = self.direction(M, st)
        m, n = M.shape
        s = 0.2 * math.sqrt(max(m, n)) if self.adjust_lr == "rms_norm" else 1.0
        return W * (1 - self.lr * self.weight_decay) - self.lr * s * U.reshape(W.shape)
