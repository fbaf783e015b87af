"""NAMO and NAMO-D references (arXiv 2602.17080; minxin-zhg/namo src/namo.py).

NAMO (one adaptive scalar per matrix), with t the 1-based step:
  g_n = ‖G‖_F;  M ← μ₁M + (1−μ₁)G;  N = (1−μ₁)G + μ₁M (nesterov) else M;  n_m = ‖N‖_F
  v ← μ₂v + (1−μ₂)g_n²;  O = NS(N) (Muon coefficients, 5 steps)
  α = lr·sqrt(1−μ₂ᵗ)/(1−μ₁ᵗ + 1e-12) · n_m/(sqrt(v) + ε)
  W ← W(1 − λ·min(α, 1));  W ← W − min(α·0.2·max(m,n)^½, 1)·O
NAMO-D (per column j of the matrix view):
  V_j ← μ₂V_j + (1−μ₂)‖G[:,j]‖²;  N, O as above;  base = lr·sqrt(1−μ₂ᵗ)/(1−μ₁ᵗ + 1e-12)
  d_j = ‖N[:,j]‖/(sqrt(V_j) + ε);  d̄ = nanmean(d);  if d̄ finite and > 0: d_j ← clamp(d_j, c·d̄, d̄/c)
  W[:,j] ← W[:,j]·max(0, 1 − λ·min(1, d_j·base));  W[:,j] ← W[:,j] − min(1, d_j·base·0.2·max(m,n)^½)·O[:,j]
Conv weights are viewed as (out, in·kh·kw), so "columns" are input·kernel positions.
"""
from __future__ import annotations

import math

import torch

from tests.reference.common import F64, ReferenceOptimizer, as_matrix, counter, newton_schulz


class NAMO(ReferenceOptimizer):
    def __init__(self, params, lr=0.012, momentum=0.95, mu2=0.99, eps=1e-8, scale_coeff=0.2,
                 weight_decay=0.1, ns_steps=5, nesterov=True, ns_dtype=F64):
        super().__init__(params)
        self.lr, self.momentum, self.mu2, self.eps = lr, momentum, mu2, eps
        self.scale_coeff, self.weight_decay, self.ns_steps = scale_coeff, weight_decay, ns_steps
        self.nesterov, self.ns_dtype = nesterov, ns_dtype

    def _momentum(self, st, G):
        mu1 = self.momentum
        st["momentum_buffer"] = mu1 * st.get("momentum_buffer", torch.zeros_like(G)) + (1 - mu1) * G
        return (1 - mu1) * G + mu1 * st["momentum_buffer"] if self.nesterov else st["momentum_buffer"]

    def _update(self, name, W, G, st):
        mu1, mu2 = self.momentum, self.mu2
        g_n = G.norm()
        N = as_matrix(self._momentum(st, G))
        n_m = N.norm()
        st["v"] = mu2 * st.get("v", torch.zeros((), dtype=F64)) + (1 - mu2) * g_n**2
        O = newton_schulz(N, "muon", self.ns_steps, dtype=self.ns_dtype)
        t = counter(st)
        alpha = self.lr * math.sqrt(1 - mu2**t) / (1 - mu1**t + 1e-12) * n_m / (st["v"].sqrt() + self.eps)
        m, n = N.shape
        alpha_wd = torch.clamp(alpha, max=1.0)
        alpha_up = torch.clamp(alpha * self.scale_coeff * math.sqrt(max(m, n)), max=1.0)
        W = W * (1 - self.weight_decay * alpha_wd)
        return W - alpha_up * O.reshape(W.shape)


class NAMOD(NAMO):
    def __init__(self, params, lr=0.009, momentum=0.95, mu2=0.99, eps=1e-8, scale_coeff=0.2,
                 weight_decay=0.1, ns_steps=5, nesterov=True, col_state_clamp_c=0.75, ns_dtype=F64):
        super().__init__(params, lr, momentum, mu2, eps, scale_coeff, weight_decay, ns_steps,
                         nesterov, ns_dtype)
        self.c = col_state_clamp_c

    def _update(self, name, W, G, st):
        mu1, mu2 = self.momentum, self.mu2
        Gm = as_matrix(G)
        st["V"] = mu2 * st.get("V", torch.zeros(Gm.shape[1], dtype=F64)) + (1 - mu2) * Gm.norm(dim=0) ** 2
        N = as_matrix(self._momentum(st, G))
        O = newton_schulz(N, "muon", self.ns_steps, dtype=self.ns_dtype)
        t = counter(st)
        base = self.lr * math.sqrt(1 - mu2**t) / (1 - mu1**t + 1e-12)
        d = N.norm(dim=0) / (st["V"].sqrt() + self.eps)
        d_bar = torch.nanmean(d)
        if torch.isfinite(d_bar) and d_bar > 0:
            d = torch.clamp(d, min=self.c * d_bar, max=d_bar / self.c)
        m, n = N.shape
        Wm = as_matrix(W)
        Wm = Wm * torch.clamp(1 - self.weight_decay * torch.clamp(d * base, max=1.0), min=0.0)
        col_step = torch.clamp(d * base * self.scale_coeff * math.sqrt(max(m, n)), max=1.0)
        Wm = Wm - O * col_step  # O · diag(col_step)
        return Wm.reshape(W.shape)
