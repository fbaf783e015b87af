"""Subspace / rotated-Adam references: Conda (arXiv 2509.24218, jie040109/Conda
conda_torch/conda.py), FRUGAL block and projected (arXiv 2411.07837, fzmushko/FRUGAL
frugal/proj_optimizer_templates.py),
DCT-AdamW and Trion (arXiv 2505.17967, IST-DASLab/ISTA-DASLab-Optimizers
ista_daslab_optimizers/fft_low_rank/dct_adamw.py, trion.py) with the DCT matrix of utils/dct.py.

Random choices are explicit callables so a test can feed the choice the implementation made:
FRUGAL ``select_active(k, names)`` / ``basis_fn(name, G, density)``, DCT ``index_fn``.
"""
from __future__ import annotations

import math

import torch

from tests.reference.baseline import adamw_update
from tests.reference.common import F64, ReferenceOptimizer, counter, newton_schulz, shape_scale


def dct_matrix(d: int) -> torch.Tensor:
    """utils/dct.py dct3_matrix: Q_ij = sqrt(2/d)·cos(π·i(2j+1)/(2d)), row 0 times sqrt(1/2)
    (orthogonal)."""
    i = torch.arange(d, dtype=F64).unsqueeze(1)
    j = torch.arange(d, dtype=F64).unsqueeze(0)
    Q = math.sqrt(2.0 / d) * torch.cos(math.pi * i * (2 * j + 1) / (2 * d))
    Q[0] *= math.sqrt(0.5)
    return Q


def adam_direction(st, g, betas, eps, prefix=""):
    """Bias-corrected Adam direction (m/(1−β₁ᵗ)) / (sqrt(v)/sqrt(1−β₂ᵗ) + ε); own counter."""
    b1, b2 = betas
    t = counter(st, prefix + "step")
    st[prefix + "exp_avg"] = b1 * st.get(prefix + "exp_avg", torch.zeros_like(g)) + (1 - b1) * g
    st[prefix + "exp_avg_sq"] = b2 * st.get(prefix + "exp_avg_sq", torch.zeros_like(g)) + (1 - b2) * g * g
    return (st[prefix + "exp_avg"] / (1 - b1**t)) / (st[prefix + "exp_avg_sq"].sqrt() / (1 - b2**t) ** 0.5 + eps)


