"""Muon-family reference oracles: AuON (paper v1 / repo HEAD), Hybrid-AuON, ROOT, PolarGrad,
low-rank Muon (arXiv 2509.24320, 2511.20626, 2505.21799, 2509.11983; the official code is named
per class).
NS presets live in ``common`` and are re-exported here. Matrix rules view conv weights as
(out, in·kh·kw) (docs/derivations.md#routing).
"""
from __future__ import annotations

import torch

from tests.reference.common import F64, MUON_COEFFS, NS_NORMALIZATION, NS_PRESETS, ReferenceOptimizer, as_matrix, newton_schulz, ns_scalar_map, polar_svd, shape_scale


def _nesterov_ema(st, G, beta):
    """M ← βM + (1−β)G; returns N = (1−β)G + βM (Keller's Nesterov blend,
    docs/derivations.md#nesterov-forms)."""
    st["momentum_buffer"] = beta * st.get("momentum_buffer", torch.zeros_like(G)) + (1 - beta) * G
    return (1 - beta) * G + beta * st["momentum_buffer"]


def cosh_rms(X: torch.Tensor) -> torch.Tensor:
    """r = sqrt(mean(cosh(X)²)) — AuON's scalar (arXiv 2509.24320 v1 §3.1)."""
    return torch.cosh(X).square().mean().sqrt()


class AuON(ReferenceOptimizer):
    """AuON (arXiv 2509.24320; ryyzn9/AuON). ``version="v1"`` (paper v1 §3.1 = Auon_Adam_train.py
    at commit c87b862):
        N = Nesterov-EMA(G); X = γN/(‖N‖_F + 1e-7) [γ = 1]; r = sqrt(mean cosh²(X));
        U = (N/(‖N‖_F + 1e-7))/(r + 1e-8) (γ only enters r); W ← W − lr·max(1, m/n)^½·U.
    ``version="head"`` (repo HEAD, auon/optimizer.py class AuON): W ← W(1 − lr·λ·wd_mul) first;
        X = γN/(‖N‖_F+1e-7)
        [γ = 1.5]; r as above; U = N/(r + 1e-8) (raw momentum!); W ← W − lr·U.
    The paper v1 has no weight decay; ``weight_decay`` (default 0) is applied first in both.
    1-D params use the same rule with shape factor 1.
    """

    def __init__(self, params, lr=0.08, momentum=0.95, weight_decay=0.0, version="v1",
                 gamma=None, wd_mul=1.0):
        super().__init__(params)
        assert version in ("v1", "head")
        self.lr, self.momentum, self.weight_decay, self.version = lr, momentum, weight_decay, version
        self.gamma = (1.0 if version == "v1" else 1.5) if gamma is None else gamma
        self.wd_mul = wd_mul

    def _update(self, name, W, G, st):
        W = W * (1 - self.lr * self.weight_decay * self.wd_mul)
        N = _nesterov_ema(st, G, self.momentum)
        X = self.gamma * N / (N.norm() + 1e-7)
        r = cosh_rms(X)
        if self.version == "v1":
            U = (N / (N.norm() + 1e-7)) / (r + 1e-8)
            M = as_matrix(N)
            scale = shape_scale("muon", *M.shape) if M.ndim == 2 else 1.0
            return W - self.lr * scale * U
        return W - self.lr * N / (r + 1e-8)


class HybridAuON(ReferenceOptimizer):
    """Hybrid-AuON (arXiv 2509.24320; repo auon/optimizer.py ``HybridAuON``):
    W ← W(1 − lr·λ); N = Nesterov-EMA(G);
    matrices: O = NS(N; muon coeffs, ``ns_steps`` [repo 5, paper 1], input dtype, X/(‖X‖+1e-7));
    1-D: O = N; then the HEAD brake X = γO/(‖O‖+1e-7), r = sqrt(mean cosh²X), U = O/(r+1e-8);
    W ← W − lr·U."""

    def __init__(self, params, lr=0.08, momentum=0.95, weight_decay=0.0, ns_steps=5, gamma=1.5,
                 ns_dtype=F64):
        super().__init__(params)
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.ns_steps, self.gamma, self.ns_dtype = ns_steps, gamma, ns_dtype

    def _update(self, name, W, G, st):
        W = W * (1 - self.lr * self.weight_decay)
        N = _nesterov_ema(st, G, self.momentum)
        O = newton_schulz(as_matrix(N), "muon", self.ns_steps, dtype=self.ns_dtype).reshape(W.shape) \
            if W.ndim >= 2 else N
        r = cosh_rms(self.gamma * O / (O.norm() + 1e-7))
        return W - self.lr * O / (r + 1e-8)


