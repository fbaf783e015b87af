"""References for rules with no official code: Drop-Muon (arXiv 2510.02239), FISMO (arXiv
2601.21750, Algorithm 1), LANTON (arXiv 2510.14009, Algorithm 1; INFERRED parts exposed as
parameters). Matrices: conv weights viewed as (out, in·kh·kw).
"""
from __future__ import annotations

import math

import torch

from tests.reference.common import F64, ReferenceOptimizer, as_matrix, newton_schulz, polar_svd, shape_scale


def suffix_active_set(ordered_names, s: int) -> set:
    """Drop-Muon default scheme: layers s, …, b (all from index s to the last)."""
    return set(list(ordered_names)[s:])


def _sharp(kind, X, ns_steps):
    if X.ndim < 2 or kind == "identity":
        return X  # vectors: Euclidean sharp (identity)
    M = as_matrix(X)
    O = newton_schulz(M, "muon", ns_steps) if kind == "ns" else polar_svd(M)
    return O.reshape(X.shape)


class DropMuon(ReferenceOptimizer):
    """Drop-Muon (arXiv 2510.02239). ``step(grads, active)``: for i ∈ active (None = all):
      M_i ← (1−β)M_i + βG_i   (β = weight on the NEW gradient, as in the paper)
      W_i ← W_i − γ_i·s·M_i^♯,  ♯ = NS (``sharp="ns"``), exact polar (``"svd"``) or identity;
      γ_i = layer_lr.get(i, lr), s = shape_scale(``shape``) [none].
    Inactive layers: weights and momentum frozen (no decay)."""

    def __init__(self, params, lr=0.02, beta=0.05, sharp="ns", ns_steps=5, layer_lr=None,
                 shape="none"):
        super().__init__(params)
        self.lr, self.beta, self.sharp, self.ns_steps = lr, beta, sharp, ns_steps
        self.layer_lr, self.shape = dict(layer_lr or {}), shape

    def step(self, grads, active=None):
        active = set(self.params) if active is None else set(active)
        super().step({n: g for n, g in grads.items() if n in active})

    def _update(self, name, W, G, st):
        st["momentum_buffer"] = (1 - self.beta) * st.get("momentum_buffer", torch.zeros_like(G)) + self.beta * G
        s = shape_scale(self.shape, *as_matrix(W).shape) if W.ndim >= 2 else 1.0
        return W - self.layer_lr.get(name, self.lr) * s * _sharp(self.sharp, st["momentum_buffer"], self.ns_steps)


def inv_psd(A):
    return torch.linalg.inv(A)


def inv_sqrt_psd(A):
    """A^{−1/2} for symmetric positive definite A, by eigh."""
    lam, V = torch.linalg.eigh(A)
    return V @ torch.diag(lam.rsqrt()) @ V.T


def sym(A):
    return (A + A.T) / 2


class FISMO(ReferenceOptimizer):
    """FISMO (arXiv 2601.21750, Algorithm 1 as quoted by third-party notes), G m×n:
      L = (1/n)·G Q⁻¹ Gᵀ + μ·(tr P/m)·I;   P ← sym(m·P̃/tr P̃), P̃ = γP + (1−γ)L
      R = (1/m)·Gᵀ P⁻¹ Gᵀᵀ + μ·(tr Q/n)·I (uses the NEW P);  Q ← sym(n·Q̃/tr Q̃), Q̃ = γQ + (1−γ)R
      G̃ = P^{−1/2} G Q^{−1/2};  M ← βM + (1−β)G̃;  ΔW = P^{−1/2} polar(M) Q^{−1/2}
      W ← W(1 − lr·λ) − lr·s·ΔW   (λ = 0, s = 1 [shape="none"] reproduce the note; INFERRED extras)
    ``polar="ns"`` (Muon NS, 5 steps, float64) or ``"svd"``. P, Q start at I. ``ns_eps_mode``:
    NS pre-normalizes X/(‖X‖_F + 1e-7) ("add", Keller's form) or X/max(‖X‖_F, 1e-7) ("clamp",
    torch.optim.Muon's); both are documented Muon variants, differing by 1e-7/‖M‖ relative."""

    def __init__(self, params, lr=0.02, beta=0.95, gamma=0.95, mu=1e-3, polar="ns", ns_steps=5,
                 weight_decay=0.0, shape="none", ns_eps_mode="add"):
        super().__init__(params)
        self.lr, self.beta, self.gamma, self.mu = lr, beta, gamma, mu
        self.polar, self.ns_steps, self.weight_decay, self.shape = polar, ns_steps, weight_decay, shape
        self.ns_eps_mode = ns_eps_mode

    def _update(self, name, W, G, st):
        Gm = as_matrix(G)
        m, n = Gm.shape
        P = st.get("P", torch.eye(m, dtype=F64))
        Q = st.get("Q", torch.eye(n, dtype=F64))
        L = Gm @ inv_psd(Q) @ Gm.T / n + self.mu * torch.trace(P) / m * torch.eye(m, dtype=F64)
        Pt = self.gamma * P + (1 - self.gamma) * L
        P = sym(m / torch.trace(Pt) * Pt)
        R = Gm.T @ inv_psd(P) @ Gm / m + self.mu * torch.trace(Q) / n * torch.eye(n, dtype=F64)
        Qt = self.gamma * Q + (1 - self.gamma) * R
        Q = sym(n / torch.trace(Qt) * Qt)
        st["P"], st["Q"] = P, Q
        Pi, Qi = inv_sqrt_psd(P), inv_sqrt_psd(Q)
        G_w = Pi @ Gm @ Qi
        st["momentum_buffer"] = self.beta * st.get("momentum_buffer", torch.zeros_like(G_w)) + (1 - self.beta) * G_w
        M = st["momentum_buffer"]
        O = newton_schulz(M, "muon", self.ns_steps, eps_mode=self.ns_eps_mode) if self.polar == "ns" else polar_svd(M)
        dW = Pi @ O @ Qi
        W = W * (1 - self.lr * self.weight_decay)
        return W - self.lr * shape_scale(self.shape, m, n) * dW.reshape(W.shape)


