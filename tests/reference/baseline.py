"""Baseline reference optimizers: SGD, AdamW, Lion, Signum, Muon (+ aux AdamW).

Written from the torch.optim documentation/algorithm boxes, the Lion (arXiv 2302.06675, Alg. 2)
and Signum (arXiv 1802.04434, Alg. 3) papers, and KellerJordan/Muon muon.py (muon_update,
MuonWithAuxAdam) with docs/derivations.md#shape-factors and docs/derivations.md#routing;
float64 throughout (Muon's NS optionally in bf16 to mimic torch.optim.Muon).
"""
from __future__ import annotations

import re

import torch

from tests.reference.common import F64, MUON_COEFFS, ReferenceOptimizer, as_matrix, counter, newton_schulz, shape_scale


class SGD(ReferenceOptimizer):
    """torch.optim.SGD: g ← g + λW; B ← G (first step) else μB + (1−τ)g;
    g ← g + μB (nesterov) else B; W ← W − lr·g."""

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False):
        super().__init__(params)
        self.lr, self.momentum, self.dampening = lr, momentum, dampening
        self.weight_decay, self.nesterov = weight_decay, nesterov

    def _update(self, name, W, G, st):
        g = G + self.weight_decay * W if self.weight_decay else G
        if self.momentum:
            if "momentum_buffer" not in st:
                st["momentum_buffer"] = g.clone()
            else:
                st["momentum_buffer"] = self.momentum * st["momentum_buffer"] + (1 - self.dampening) * g
            B = st["momentum_buffer"]
            g = g + self.momentum * B if self.nesterov else B
        return W - self.lr * g


def adamw_update(W, G, st, lr, betas, eps, weight_decay, amsgrad=False):
    """One torch.optim.AdamW step (decoupled decay first):
    W ← W(1 − lr·λ); m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²;
    W ← W − lr/(1−β₁ᵗ) · m / (sqrt(v̂)/sqrt(1−β₂ᵗ) + ε), v̂ = v (or running max with amsgrad)."""
    b1, b2 = betas
    t = counter(st)
    W = W * (1 - lr * weight_decay)
    st["exp_avg"] = b1 * st.get("exp_avg", torch.zeros_like(G)) + (1 - b1) * G
    st["exp_avg_sq"] = b2 * st.get("exp_avg_sq", torch.zeros_like(G)) + (1 - b2) * G * G
    v = st["exp_avg_sq"]
    if amsgrad:
        st["max_exp_avg_sq"] = torch.maximum(st.get("max_exp_avg_sq", torch.zeros_like(G)), v)
        v = st["max_exp_avg_sq"]
    bc1, bc2 = 1 - b1**t, 1 - b2**t
    denom = v.sqrt() / bc2**0.5 + eps
    return W - (lr / bc1) * st["exp_avg"] / denom


