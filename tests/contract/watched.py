"""Reference sides that watch their own run: they feed the oracle a choice the spec made where the
choice is legitimately free (a float32 SVD basis, a sketch's columns, a sampled layer set) and
assert the preconditions under which the comparison is well-posed (singular gaps, no score or
residual near a tie, factor conditioning, coverage of skipped layers)."""
from __future__ import annotations

import math

import torch

import tests.reference as R
from tests.contract.tolerances import CLIP32, KAPPA_MAX, U32
from tests.reference.draws import sketch_columns, suffix_start
from tests.reference.frontier import suffix_active_set
from tests.reference.muon_family import column_select
from tests.reference.spectral import warmup_c
from tests.reference.subspace import svd_std_basis
from tests.spec_harness import MATRICES, SHAPES, Composite

PROJECTED = ("tall", "wide", "square")  # the 2-D matrices (Conda, FRUGAL, DCT-AdamW project them)


class WithSpec(Composite):
    """A Composite shown the spec's optimizer and parameters."""

    def bind(self, opt, ps):
        self.opt, self.ps = opt, ps

    def spec_state(self, k: str) -> dict:
        return self.opt.state[self.ps[k]]


def rel_gap(M: torch.Tensor) -> float:
    """Smallest gap between consecutive singular values, relative to the largest."""
    s = torch.linalg.svdvals(M.double())
    return float((s[:-1] - s[1:]).min() / s[0])


# ---- SPECTRA: the warm-up rule of the clip threshold --------------------------------------------
PEAK, WARM = 0.01, 8


def warmup_cosine(t: int) -> float:
    """Linear warm-up to PEAK over WARM steps, then cosine decay (what a scheduler would set)."""
    if t <= WARM:
        return PEAK * t / WARM
    return PEAK * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (t - WARM) / 16)))


class Spectra:
    """``ref`` follows the warm-up rule c_t = c·η₀/η_t (arXiv 2603.14315; mlolab/llm-spectral-clipping
    ``src/optim/spectra.py``); ``untied`` keeps c constant, to show the rule matters."""

    def __init__(self, init, base: str, c: float, kw: dict):
        self.ref = R.SPECTRA(list(init.items()), lr=PEAK, c=c, base=base, **kw)
        self.untied = R.SPECTRA(list(init.items()), lr=PEAK, c=c, base=base, **kw)
        self.c = c

    def step(self, grads, t, lr):
        self.ref.lr = self.untied.lr = lr
        self.ref.c = warmup_c(self.c, PEAK, lr) if t <= WARM else self.c
        self.ref.step(grads)
        self.untied.step(grads)

    @property
    def params(self):
        return self.ref.params

    def check(self, run):
        for k in run.ps:
            d_ref = self.untied.params[k] - run.init[k].double()
            assert float((run.displacement(k) - d_ref).norm() / d_ref.norm()) > 100 * CLIP32.bound, k


# ---- Conda and FRUGAL-SVD: a float32 SVD basis is fed to the oracle -----------------------------
class CondaWatch(R.Conda):
    """The reference, recording the conditioning of each refresh's SVD (from its own float64
    momentum) and, at step 1 (where Adam is sign-like), the smallest |g'| relative to ‖G‖_F.
    With ``given`` (name → the spec's cached basis Q), a refresh uses that basis instead of its own
    SVD: P = Qᵀ (right, rows ≥ cols) or Q (left)."""

    def __init__(self, *a, given=None, **k):
        super().__init__(*a, **k)
        self.gaps: list[float] = []
        self.first: list[float] = []
        self.given = given

    def _update(self, name, W, G, st):
        t0 = int(st.get("step", 0))
        refresh = self.projected[name] and t0 % self.update_proj_gap == 0
        if refresh and self.given is not None:
            Q = self.given[name]
            svd, torch.linalg.svd = torch.linalg.svd, lambda M, full_matrices=False: (Q, None, Q.T)
            try:
                out = super()._update(name, W, G, st)
            finally:
                torch.linalg.svd = svd
        else:
            out = super()._update(name, W, G, st)
        if refresh:
            self.gaps.append(rel_gap(st["exp_avg"]))
            if t0 == 0:
                P = st["P"]
                gp = G @ P.T if G.shape[0] >= G.shape[1] else P.T @ G
                self.first.append(float(gp.abs().min() / G.norm()))
        return out