class Conda(ReferenceOptimizer):
    """Conda (conda_torch/conda.py). For projected (2-D) W, with t counting from 0 before the step:
      m ← β₁m + (1−β₁)G;  if t % T == 0: m = UΣVᵀ, P = Vᵀ (rows ≥ cols) else U  [std]
      g' = GPᵀ, m' = mPᵀ (rows ≥ cols) else g' = PᵀG, m' = Pᵀm;  v ← β₂v + (1−β₂)g'²
      t ← t+1; step = lr·sqrt(1−β₂ᵗ)/(1−β₁ᵗ);  u' = m'/(sqrt(v) + ε);  u = s·u'P (or s·Pu')
      W ← W − step·u;  W ← W − lr·λ·W   (v is NOT re-rotated on refresh)
    Other params: the same Adam rule without projection and without s."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 update_proj_gap=2000, scale=0.25, projected=lambda name, W: W.ndim == 2):
        super().__init__(params)
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.update_proj_gap, self.scale = update_proj_gap, scale
        self.projected = {name: bool(projected(name, W)) for name, W in self.params.items()}

    def _update(self, name, W, G, st):
        b1, b2 = self.betas
        t0 = int(st.get("step", 0))
        st["exp_avg"] = b1 * st.get("exp_avg", torch.zeros_like(G)) + (1 - b1) * G
        m = st["exp_avg"]
        right = G.ndim == 2 and G.shape[0] >= G.shape[1]
        if self.projected[name]:
            if t0 % self.update_proj_gap == 0:
                U, _, Vh = torch.linalg.svd(m, full_matrices=False)
                st["P"] = Vh if right else U
            P = st["P"]
            g_p, m_p = (G @ P.T, m @ P.T) if right else (P.T @ G, P.T @ m)
        else:
            g_p, m_p = G, m
        st["exp_avg_sq"] = b2 * st.get("exp_avg_sq", torch.zeros_like(g_p)) + (1 - b2) * g_p * g_p
        t = counter(st)
        step = self.lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        u = m_p / (st["exp_avg_sq"].sqrt() + self.eps)
        if self.projected[name]:
            u = self.scale * (u @ P if right else P @ u)
        W = W - step * u
        return W - self.lr * self.weight_decay * W


def _frugal_free(rule, x):
    return {"sign_sgd": torch.sign, "sgd": lambda y: y, "no": torch.zeros_like}[rule](x)


class FRUGALBlock(ReferenceOptimizer):
    """FRUGAL, block projector (BlockOptimizer, default ``--optimizer frugal``). Global step
    counter k0 (0-based); at k0 % update_gap == 0: active = select_active(k0 // update_gap, names)
    over the projectable names, and (reset_statistics) their states are cleared. Projectable W:
      W ← W(1 − lr·λ);  active:   W ← W − lr·ρ_p·AdamDir(G)
                        inactive: W ← W − lr·ρ_p·ρ_i·sign(G) (sign_sgd) | ·G (sgd) | 0 (no)
    with ρ_p = proj_params_lr_scale, ρ_i = inactive_lr_scale. Others: plain AdamW(lr, betas, eps, λ)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 update_gap=200, select_active=None, density=0.25, inactive_update_rule="sign_sgd",
                 inactive_lr_scale=1.0, proj_params_lr_scale=1.0, reset_statistics=True,
                 projectable=lambda name, W: W.ndim == 2):
        super().__init__(params)
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.update_gap, self.density = update_gap, density
        self.select_active = select_active or self.cyclic_descending
        self.rule, self.inactive_lr_scale = inactive_update_rule, inactive_lr_scale
        self.proj_params_lr_scale, self.reset_statistics = proj_params_lr_scale, reset_statistics
        self.proj_names = [n for n, W in self.params.items() if projectable(n, W)]
        self.active: set[str] = set()
        self.k = 0

    def cyclic_descending(self, k, names):
        """Default order (INFERRED detail): the list reversed, a window of round(len·density) names
        advancing cyclically by one window per refresh."""
        order, a = list(reversed(names)), max(1, round(len(names) * self.density))
        return {order[(k * a + i) % len(order)] for i in range(a)}

    def step(self, grads):
        if self.k % self.update_gap == 0:
            self.active = set(self.select_active(self.k // self.update_gap, list(self.proj_names)))
            if self.reset_statistics:
                for n in self.proj_names:
                    self.state[n].clear()
        super().step(grads)
        self.k += 1

    def _update(self, name, W, G, st):
        if name not in self.proj_names:
            return adamw_update(W, G, st, self.lr, self.betas, self.eps, self.weight_decay)
        W = W * (1 - self.lr * self.weight_decay)
        lr_p = self.lr * self.proj_params_lr_scale
        if name in self.active:
            return W - lr_p * adam_direction(st, G, self.betas, self.eps)
        return W - lr_p * self.inactive_lr_scale * _frugal_free(self.rule, G)


def svd_std_basis(name, G, density):
    """GaLore/SVD projector at refresh: r = round(density·min(m,n)) singular vectors of G on the
    std side: rows ≥ cols → ("right", Vᵀ[:r]) else ("left", U[:, :r])."""
    U, _, Vh = torch.linalg.svd(G, full_matrices=False)
    r = max(1, round(density * min(G.shape)))
    return ("right", Vh[:r]) if G.shape[0] >= G.shape[1] else ("left", U[:, :r])


def coordinate_basis(idx, n, side="right"):
    """Coordinate projector: rows of I_n at ``idx`` ((r×n) for right = column subset; the left
    variant returns I_n[:, idx] (n×r) = row subset)."""
    E = torch.eye(n, dtype=F64)[torch.as_tensor(idx, dtype=torch.long)]
    return (side, E) if side == "right" else (side, E.T)


def random_columns(generator=None):
    def basis_fn(name, G, density):
        n = G.shape[1]
        return coordinate_basis(torch.randperm(n, generator=generator)[:max(1, round(density * n))], n)
    return basis_fn


class FRUGALProjected(ReferenceOptimizer):
    """FRUGAL with a GaLore/SVD or coordinate projector (GaloreOptimizer / CoordOptimizer).
    Per projectable W, with t0 its 0-based step: at t0 % update_gap == 0
    (side, P) = basis_fn(name, G, density) and (reset) the Adam state is cleared.
    down(G) = GPᵀ (right, P r×n) | PᵀG (left, P m×r); up = inverse map.
      W ← W(1 − lr·λ);  g↓ = down(G);  W ← W − lr·ρ_p·up(AdamDir(g↓)) − lr·ρ_p·ρ_i·free(G − up(g↓))
    free = sign (sign_sgd) | identity (sgd) | 0 (no, = GaLore). Others: plain AdamW."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 density=0.25, update_gap=200, basis_fn=svd_std_basis, inactive_update_rule="sign_sgd",
                 inactive_lr_scale=1.0, proj_params_lr_scale=1.0, reset_statistics=True,
                 projectable=lambda name, W: W.ndim == 2):
        super().__init__(params)
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.density, self.update_gap, self.basis_fn = density, update_gap, basis_fn
        self.rule, self.inactive_lr_scale = inactive_update_rule, inactive_lr_scale
        self.proj_params_lr_scale, self.reset_statistics = proj_params_lr_scale, reset_statistics
        self.proj = {name: bool(projectable(name, W)) for name, W in self.params.items()}

    def _update(self, name, W, G, st):
        if not self.proj[name]:
            return adamw_update(W, G, st, self.lr, self.betas, self.eps, self.weight_decay)
        t0 = int(st.get("step", 0))
        counter(st)
        if t0 % self.update_gap == 0:
            side, P = self.basis_fn(name, G, self.density)
            if self.reset_statistics:
                for k in [k for k in st if k.startswith("adam_")]:
                    del st[k]
            st["P"], st["right"] = P.to(F64), torch.tensor(side == "right")
        P, right = st["P"], bool(st["right"])
        down = (lambda x: x @ P.T) if right else (lambda x: P.T @ x)
        up = (lambda y: y @ P) if right else (lambda y: P @ y)
        g_low = down(G)
        residual = G - up(g_low)
        lr_p = self.lr * self.proj_params_lr_scale
        W = W * (1 - self.lr * self.weight_decay)
        W = W - lr_p * up(adam_direction(st, g_low, self.betas, self.eps, prefix="adam_"))
        return W - lr_p * self.inactive_lr_scale * _frugal_free(self.rule, residual)


def dct_scores_topk(S, r, right, ell_norm=1):
    """Default index choice: topk of the ℓ_p norms of S's columns (right) or rows (left),
    in topk's descending order (the code uses sorted=False: pass ``index_fn`` to match it)."""
    scores = S.norm(p=ell_norm, dim=0 if right else 1)
    return torch.topk(scores, r).indices


class _DCTSide:
    """Right projection (rows ≥ cols, d = n): S = AQ, a = S[:, idx], lift x ↦ x Q[:, idx]ᵀ.
    Left (rows < cols, d = m): S = QᵀA, a = S[idx, :], lift x ↦ Q[:, idx] x."""

    def __init__(self, shape):
        self.right = shape[0] >= shape[1]
        self.Q = dct_matrix(shape[1] if self.right else shape[0])

    def similarity(self, A):
        return A @ self.Q if self.right else self.Q.T @ A

    def take(self, S, idx):
        return S[:, idx] if self.right else S[idx, :]

    def lift(self, x, idx):
        return x @ self.Q[:, idx].T if self.right else self.Q[:, idx] @ x


class DCTAdamW(ReferenceOptimizer):
    """DCT-AdamW (fft_low_rank/dct_adamw.py) on 2-D params (others: plain AdamW), t0 = 0-based step:
      W ← W(1 − lr·λ);  A = G (+E if use_ef);  at t0 % gap == 0: idx = index_fn(S, r, right)
      [rotate_subspace & previous idx: R = Q[:, old]ᵀQ[:, new]; right m ← mR, v ← |vR|;
       left m ← Rᵀm, v ← |Rᵀv|];  a = take(S, idx);  EF: E ← A − lift(a)
      m ← β₁m + (1−β₁)a;  v ← β₂v + (1−β₂)a²;  u = m/(ε·sqrt(1−β₂ᵗ) + sqrt(v))
      W ← W − lr·sqrt(1−β₂ᵗ)/(1−β₁ᵗ)·lift(u).  State column k ↔ idx[k]."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, rank=4,
                 update_proj_gap=1, rotate_subspace=False, use_ef=False, ell_norm=1, index_fn=None,
                 projectable=lambda name, W: W.ndim == 2):
        super().__init__(params)
        self.lr, self.betas, self.eps, self.weight_decay, self.rank = lr, betas, eps, weight_decay, rank
        self.gap, self.rotate, self.use_ef, self.ell_norm = update_proj_gap, rotate_subspace, use_ef, ell_norm
        self.index_fn = index_fn or (lambda name, S, r, right: dct_scores_topk(S, r, right, ell_norm))
        self.proj = {name: bool(projectable(name, W)) for name, W in self.params.items()}

    def _update(self, name, W, G, st):
        if not self.proj[name]:
            return adamw_update(W, G, st, self.lr, self.betas, self.eps, self.weight_decay)
        b1, b2 = self.betas
        side = _DCTSide(G.shape)
        W = W * (1 - self.lr * self.weight_decay)
        A = G + st["E"] if self.use_ef and "E" in st else G
        S = side.similarity(A)
        t0 = int(st.get("step", 0))
        if t0 % self.gap == 0:
            new = torch.as_tensor(self.index_fn(name, S, self.rank, side.right), dtype=torch.long)
            if self.rotate and "idx" in st:
                R = side.Q[:, st["idx"]].T @ side.Q[:, new]
                if side.right:
                    st["exp_avg"], st["exp_avg_sq"] = st["exp_avg"] @ R, (st["exp_avg_sq"] @ R).abs()
                else:
                    st["exp_avg"], st["exp_avg_sq"] = R.T @ st["exp_avg"], (R.T @ st["exp_avg_sq"]).abs()
            st["idx"] = new
        idx = st["idx"]
        a = side.take(S, idx)
        if self.use_ef:
            st["E"] = A - side.lift(a, idx)
        st["exp_avg"] = b1 * st.get("exp_avg", torch.zeros_like(a)) + (1 - b1) * a
        st["exp_avg_sq"] = b2 * st.get("exp_avg_sq", torch.zeros_like(a)) + (1 - b2) * a * a
        t = counter(st)
        bc2 = math.sqrt(1 - b2**t)
        u = st["exp_avg"] / (self.eps * bc2 + st["exp_avg_sq"].sqrt())
        return W - self.lr * bc2 / (1 - b1**t) * side.lift(u, idx)


class Trion(ReferenceOptimizer):
    """Trion (fft_low_rank/trion.py) on 2-D params: M ← M + G; S = sim(M); idx = index_fn
    (every step); m_r = take(S, idx); M ← M − (1−μ)·lift(m_r); O = NS(m_r) (Muon coeffs, 5 steps);
    W ← W(1 − lr·λ) − lr·s·lift(O), s = shape_scale(scale ∈ kj|kimi|dion|none) on (m, n)."""

    def __init__(self, params, lr=0.02, momentum=0.95, rank=4, weight_decay=0.0, scale="kj",
                 ns_steps=5, index_fn=None, ns_dtype=F64):
        super().__init__(params)
        self.lr, self.momentum, self.rank, self.weight_decay = lr, momentum, rank, weight_decay
        self.scale, self.ns_steps, self.ns_dtype = scale, ns_steps, ns_dtype
        self.index_fn = index_fn or (lambda name, S, r, right: dct_scores_topk(S, r, right, 1))

    def _update(self, name, W, G, st):
        side = _DCTSide(G.shape)
        st["momentum_buffer"] = st.get("momentum_buffer", torch.zeros_like(G)) + G
        S = side.similarity(st["momentum_buffer"])
        idx = torch.as_tensor(self.index_fn(name, S, self.rank, side.right), dtype=torch.long)
        st["idx"] = idx
        m_r = side.take(S, idx)
        st["momentum_buffer"] = st["momentum_buffer"] - (1 - self.momentum) * side.lift(m_r, idx)
        O = newton_schulz(m_r, "muon", self.ns_steps, dtype=self.ns_dtype)
        W = W * (1 - self.lr * self.weight_decay)
        return W - self.lr * shape_scale(self.scale, *G.shape) * side.lift(O, idx)
