"""Float64 oracles for the well-known optimizers of issue 14 ("Any optimizer a researcher knows"):
an optimizer of torch.optim or pytorch_optimizer (4.1.0, a test-only dependency) run on float64
copies of the parameters, so that a comparison with a float32 spec sees the spec's rounding and
nothing of the oracle's. Shares no code with ``optloom``.

``Float64Optim(params: list[(name, tensor)], make)`` with ``make(list of float64 leaf tensors)`` →
an optimizer; ``.step(grads: dict[name, tensor])``, ``.params: dict[name, tensor]``, ``.state``
(the wrapped optimizer's per-parameter state, by name)."""
from __future__ import annotations

from typing import Any, Callable

import torch


class Float64Optim:
    def __init__(self, params: list[tuple[str, torch.Tensor]], make: Callable[[list[torch.Tensor]], Any]):
        self.w = {k: v.detach().double().clone().requires_grad_(True) for k, v in params}
        self.opt = make(list(self.w.values()))

    def step(self, grads: dict[str, torch.Tensor]) -> None:
        for k, w in self.w.items():
            w.grad = grads[k].detach().double().clone().reshape(w.shape)
        self.opt.step()

    @property
    def params(self) -> dict[str, torch.Tensor]:
        return {k: w.detach() for k, w in self.w.items()}

    @property
    def state(self) -> dict[str, dict[str, Any]]:
        return {k: self.opt.state[w] for k, w in self.w.items()}


def float64_part(make: Callable[[list[torch.Tensor]], Any]) -> Callable[[list], Float64Optim]:
    """A contract part (``part(named_params)``): ``make`` run on float64 copies."""
    return lambda named: Float64Optim(named, make)


class NorMuon:
    """NorMuon in float64, from arXiv 2510.05491 Alg. 1 and zichongli5/NorMuon ``normuon.py``, for
    matrices (a conv weight as its (out, −1) view): ``M ← βM + (1−β)G``; ``O = NS₅(N)`` with the
    Nesterov blend ``N = (1−β)G + βM`` (or ``M``); ``v ← β₂v + (1−β₂)·mean_j O_ij²``;
    ``Ô = O/(sqrt(v) + ε)``; ``W ← W(1 − lr·λ) − lr·0.2·sqrt(mn)·Ô/(‖Ô‖_F + ε·sqrt(mn))``.
    ``newton_schulz(X)`` is passed in (the reference's float64 quintic)."""

    def __init__(self, params, newton_schulz, lr=0.02, momentum=0.95, beta2=0.95, eps=1e-10, weight_decay=0.0,
                 nesterov=True):
        self.w = {k: v.detach().double().clone() for k, v in params}
        self.ns, self.lr, self.mu, self.beta2, self.eps, self.wd, self.nesterov = (
            newton_schulz, lr, momentum, beta2, eps, weight_decay, nesterov)
        self.state = {k: {"M": torch.zeros_like(v), "v": torch.zeros(v.shape[0], 1, dtype=torch.float64)}
                      for k, v in self.w.items()}

    def step(self, grads):
        for k, W in self.w.items():
            st = self.state[k]
            G = grads[k].double()
            st["M"] = self.mu * st["M"] + (1 - self.mu) * G
            N = (1 - self.mu) * G + self.mu * st["M"] if self.nesterov else st["M"]
            O = self.ns(N.reshape(N.shape[0], -1))
            st["v"] = self.beta2 * st["v"] + (1 - self.beta2) * (O * O).mean(dim=1, keepdim=True)
            Oh = O / (st["v"].sqrt() + self.eps)
            size = Oh.numel() ** 0.5
            U = 0.2 * size * Oh / (Oh.norm() + self.eps * size)
            self.w[k] = W * (1 - self.lr * self.wd) - self.lr * U.reshape(W.shape)

    @property
    def params(self):
        return dict(self.w)