class ProjectedWatch(R.FRUGALProjected):
    """The reference, recording each refresh's relative singular gap of G and, per matrix, how many
    residual entries lie within ``near`` of 0 relative to ‖G‖_F (the residual's sign is
    discontinuous at 0: those entries may take the other sign in float32)."""

    near = 10 * 10 * U32  # 10× the float32 rounding of G − GQQᵀ (~10·u·‖G‖, d ≤ 12 terms)

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.gaps: list[float] = []
        self.close_to_zero: dict[str, int] = {}

    def _update(self, name, W, G, st):
        t0 = int(st.get("step", 0))
        out = super()._update(name, W, G, st)
        if self.proj[name]:
            if t0 % self.update_gap == 0:
                self.gaps.append(rel_gap(G))
            P, right = st["P"], bool(st["right"])
            res = G - (G @ P.T @ P if right else P @ P.T @ G)
            n = int((res.abs() < self.near * G.norm()).sum())
            self.close_to_zero[name] = self.close_to_zero.get(name, 0) + n
        return out


class GivenBasis(WithSpec):
    """Float64 runs: the oracle's own SVD, with its singular gaps ≥ 1e-3 (see SUBSPACE_FP64).
    Float32 runs (``given``): after each refresh step the spec's cached basis (state ``q``) of each
    projected matrix is copied for the oracle's refresh; Conda asserts no entry of g' at step 1 is
    within 10× of its float32 rounding (FRUGAL's residual signs are counted by the tolerance)."""

    def __init__(self, init, hyper: dict, family: str, given: bool):
        self.hyper, self.given = hyper, ({} if given else None)
        kw = {k: hyper[k] for k in FAMILY_KEYS[family]}
        self.period = kw.get("update_proj_gap", kw.get("update_gap"))
        if family == "conda":
            super().__init__(init, lambda ps: CondaWatch(ps, given=self.given, **kw), lambda ps: R.Conda(ps, **kw))
        else:
            basis = self.spec_basis if given else svd_std_basis
            super().__init__(init, lambda ps: ProjectedWatch(ps, basis_fn=basis, **kw),
                             lambda ps: R.FRUGALProjected(ps, **kw))

    def spec_basis(self, name, G, density):
        Q = self.given[name]
        r = max(1, round(density * min(G.shape)))
        assert torch.all(Q[:, r:] == 0) and torch.all(Q[:, :r].norm(dim=0) > 0.5)
        return ("right", Q[:, :r].T) if G.shape[0] >= G.shape[1] else ("left", Q[:, :r])

    def step(self, grads, t, lr=None):
        if self.given is not None and (t - 1) % self.period == 0:
            self.given.update({k: self.spec_state(k)["q"].double() for k in PROJECTED})
        super().step(grads, t, lr)

    def check(self, run):
        if self.given is None:
            assert min(self.mat.gaps) >= 1e-3, self.mat.gaps
        elif hasattr(self.mat, "first"):
            assert min(self.mat.first) > 10 * 10 * U32, self.mat.first


FAMILY_KEYS = {
    "conda": ("lr", "betas", "eps", "weight_decay", "update_proj_gap", "scale"),
    "frugal": ("lr", "betas", "eps", "weight_decay", "update_gap", "density", "inactive_lr_scale",
               "proj_params_lr_scale"),
}


def given_basis(hyper: dict, family: str, given: bool = False):
    return lambda init: GivenBasis(init, hyper, family, given)


# ---- DCT selection: the same indices on both sides ----------------------------------------------
MARGIN = 1e-5


def checked_topk(name, S, r, right):
    """The reference's default choice (topk of ℓ1 scores, descending), after asserting that no
    near-tie could make a float32 computation of the same scores choose or order differently: the
    float32 spec computes the scores with relative error ~1e-6 (one d-term matmul, plus for Trion
    the accumulated momentum), so with a 1e-5 margin both sides choose the same indices in the same
    order. Ties have probability 0 with continuous random inputs; this turns a near-tie into a loud
    precondition failure instead of a mystery."""
    scores = S.norm(p=1, dim=0 if right else 1)
    top = scores.sort(descending=True).values[: r + 1]
    gaps = (top[:-1] - top[1:]) / top[0]
    assert bool((gaps > MARGIN).all()), f"{name}: near-tie in the DCT scores {top.tolist()} (test precondition)"
    return torch.topk(scores, r).indices


