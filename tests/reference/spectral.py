"""SPECTRA references (arXiv 2603.14315; mlolab/llm-spectral-clipping src/optim/spectra.py,
post_process.py; docs/derivations.md#spectral-clipping).

Soft spectral clip H_c(X) = (I + XXᵀ/c²)^{−1/2} X, i.e. σ ↦ σ/sqrt(1 + σ²/c²) with the singular
vectors kept — computed here exactly by SVD (``soft_spectral_clip``) and, independently, by an
eigendecomposition of I + XXᵀ/c² (``soft_spectral_clip_eigh``). Vectors (as the code):
g/sqrt(1 + (‖g‖/c)²)
if ‖g‖ > c, else g unchanged (as written — note the jump at ‖g‖ = c).

SPECTRA post-clip: the base optimizer's direction U (AdamW: m̂/(sqrt(v̂)+ε) in torch's form;
Signum: sign(m)) is replaced by α·H_c(U), α = max(1, m/n)^½ for matrices (conv viewed as (out,−1)),
1 for vectors: W ← W(1 − lr·λ) − lr·α·H_c(U). ``c`` and ``lr`` are attributes (schedules: set them
between steps; ``warmup_c`` gives the code's c·lr₀/lr_t warm-up rule). Pre-clip (src/optim/base.py):
``preclip``.
"""
from __future__ import annotations

import torch

from tests.reference.common import F64, ReferenceOptimizer, as_matrix, counter, shape_scale


def soft_spectral_clip(X: torch.Tensor, c: float) -> torch.Tensor:
    """Matrices: U diag(σ/sqrt(1+σ²/c²)) Vᵀ by SVD (conv viewed as (out,−1)); vectors: norm clip."""
    X = X.to(F64)
    if X.ndim == 1:
        nrm = X.norm()
        return X / torch.sqrt(1 + (nrm / c) ** 2) if nrm > c else X
    M = as_matrix(X)
    U, S, Vh = torch.linalg.svd(M, full_matrices=False)
    return (U @ torch.diag(S / torch.sqrt(1 + S**2 / c**2)) @ Vh).reshape(X.shape)


def soft_spectral_clip_eigh(X: torch.Tensor, c: float) -> torch.Tensor:
    """(I + XXᵀ/c²)^{−1/2} X via eigh of the symmetric matrix (2-D only)."""
    X = X.to(F64)
    A = torch.eye(X.shape[0], dtype=F64) + X @ X.T / c**2
    lam, V = torch.linalg.eigh(A)
    return V @ torch.diag(lam.rsqrt()) @ V.T @ X


def hard_spectral_clip(X: torch.Tensor, c: float) -> torch.Tensor:
    """σ ↦ min(σ, c) by SVD (the paper's conceptual target)."""
    M = as_matrix(X.to(F64))
    U, S, Vh = torch.linalg.svd(M, full_matrices=False)
    return (U @ torch.diag(S.clamp(max=c)) @ Vh).reshape(X.shape)


def preclip(G: torch.Tensor, c_pre: float = 0.1) -> torch.Tensor:
    """Pre-clip (src/optim/base.py): G ← H_{c_pre}(G) for 2-D params; other params unchanged."""
    return soft_spectral_clip(G, c_pre) if G.ndim == 2 else G.to(F64)


def warmup_c(c: float, lr0: float, lr_t: float) -> float:
    """The code's warm-up rule: c_t = c·lr₀/lr_t (keeps c·lr constant)."""
    return c * lr0 / lr_t


class SPECTRA(ReferenceOptimizer):
    """SPECTRA post-clip around ``base="adamw"`` (betas, eps) or ``base="signum"`` (beta).
    ``clip="soft"`` (default) or ``"hard"``."""

    def __init__(self, params, lr=2e-3, c=5.0, base="adamw", betas=(0.9, 0.999), eps=1e-8,
                 beta=0.9, weight_decay=0.1, clip="soft"):
        super().__init__(params)
        assert base in ("adamw", "signum") and clip in ("soft", "hard")
        self.lr, self.c, self.base, self.betas, self.eps = lr, c, base, betas, eps
        self.beta, self.weight_decay, self.clip = beta, weight_decay, clip

    def base_direction(self, G, st):
        if self.base == "signum":
            st["momentum_buffer"] = self.beta * st.get("momentum_buffer", torch.zeros_like(G)) + (1 - self.beta) * G
            return torch.sign(st["momentum_buffer"])
        b1, b2 = self.betas
        t = counter(st)
        st["exp_avg"] = b1 * st.get("exp_avg", torch.zeros_like(G)) + (1 - b1) * G
        st["exp_avg_sq"] = b2 * st.get("exp_avg_sq", torch.zeros_like(G)) + (1 - b2) * G * G
        return (st["exp_avg"] / (1 - b1**t)) / (st["exp_avg_sq"].sqrt() / (1 - b2**t) ** 0.5 + self.eps)

    def _update(self, name, W, G, st):
        U = self.base_direction(G, st)
        if self.clip == "soft":
            H = soft_spectral_clip(U, self.c)
        else:
            H = hard_spectral_clip(U, self.c) if U.ndim >= 2 else U * torch.clamp(self.c / U.norm(), max=1.0)
        alpha = shape_scale("muon", *as_matrix(U).shape) if U.ndim >= 2 else 1.0
        return W * (1 - self.lr * self.weight_decay) - self.lr * alpha * H