class Shampoo:
    """Shampoo in float64 from arXiv 1802.09568, Alg. 1: ``L₀ = εI_m``, ``R₀ = εI_n``;
    ``L ← L + GGᵀ``, ``R ← R + GᵀG``; ``W ← W − lr·L^{−1/4} G R^{−1/4}`` — conv weights as their
    (out, −1) view, vectors as n×1 columns; roots by an eigendecomposition, recomputed every
    ``frequency`` steps (1, T+1, …) and cached in between."""

    def __init__(self, params, lr=0.1, eps=1e-4, frequency=1):
        self.w = {k: v.detach().double().clone() for k, v in params}
        self.lr, self.frequency, self.t = lr, frequency, 0
        self.state = {}
        for k, v in self.w.items():
            m = v.reshape(v.shape[0], -1)
            self.state[k] = {"L": eps * torch.eye(m.shape[0], dtype=torch.float64),
                             "R": eps * torch.eye(m.shape[1], dtype=torch.float64)}

    @staticmethod
    def _root(A):
        lam, V = torch.linalg.eigh(A)
        return V @ torch.diag(lam ** -0.25) @ V.T

    def step(self, grads):
        self.t += 1
        for k, W in self.w.items():
            st = self.state[k]
            G = grads[k].double().reshape(W.shape[0], -1)
            st["L"] = st["L"] + G @ G.T
            st["R"] = st["R"] + G.T @ G
            if (self.t - 1) % self.frequency == 0:
                st["PL"], st["PR"] = self._root(st["L"]), self._root(st["R"])
            self.w[k] = W - self.lr * (st["PL"] @ G @ st["PR"]).reshape(W.shape)

    @property
    def params(self):
        return dict(self.w)


class Prodigy:
    """Prodigy in float64, restated from konstmish/prodigy ``prodigyopt/prodigy.py`` (arXiv
    2306.06101, Alg. 4; defaults: no bias correction, no safeguard warm-up, decoupled decay), one
    param group: the global sums are Python floats (the official ``.item()`` accumulations;
    pytorch_optimizer 4.1.0 keeps them in float32 tensors). Per step, with ``d_lr = d·lr``:
    ``r ← β₃r + Σ (d/d₀)·d_lr·⟨g, W₀ − W⟩``; ``m ← β₁m + (1−β₁)·d·g``; ``v ← β₂v + (1−β₂)·d²g²``;
    ``s ← β₃s + (d/d₀)·d_lr·g``; ``d̂ = d_coef·r/Σ‖s‖₁``; ``d ← max(d, d̂)`` while ``d = d₀``;
    ``d_max ← max(d_max, d̂)``; ``d ← min(d_max, d·growth)``; ``W ← W(1 − d_lr·λ) − d_lr·m/(sqrt(v) + d·ε)``."""

    def __init__(self, params, lr=1.0, betas=(0.9, 0.999), beta3=None, d0=1e-6, d_coef=1.0,
                 growth_rate=float("inf"), weight_decay=0.0, eps=1e-8):
        self.w = {k: v.detach().double().clone() for k, v in params}
        self.lr, self.betas, self.d0, self.d_coef, self.growth, self.wd, self.eps = (
            lr, betas, d0, d_coef, growth_rate, weight_decay, eps)
        self.beta3 = beta3 if beta3 is not None else betas[1] ** 0.5
        self.d = self.d_max = d0
        self.numerator = 0.0
        self.state = {k: {"p0": v.clone(), "s": torch.zeros_like(v), "exp_avg": torch.zeros_like(v),
                          "exp_avg_sq": torch.zeros_like(v)} for k, v in self.w.items()}

    def step(self, grads):
        (b1, b2), b3, d, d0 = self.betas, self.beta3, self.d, self.d0
        d_lr = d * self.lr
        self.numerator *= b3
        denominator = 0.0
        for k, W in self.w.items():
            st, g = self.state[k], grads[k].double().reshape(W.shape)
            self.numerator += (d / d0) * d_lr * float(torch.dot(g.flatten(), (st["p0"] - W).flatten()))
            st["exp_avg"] = b1 * st["exp_avg"] + d * (1 - b1) * g
            st["exp_avg_sq"] = b2 * st["exp_avg_sq"] + d * d * (1 - b2) * g * g
            st["s"] = b3 * st["s"] + (d / d0) * d_lr * g
            denominator += float(st["s"].abs().sum())
        d_hat = self.d_coef * self.numerator / denominator
        if d == d0:
            d = max(d, d_hat)
        self.d_max = max(self.d_max, d_hat)
        self.d = d = min(self.d_max, d * self.growth)
        for k, W in self.w.items():
            st = self.state[k]
            W = W * (1 - d_lr * self.wd)
            self.w[k] = W - d_lr * st["exp_avg"] / (st["exp_avg_sq"].sqrt() + d * self.eps)

    @property
    def params(self):
        return dict(self.w)