class DctIndices(WithSpec):
    """DCT-AdamW: after every step (refreshes and cached ones) the spec's cached indices equal the
    oracle's, order included (state column k ↔ idx[k]); the moments are low rank; E only with EF."""

    def step(self, grads, t, lr=None):
        super().step(grads, t, lr)
        for k in PROJECTED:
            ours, theirs = self.spec_state(k), self.mat.state[k]
            assert torch.equal(ours["idx"], theirs["idx"]), (t, k, ours["idx"].tolist(), theirs["idx"].tolist())
            assert ours["exp_avg"].shape == theirs["exp_avg"].shape
            assert ("E" in ours) == self.mat.use_ef


class TrionMatrixView(R.Trion):
    """The reference on the (out, in·kh·kw) view of conv weights, as the spec routes them."""

    def _update(self, name, W, G, st):
        shape = W.shape
        return super()._update(name, W.reshape(shape[0], -1), G.reshape(shape[0], -1), st).reshape(shape)


# ---- low-rank Muon: the sketch's columns --------------------------------------------------------
def sketch_finder(seed: int):
    """Range finder for ``R.LowRankMuon``: the spec's columns, recomputed from (seed, step, id);
    the step is counted per parameter (one call per step), the id is the parameter's position."""
    steps: dict[str, int] = {}
    ids = {k: i for i, k in enumerate(SHAPES)}

    def idx_fn(name, X, r):
        steps[name] = steps.get(name, 0) + 1
        return sketch_columns(seed, steps[name], ids[name], X.shape[1], r)
    return column_select(idx_fn)


# ---- FISMO: factor conditioning and the stored state --------------------------------------------
class Fismo(WithSpec):
    """R.FISMO + the aux AdamW, recording ‖ΔW_t‖ of every step and the largest condition number of
    the factors P, Q along the reference run (see FISMO_FP32); float64 runs (no bias) also compare
    the stored P, Q and whitened momentum M with the oracle's."""

    def __init__(self, init, ref_kw: dict, vector_part=None):
        super().__init__(init, lambda ps: R.FISMO(ps, polar="ns", **ref_kw), vector_part)
        self.path = {k: 0.0 for k in self.mat.params}
        self.kappa = 1.0

    def step(self, grads, t=None, lr=None):
        before = {k: v.clone() for k, v in self.mat.params.items()}
        super().step(grads, t, lr)
        for k in self.path:
            self.path[k] += float((self.mat.params[k] - before[k]).norm())
            for f in ("P", "Q"):
                ev = torch.linalg.eigvalsh(self.mat.state[k][f])
                self.kappa = max(self.kappa, float(ev[-1] / ev[0]))

    def check(self, run):
        if run.ps["tall"].dtype != torch.float64:
            assert self.kappa <= KAPPA_MAX, f"factors too ill-conditioned for the bound: κ = {self.kappa:.1f}"
            return
        for k in self.path:
            for mine, theirs in (("P", "P"), ("Q", "Q"), ("M", "momentum_buffer")):
                want = self.mat.state[k][theirs]
                got = self.spec_state(k)[mine].reshape(want.shape)
                assert float((got - want).norm() / want.norm()) < 1e-9, (k, mine)


# ---- Drop-Muon: the sampled layers --------------------------------------------------------------
class DropLayers(Composite):
    """R.DropMuon on the hidden matrices, fed the documented suffix draw (tests/reference/draws.py),
    + the aux AdamW on the bias. The run must cover skipped layers: every layer but the last is
    frozen on some step, the last (always in a suffix) on none, and some step updates all."""

    def __init__(self, init, ref_kw: dict, vector_part, period: int, seed: int):
        super().__init__(init, lambda ps: R.DropMuon(ps, sharp="ns", **ref_kw), vector_part)
        self.period, self.seed, self.sets = period, seed, []

    def step(self, grads, t, lr=None):
        active = suffix_active_set(MATRICES, suffix_start(t, len(MATRICES), self.period, self.seed))
        self.sets.append(active)
        self.mat.step({k: grads[k] for k in MATRICES}, active)
        self.vec.step({"bias": grads["bias"]})

    def check(self, run):
        for k in MATRICES[:-1]:
            assert any(k not in s for s in self.sets), k
        assert all(MATRICES[-1] in s for s in self.sets)
        assert any(len(s) == len(MATRICES) for s in self.sets) and any(len(s) == 1 for s in self.sets)