class AdamW(ReferenceOptimizer):
    """torch.optim.AdamW (see ``adamw_update``)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False):
        super().__init__(params)
        self.lr, self.betas, self.eps = lr, betas, eps
        self.weight_decay, self.amsgrad = weight_decay, amsgrad

    def _update(self, name, W, G, st):
        return adamw_update(W, G, st, self.lr, self.betas, self.eps, self.weight_decay, self.amsgrad)


class Lion(ReferenceOptimizer):
    """Lion (Chen et al. 2023, Alg. 2), decoupled decay:
    c = β₁m + (1−β₁)g; W ← W(1 − lr·λ) − lr·sign(c); m ← β₂m + (1−β₂)g."""

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0):
        super().__init__(params)
        self.lr, self.betas, self.weight_decay = lr, betas, weight_decay

    def _update(self, name, W, G, st):
        b1, b2 = self.betas
        m = st.get("exp_avg", torch.zeros_like(G))
        c = b1 * m + (1 - b1) * G
        W = W * (1 - self.lr * self.weight_decay) - self.lr * torch.sign(c)
        st["exp_avg"] = b2 * m + (1 - b2) * G
        return W


class Signum(ReferenceOptimizer):
    """Signum: m ← βm + (1−β)g; W ← W(1 − lr·λ) − lr·sign(m)."""

    def __init__(self, params, lr=1e-3, beta=0.9, weight_decay=0.0):
        super().__init__(params)
        self.lr, self.beta, self.weight_decay = lr, beta, weight_decay

    def _update(self, name, W, G, st):
        st["momentum_buffer"] = self.beta * st.get("momentum_buffer", torch.zeros_like(G)) + (1 - self.beta) * G
        return W * (1 - self.lr * self.weight_decay) - self.lr * torch.sign(st["momentum_buffer"])


DEFAULT_NON_HIDDEN = re.compile(r"embed|wte|wpe|lm_head|head")


def default_is_hidden(name: str, W: torch.Tensor) -> bool:
    """Muon-family routing (docs/derivations.md#routing): hidden ≥2-D weights take the matrix
    method; embeddings/head/1-D take AdamW."""
    return W.ndim >= 2 and DEFAULT_NON_HIDDEN.search(name) is None


class Muon(ReferenceOptimizer):
    """torch.optim.Muon (= KellerJordan/Muon muon.py, muon_update) with the aux AdamW of
    MuonWithAuxAdam for non-hidden params.

    Hidden W: M ← βM + (1−β)G; N = (1−β)G + βM (nesterov) else M; conv → (out, −1);
    O = NS(N) [coeffs ``ns_coefficients``, ``ns_steps``, X/max(‖X‖,ε) as torch does];
    W ← W(1 − lr·λ) − lr·s·O, s = max(1, m/n)^½ (adjust_lr_fn None/"original") or
    0.2·max(m, n)^½ ("match_rms_adamw"). (m, n) are the matrix-view dims.
    Others: AdamW(adam_lr, adam_betas, adam_eps, adam_weight_decay [default = weight_decay]).
    ``ns_dtype=torch.bfloat16`` reproduces torch's bf16 NS; the default float64 is the exact rule.
    """

    def __init__(self, params, lr=1e-3, weight_decay=0.1, momentum=0.95, nesterov=True,
                 ns_coefficients=MUON_COEFFS, eps=1e-7, ns_steps=5, adjust_lr_fn=None,
                 ns_dtype=F64, adam_lr=3e-4, adam_betas=(0.9, 0.95), adam_eps=1e-10,
                 adam_weight_decay=None, is_hidden=default_is_hidden):
        super().__init__(params)
        self.lr, self.weight_decay, self.momentum, self.nesterov = lr, weight_decay, momentum, nesterov
        self.ns_coefficients, self.eps, self.ns_steps = ns_coefficients, eps, ns_steps
        self.adjust_lr_fn, self.ns_dtype = adjust_lr_fn, ns_dtype
        self.adam_lr, self.adam_betas, self.adam_eps = adam_lr, adam_betas, adam_eps
        self.adam_weight_decay = weight_decay if adam_weight_decay is None else adam_weight_decay
        self.hidden = {name: bool(is_hidden(name, W)) for name, W in self.params.items()}

    def _update(self, name, W, G, st):
        if not self.hidden[name]:
            return adamw_update(W, G, st, self.adam_lr, self.adam_betas, self.adam_eps,
                                self.adam_weight_decay)
        beta = self.momentum
        st["momentum_buffer"] = beta * st.get("momentum_buffer", torch.zeros_like(G)) + (1 - beta) * G
        N = (1 - beta) * G + beta * st["momentum_buffer"] if self.nesterov else st["momentum_buffer"]
        N = as_matrix(N)
        O = newton_schulz(N, [tuple(self.ns_coefficients)], self.ns_steps, eps=self.eps,
                          dtype=self.ns_dtype, eps_mode="clamp")
        m, n = N.shape
        kind = "match_rms_adamw" if self.adjust_lr_fn == "match_rms_adamw" else "muon"
        W = W * (1 - self.lr * self.weight_decay)
        return W - self.lr * shape_scale(kind, m, n) * O.reshape(W.shape)