class SOAP:
    """SOAP in float64, restated from the official code (nikhilvyas/SOAP ``soap.py``, paper-time
    version; arXiv 2409.11321), with its defaults merge_dims = False → here conv weights as their
    (out, −1) view, max_precond_dim = 10000 (every test dim preconditioned), precondition_1d =
    False (vectors: Adam), normalize_grads = False, correct_bias = True. Official step count
    ``s`` (0 on the first call): the first call only accumulates ``GG`` and takes ``Q = eigh``
    (flipped to descending); later calls rotate ``G``, keep ``exp_avg`` in the rotated space
    (projected back and forward around every preconditioner update), step with
    ``lr·sqrt(1−β₂ˢ)/(1−β₁ˢ)``, decay after the step, then update ``GG`` and, when
    ``s % frequency == 0``, refresh ``Q`` by one power iteration + QR on the columns sorted by
    ``diag(Qᵀ GG Q)`` descending, permuting ``exp_avg_sq`` the same way."""

    def __init__(self, params, lr=3e-3, betas=(0.95, 0.95), shampoo_beta=0.95, eps=1e-8, weight_decay=0.01,
                 frequency=10):
        self.w = {k: v.detach().double().clone() for k, v in params}
        self.lr, self.betas, self.sb, self.eps, self.wd, self.f = lr, betas, shampoo_beta, eps, weight_decay, frequency
        self.state = {k: {} for k in self.w}

    @staticmethod
    def _project(x, Q, back=False):
        return x if not Q else (Q[0] @ x @ Q[1].T if back else Q[0].T @ x @ Q[1])

    def _update_preconditioner(self, G, st):
        if st["Q"] is not None:
            st["exp_avg"] = self._project(st["exp_avg"], st["Q"], back=True)
        L, R = st["GG"]
        L += (1 - self.sb) * (G @ G.T - L)  # lerp_
        R += (1 - self.sb) * (G.T @ G - R)
        if st["Q"] is None:
            st["Q"] = [torch.flip(torch.linalg.eigh(M)[1], [1]) for M in (L, R)]
        if st["step"] > 0 and st["step"] % self.f == 0:
            new, v = [], st["exp_avg_sq"]
            for ind, (M, O) in enumerate(zip((L, R), st["Q"])):
                idx = torch.argsort(torch.diag(O.T @ M @ O), descending=True)
                v = v.index_select(ind, idx)
                new.append(torch.linalg.qr(M @ O[:, idx])[0])
            st["Q"], st["exp_avg_sq"] = new, v
        if st["step"] > 0:
            st["exp_avg"] = self._project(st["exp_avg"], st["Q"])

    def step(self, grads):
        b1, b2 = self.betas
        for k, W in self.w.items():
            st = self.state[k]
            G = grads[k].double().reshape(W.shape[0], -1) if W.ndim >= 2 else grads[k].double().reshape(-1)
            if not st:
                st.update(step=0, exp_avg=torch.zeros_like(G), exp_avg_sq=torch.zeros_like(G),
                          Q=None if W.ndim >= 2 else [],
                          GG=[torch.zeros(n, n, dtype=torch.float64) for n in G.shape] if W.ndim >= 2 else [])
                if W.ndim >= 2:
                    self._update_preconditioner(G, st)
                continue
            Gp = self._project(G, st["Q"])
            st["step"] += 1
            st["exp_avg"] = b1 * st["exp_avg"] + (1 - b1) * Gp
            st["exp_avg_sq"] = b2 * st["exp_avg_sq"] + (1 - b2) * Gp ** 2
            denom = st["exp_avg_sq"].sqrt() + self.eps
            size = self.lr * (1 - b2 ** st["step"]) ** 0.5 / (1 - b1 ** st["step"])
            Wm = W.reshape(G.shape)
            Wm = Wm - size * self._project(st["exp_avg"] / denom, st["Q"], back=True)
            Wm = Wm - self.lr * self.wd * Wm
            self.w[k] = Wm.reshape(W.shape)
            if W.ndim >= 2:
                self._update_preconditioner(G, st)

    @property
    def params(self):
        return dict(self.w)