# ROOT coefficient table (huawei-noah/noah-research ROOT/examples/example_train.py, root5) keyed by
# (min(m, n), max(m, n)); other shapes fall back to Muon's.
ROOT_COEFFS = {
    (2048, 2048): (3.4916, -4.8224, 2.1095),
    (2048, 3072): (3.4509, -4.5790, 1.9325),
    (2048, 8192): (2.9794, -3.6674, 1.6207),
    (2048, 16384): (3.1943, -3.8221, 1.5322),
}


def root_coeffs(m: int, n: int, table=None):
    """(a, b, c) for an m×n matrix from ROOT's table, else the Muon fallback (as root5)."""
    table = ROOT_COEFFS if table is None else table
    return table.get((min(m, n), max(m, n)), MUON_COEFFS)


def root_clip(N: torch.Tensor, q: float = 0.9):
    """ε = quantile(|N|, q) + 1e-9 (linear interpolation, = the code's ``simple_quantile``);
    returns (Bc, ε) with Bc = N − sign(N)·relu(|N| − ε) = clamp(N, −ε, ε)
    (ROOT's simple_quantile and soft threshold)."""
    eps = torch.quantile(N.abs().flatten(), q) + 1e-9
    outliers = torch.sign(N) * torch.relu(N.abs() - eps)
    return N - outliers, eps


class ROOT(ReferenceOptimizer):
    """ROOT (arXiv 2511.20626; example_train.py class ROOT):
    B ← μB + G; N = G + μB (nesterov) else B; conv → (out,−1);
    ε = quantile(|N|, q=0.9, linear interpolation) + 1e-9; Bc = N − sign(N)·relu(|N| − ε)
    (= clamp(N, −ε, ε)); U = NS(Bc; root_coeffs(m, n), 5 steps, X/(‖X‖+1e-7)) in float64 (code:
    fp32); W ← W(1 − lr·λ) − lr·0.2·max(m, n)^½·U. ``coeff_table`` extends/replaces the table."""

    def __init__(self, params, lr=1e-3, momentum=0.95, weight_decay=0.1, nesterov=True,
                 root_steps=5, quantile=0.9, coeff_table=None, ns_dtype=F64):
        super().__init__(params)
        self.lr, self.momentum, self.weight_decay, self.nesterov = lr, momentum, weight_decay, nesterov
        self.root_steps, self.quantile, self.ns_dtype = root_steps, quantile, ns_dtype
        self.coeff_table = dict(ROOT_COEFFS) if coeff_table is None else coeff_table

    def _update(self, name, W, G, st):
        st["momentum_buffer"] = self.momentum * st.get("momentum_buffer", torch.zeros_like(G)) + G
        N = G + self.momentum * st["momentum_buffer"] if self.nesterov else st["momentum_buffer"]
        N = as_matrix(N)
        Bc, _ = root_clip(N, self.quantile)
        m, n = N.shape
        U = newton_schulz(Bc, [root_coeffs(m, n, self.coeff_table)], self.root_steps,
                          safety=1.0, eps=1e-7, dtype=self.ns_dtype)
        W = W * (1 - self.lr * self.weight_decay)
        return W - self.lr * shape_scale("moonlight", m, n) * U.reshape(W.shape)


def _as_2d(X):
    return X.reshape(1, -1) if X.ndim == 1 else as_matrix(X)