def nuclear_norm(X):
    return torch.linalg.svdvals(X).sum()


class LANTON(ReferenceOptimizer):
    """LANTON on a Scion/D-Muon base (arXiv 2510.14009; the noise estimator and lr normalisation
    are INFERRED
    and exposed as parameters). Groups: ``group_fn(name, W)`` → "muon" | "sign".
    Per param (B, G_prev start at 0):
      D = G − B_{t−1} (estimator="option1") or G − G_{t−1} ("option2")
      dual = ‖D‖_*·sqrt(n/m) (muon group, matrix view m×n) or ‖D‖₁ (sign group)
      v ← β₂v + (1−β₂)dual²;  B ← β₁B + (1−β₁)G
    Per group (over the params stepped now): ρ = min (group_min) | mean (group_mean) of sqrt(v),
      or 1 ("none");  lr_ℓ = lr·ρ/(sqrt(v_ℓ) + ε)
    Update: muon W ← W(1 − lr·λ) − lr_ℓ·sqrt(m/n)·NS(B);  sign W ← W(1 − lr·λ) − lr_ℓ·sign(B)."""

    def __init__(self, params, lr=0.02, beta1=0.9, beta2=0.99, eps=0.0, estimator="option1",
                 normalization="group_min", group_fn=None, ns_steps=5, weight_decay=0.0):
        super().__init__(params)
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.estimator, self.normalization, self.ns_steps = estimator, normalization, ns_steps
        self.weight_decay = weight_decay
        if group_fn is None:
            from tests.reference.baseline import default_is_hidden
            group_fn = lambda name, W: "muon" if default_is_hidden(name, W) else "sign"  # noqa: E731
        self.group = {name: group_fn(name, W) for name, W in self.params.items()}

    def step(self, grads):
        names = [n for n in self.params if n in grads and grads[n] is not None]
        for name in names:
            G, st = grads[name].detach().to(F64), self.state[name]
            B_prev = st.get("momentum_buffer", torch.zeros_like(G))
            ref = B_prev if self.estimator == "option1" else st.get("prev_grad", torch.zeros_like(G))
            D = G - ref
            if self.group[name] == "muon":
                Dm = as_matrix(D)
                dual = nuclear_norm(Dm) * math.sqrt(Dm.shape[1] / Dm.shape[0])
            else:
                dual = D.abs().sum()
            st["v"] = self.beta2 * st.get("v", torch.zeros((), dtype=F64)) + (1 - self.beta2) * dual**2
            st["momentum_buffer"] = self.beta1 * B_prev + (1 - self.beta1) * G
            st["prev_grad"] = G
        rho = {}
        for g in set(self.group[n] for n in names):
            roots = torch.stack([self.state[n]["v"].sqrt() for n in names if self.group[n] == g])
            rho[g] = {"group_min": roots.min(), "group_mean": roots.mean(),
                      "none": torch.tensor(1.0, dtype=F64)}[self.normalization]
        for name in names:
            st, W = self.state[name], self.params[name]
            lr_l = self.lr * rho[self.group[name]] / (st["v"].sqrt() + self.eps)
            st["lr"] = lr_l
            B = st["momentum_buffer"]
            W = W * (1 - self.lr * self.weight_decay)
            if self.group[name] == "muon":
                Bm = as_matrix(B)
                O = newton_schulz(Bm, "muon", self.ns_steps)
                W = W - lr_l * shape_scale("spectral", *Bm.shape) * O.reshape(W.shape)
            else:
                W = W - lr_l * torch.sign(B)
            self.params[name] = W