class PolarGrad(ReferenceOptimizer):
    """PolarGrad (arXiv 2505.21799; timlautk/polargrad polar_grad.py). ``polar`` defaults to the
    exact SVD polar factor.
    Momentum-first: M ← βM + (1−β)G; U = polar(M); ν = ⟨M, U⟩_F (= ‖M‖_*);
        W ← W(1 − lr·λ) − lr·ν·U.
    Polar-first: U = polar(G); ν = ⟨G, U⟩_F; M ← βM + (1−β)U; W ← W(1 − lr·λ) − lr·ν·M.
    No shape factor. Conv → (out, −1); a vector is treated as a 1×n matrix."""

    def __init__(self, params, lr=0.02, momentum=0.95, weight_decay=0.0, polar_first=False,
                 polar=polar_svd):
        super().__init__(params)
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.polar_first, self.polar = polar_first, polar

    def _update(self, name, W, G, st):
        beta = self.momentum
        M = st.get("momentum_buffer", torch.zeros_like(G))
        if self.polar_first:
            U = self.polar(_as_2d(G)).reshape(G.shape)
            nu = (G * U).sum()
            st["momentum_buffer"] = beta * M + (1 - beta) * U
            step = nu * st["momentum_buffer"]
        else:
            st["momentum_buffer"] = beta * M + (1 - beta) * G
            M = st["momentum_buffer"]
            U = self.polar(_as_2d(M)).reshape(G.shape)
            nu = (M * U).sum()
            step = nu * U
        st["nu"] = nu
        return W * (1 - self.lr * self.weight_decay) - self.lr * step


def column_select(idx_fn):
    """Range finder from column selection (dengzhanwang/Low-rank-Muon zeropower_via_newtonschulz5):
    ``idx_fn(name, X, r) -> idx``; Q = qr(X[:, idx]).Q.
    X is the wide-oriented (rows ≤ cols) matrix."""
    def finder(name, X, r):
        idx = torch.as_tensor(idx_fn(name, X, r), dtype=torch.long)
        return torch.linalg.qr(X[:, idx]).Q
    return finder


def random_column_select(generator=None):
    return column_select(lambda name, X, r: torch.randperm(X.shape[1], generator=generator)[:r])


def low_rank_orthogonalize(X, Q, ns_steps=5, ns_dtype=F64):
    """LRO_r on a wide X with range basis Q (m×r): C = QᵀX; Ō = NS(C/‖C‖_F); return QŌ
    (arXiv 2509.11983)."""
    C = Q.T @ X
    return Q @ newton_schulz(C / C.norm(), "muon", ns_steps, dtype=ns_dtype)


class LowRankMuon(ReferenceOptimizer):
    """Low-rank Muon (arXiv 2509.11983): M ← βM + (1−β)G; N = (1−β)G + βM (nesterov) else M;
    conv → (out,−1);
    wide orientation (transpose if m > n); Q = range_finder(name, X, rank); O = Q·NS(QᵀX/‖QᵀX‖);
    transpose back; W ← W(1 − lr·λ) − lr·s·O with s = shape_scale(``shape``) [muon].
    Matrices with min(m, n) ≤ ``min_dim`` use full NS instead (code: 500/1000).
    ``momentum=0, nesterov=False, shape="none"`` gives low-rank MSGD.
    ``range_finder(name, X_wide, r) -> Q`` (orthonormal columns): feed the implementation's choice,
    e.g. ``column_select(lambda name, X, r: chosen_idx)``."""

    def __init__(self, params, lr=0.025, momentum=0.95, weight_decay=0.01, rank=200, nesterov=True,
                 range_finder=None, ns_steps=5, shape="muon", min_dim=0, ns_dtype=F64):
        super().__init__(params)
        self.lr, self.momentum, self.weight_decay, self.rank = lr, momentum, weight_decay, rank
        self.nesterov, self.ns_steps, self.shape, self.min_dim = nesterov, ns_steps, shape, min_dim
        self.range_finder = random_column_select() if range_finder is None else range_finder
        self.ns_dtype = ns_dtype

    def _update(self, name, W, G, st):
        beta = self.momentum
        st["momentum_buffer"] = beta * st.get("momentum_buffer", torch.zeros_like(G)) + (1 - beta) * G
        N = (1 - beta) * G + beta * st["momentum_buffer"] if self.nesterov else st["momentum_buffer"]
        N = as_matrix(N)
        m, n = N.shape
        if min(m, n) <= self.min_dim:
            O = newton_schulz(N, "muon", self.ns_steps, dtype=self.ns_dtype)
        else:
            X = N.T if m > n else N
            Q = self.range_finder(name, X, self.rank).to(F64)
            O = low_rank_orthogonalize(X, Q, self.ns_steps, self.ns_dtype)
            O = O.T if m > n else O
        W = W * (1 - self.lr * self.weight_decay)
        return W - self.lr * shape_scale(self.shape, m, n) * O.reshape(W.shape)
