"""THE table of shipped optimizers: one entry per optimizer of ``optloom/specs/*.opt`` (``optloom
list --specs``), each with its independent oracles — a torch.optim class, or a float64 reference
of ``tests/reference`` written from the paper and the official code — the hyperparameters each
comparison runs at, its tolerance (``tolerances.py``: the bound and the arithmetic behind it) and
the hyperparameters of the training, resume and compile checks. ``test_specs.py`` runs every entry.

Oracle runs (``tests/spec_harness.py``): tall 12×8, wide 8×12, square 10×10, conv 4×3×3×3 and a
bias, fresh random gradients every step (``.grad`` on the spec side, the same values in float64 to
the oracle), ≥ 20 steps. Matrices go to the family oracle, the bias to the spec's aux AdamW
(``R.AdamW``) unless the spec steps it otherwise."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

import tests.reference as R
from tests.contract import tolerances as T
from tests.contract.sides import adamw, aux_adamw, split, torch_part, whole
from tests.reference.zoo import SOAP, NorMuon, Prodigy, Shampoo, float64_part
from tests.contract.watched import (PEAK, WARM, DctIndices, DropLayers, Fismo, Spectra, TrionMatrixView,
                                    checked_topk, given_basis, sketch_finder, warmup_cosine)
from tests.spec_harness import MATRICES, SHAPES, STEPS

F32, F64 = torch.float32, torch.float64


@dataclass(frozen=True)
class Case:
    """One agreement run: the spec at ``hyper`` next to ``side(init)`` (see ``sides.py``)."""
    id: str
    hyper: dict
    side: Callable[[dict], Any]
    tol: T.Tol
    dtype: torch.dtype = F32  # the spec's parameter dtype
    steps: int = STEPS
    keys: tuple = tuple(SHAPES)  # which harness parameters take part
    schedule: Callable[[int], float] | None = None  # lr before step t, as a scheduler would set it

    def __post_init__(self):
        assert self.steps >= STEPS, f"{self.id}: an oracle comparison runs at least {STEPS} steps"


@dataclass(frozen=True)
class Entry:
    name: str  # the optimizer's name in its spec file
    cases: tuple[Case, ...]
    train: dict  # hyperparameters of the "trains" check, and the base of the resume runs
    resume: tuple[dict, ...] = ({},)  # each: overrides of `train` for one bitwise-resume run
    warmup: bool = False  # the trains/resume runs follow a linear lr warm-up over `warmup_steps`
    compiled: dict = field(default_factory=dict)  # hyperparameters of the eager == inductor check
    spec: str = ""  # the file (default: the name)

    @property
    def file(self) -> str:
        return self.spec or self.name

    def lr_at(self, hyper: dict) -> Callable[[int], float] | None:
        if not self.warmup:
            return None
        return lambda t: hyper["lr"] * min(1.0, t / hyper["warmup_steps"])


# ---- hyperparameter sets shared by several cases -------------------------------------------------
AUON_ADAM = dict(adam_lr=0.01, adam_betas=(0.8, 0.95), adam_eps=1e-10)
NAMO_ADAM = dict(adam_lr=0.01, adam_betas=(0.9, 0.95), adam_eps=1e-8)
MUON_AUX = dict(lr=3e-4, betas=(0.9, 0.95), eps=1e-10)  # MuonWithAuxAdam / the specs' adam_* defaults
LOW_RANK = dict(rank=3, min_dim=4, seed=5)  # rank 3 on tall/wide/square; the conv (4×27) full rank
T_REFRESH = 4  # subspace refreshes at steps 1, 5, 9, 13, 17; the resume point (10) mid-period
CONDA = dict(lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1, update_proj_gap=T_REFRESH, scale=0.25)
FRUGAL = dict(lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1, update_gap=T_REFRESH,
              inactive_lr_scale=0.5, proj_params_lr_scale=0.8)
DCT_ADAM = dict(lr=0.01, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
TRION_ADAM = dict(adam_lr=0.01, adam_betas=(0.9, 0.95), adam_eps=1e-10, adam_weight_decay=0.05)
FISMO_ADAM = dict(adam_lr=0.01, adam_betas=(0.9, 0.95), adam_eps=1e-8)
SOAP_FP64 = T.Tol(1e-9, why="""
float64 SOAP against its float64 oracle: the same eigh/QR on statistics equal up to ~1e-16 relative;
24 steps of Adam in the rotated basis amplify that at most ~10× per step (measured ≤ 3e-14).""")
FISMO_DEFAULTS = dict(lr=0.02, beta=0.95, gamma=0.95, mu=1e-3)  # fismo.opt's (test_kronecker_specs)


# ---- case constructors: the spec's hyperparameters and the oracle's, side by side ----------------
def torch_case(id: str, cls, steps: int = 50, **kw) -> Case:
    """torch.optim with the same keyword arguments as the spec."""
    return Case(id, kw, whole(torch_part(cls, **kw)), T.TORCH_FP32, steps=steps)


def muon_case(adjust_lr_fn: str) -> Case:
    """torch.optim.Muon (conv weights as their (out, −1) view) and torch AdamW for the bias, both
    at bf16 Newton–Schulz as torch's."""
    h = dict(lr=0.02, weight_decay=0.1, adjust_lr_fn=adjust_lr_fn, ns_dtype="bfloat16")
    side = split(torch_part(torch.optim.Muon, as_matrix=True, lr=0.02, weight_decay=0.1, adjust_lr_fn=adjust_lr_fn),
                 torch_part(torch.optim.AdamW, weight_decay=0.1, **MUON_AUX))
    return Case(adjust_lr_fn, h, side, T.TORCH_FP32, steps=50)


def sign_case(ref, **h) -> Case:
    """Lion (Chen et al. 2023, arXiv 2302.06675, Alg. 2) and Signum (Bernstein et al. 2018,
    arXiv 1802.04434, Alg. 3) in float64."""
    return Case("float64-equations", h, whole(ref), T.SIGN_FP32, steps=50)


def aro_case(base: str, ref_base: str, dtype=F32, keys=tuple(SHAPES)) -> Case:
    side = split(lambda ps: R.ARO(ps, lr=0.01, momentum=0.95, weight_decay=0.01, base_opt=ref_base, orient="wide"),
                 adamw(weight_decay=0.01, **MUON_AUX))
    tol = T.ARO_FP32 if dtype == F32 else T.ARO_SIGN_F64
    return Case(f"{base}-{'fp32' if dtype == F32 else 'float64'}", dict(base=base), side, tol, dtype=dtype, keys=keys)


def auon_case(id: str, version: str, **hyper) -> Case:
    h = {**AUON_ADAM, **hyper}
    mat = lambda ps: R.AuON(ps, lr=h["lr"], momentum=h["momentum"], weight_decay=h["weight_decay"],  # noqa: E731
                            version=version, gamma=h.get("gamma"))
    return Case(id, h, split(mat, aux_adamw(h)), T.MUON_FP32)


def hybrid_case(ns_steps: int) -> Case:
    h = dict(lr=0.05, momentum=0.9, weight_decay=0.05, gamma=1.5, ns_steps=ns_steps, **AUON_ADAM)
    mat = lambda ps: R.HybridAuON(ps, lr=h["lr"], momentum=h["momentum"], weight_decay=h["weight_decay"],  # noqa: E731
                                  ns_steps=ns_steps, gamma=h["gamma"])
    return Case("paper-1-step" if ns_steps == 1 else "repo-5-steps", h, split(mat, aux_adamw(h)), T.MUON_FP32)


def root_case() -> Case:
    h = dict(lr=0.02, momentum=0.9, weight_decay=0.1, nesterov=True, adam_betas=(0.9, 0.95), adam_eps=1e-8)
    mat = lambda ps: R.ROOT(ps, lr=h["lr"], momentum=h["momentum"], weight_decay=h["weight_decay"], nesterov=True)  # noqa: E731
    return Case("nesterov", h, split(mat, adamw(h["lr"], h["adam_betas"], h["adam_eps"], h["weight_decay"])), T.MUON_FP32)


def polargrad_case(polar_first: bool, method: str, steps: int) -> Case:
    """QDWH run to convergence (6 steps) is the exact polar factor, as the SVD's."""
    h = dict(lr=0.01, momentum=0.9, weight_decay=0.1, polar_method=method, polar_steps=steps,
             adam_lr=0.01, adam_betas=(0.9, 0.95), adam_eps=1e-8)
    polar = R.polar_svd if method in ("svd", "qdwh") else (
        lambda X: R.newton_schulz(X, "muon" if method == "ns" else "polar_express", steps))
    mat = lambda ps: R.PolarGrad(ps, lr=h["lr"], momentum=h["momentum"], weight_decay=h["weight_decay"],  # noqa: E731
                                 polar_first=polar_first, polar=polar)
    return Case(f"{method}{steps if method != 'svd' else ''}", h, split(mat, aux_adamw(h)), T.MUON_FP32)


def lowrank_case(msgd: bool, ns_dtype: str = "float32") -> Case:
    """Rank 3 on tall/wide/square (min dim 8–10 > min_dim 4: low rank); the conv's matrix view is
    4×27, min 4 ≤ 4: the full-rank fallback rule; the sketch's columns recomputed (draws.py)."""
    h = dict(lr=0.05, ns_dtype=ns_dtype, adam_lr=0.01, adam_betas=(0.9, 0.95), adam_eps=1e-10, **LOW_RANK)
    kw = dict(momentum=0.0, weight_decay=0.0, nesterov=False, shape="none")
    if not msgd:
        h.update(momentum=0.9, weight_decay=0.05)
        kw = dict(momentum=0.9, weight_decay=0.05, nesterov=True)
    dt = torch.bfloat16 if ns_dtype == "bfloat16" else F64
    mat = lambda ps: R.LowRankMuon(ps, lr=0.05, rank=3, min_dim=4, range_finder=sketch_finder(5), ns_dtype=dt, **kw)  # noqa: E731
    return Case(ns_dtype, h, split(mat, aux_adamw(h)), T.LOWRANK_BF16 if ns_dtype == "bfloat16" else T.MUON_FP32)


def namo_case(ref_cls, id: str, ns_dtype: str, **case) -> Case:
    """lr 0.05 keeps NAMO's clamps open; lr 0.8 closes them: at t = 1, N = (1−μ₁²)G and
    sqrt(v) = sqrt(1−μ₂)‖G‖, so α₁ = lr·(1+μ₁) = 1.52 > 1 (decay clamp) and α₁·0.2·√12 > 1 (step
    clamp). NAMO-D: c = 1 pins every column to the mean; wd 1.5 with the clamped lr exercises
    max(0, 1 − λ·min(1, ·))."""
    ref_kw = dict(case, ns_dtype=torch.bfloat16 if ns_dtype == "bfloat16" else F64)
    tol = T.NAMO_BF16 if ns_dtype == "bfloat16" else T.MUON_FP32
    return Case(f"{id}-{ns_dtype}", {**case, **NAMO_ADAM, "ns_dtype": ns_dtype},
                split(lambda ps: ref_cls(ps, **ref_kw), aux_adamw(NAMO_ADAM, wd=None)), tol)


def spectra_case(base: str, clip_dtype: str, hyper: dict, ref_kw: dict) -> Case:
    """24 steps: 8 of linear warm-up (c_t = c·η₀/η_t), then cosine decay with c_t = c; the lr is
    changed in ``param_groups`` before every step. c = 1 makes the clip bind (σ(U) up to ~10).
    Every parameter is clipped (the bias by norm)."""
    h = dict(hyper, c=1.0, peak_lr=PEAK, warmup_steps=WARM, clip_dtype=clip_dtype)
    return Case(clip_dtype, h, lambda init: Spectra(init, base, 1.0, ref_kw),
                T.CLIP16 if clip_dtype == "bfloat16" else T.CLIP32, steps=24, schedule=warmup_cosine)


def dct_case(gap: int, use_ef: bool) -> Case:
    """With gap 3 the indices are refreshed on steps 1, 4, …, 19 and cached in between."""
    h = dict(DCT_ADAM, rank=3, update_proj_gap=gap, use_ef=use_ef)
    side = lambda init: DctIndices(init, lambda p: R.DCTAdamW(  # noqa: E731
        p, rank=3, update_proj_gap=gap, use_ef=use_ef, index_fn=checked_topk, **DCT_ADAM), adamw(**DCT_ADAM))
    return Case(f"{'ef' if use_ef else 'noef'}-gap{gap}", h, side, T.DCT_FP32)


def trion_case(id: str, scaling: str, ref_scaling: str, wd: float) -> Case:
    """Spec NS in float32 against the reference's float64 NS."""
    h = dict(lr=0.02, momentum=0.9, rank=3, weight_decay=wd, scaling=scaling, ns_dtype="float32", **TRION_ADAM)
    mat = lambda p: TrionMatrixView(p, lr=0.02, momentum=0.9, rank=3, weight_decay=wd, scale=ref_scaling,  # noqa: E731
                                    index_fn=checked_topk)
    return Case(id, h, split(mat, adamw(h["adam_lr"], h["adam_betas"], h["adam_eps"], h["adam_weight_decay"])),
                T.DCT_FP32)


def lanton_case(id: str, hyper: dict, ref_kw: dict, dtype=F64) -> Case:
    """The group reduction ρ spans every parameter of a norm group, across buckets of different
    shapes (tall, wide, square, conv in the Muon group; the bias in the sign group)."""
    h = dict(lr=0.02, **hyper, **({"ns_dtype": "float64"} if dtype == F64 else {}))
    tol = T.LANTON_F64 if dtype == F64 else T.MUON_FP32
    return Case(id, h, whole(lambda ps: R.LANTON(ps, lr=0.02, **ref_kw)), tol, dtype=dtype)


def fismo_case(id: str, dtype, hyper: dict, ref_kw: dict) -> Case:
    """Float32 (the shipped precision, with the aux AdamW) or float64 parameters, eigh and NS
    (matrices only), 24 steps."""
    ref_kw = {**FISMO_DEFAULTS, **ref_kw}
    if dtype == F64:
        return Case(f"{id}-float64", {**hyper, "ns_dtype": "float64"},
                    lambda init: Fismo(init, {**ref_kw, "ns_eps_mode": "clamp"}), T.FISMO_FP64,
                    dtype=F64, steps=24, keys=MATRICES)
    return Case(f"{id}-float32", {**hyper, **FISMO_ADAM},
                lambda init: Fismo(init, ref_kw, aux_adamw(FISMO_ADAM, wd=None)), T.FISMO_FP32, steps=24)


FISMO_CASES = [  # (id, spec hyperparameters, matching reference keywords)
    ("defaults", dict(), dict()),
    ("fast-forgetting", dict(lr=0.05, beta=0.9, gamma=0.9, mu=1e-2), dict(lr=0.05, beta=0.9, gamma=0.9, mu=1e-2)),
    ("decay+shape", dict(lr=0.03, beta=0.9, gamma=0.9, mu=1e-2, weight_decay=0.1, shape_scale="original"),
     dict(lr=0.03, beta=0.9, gamma=0.9, mu=1e-2, weight_decay=0.1, shape="original")),
]


def drop_case(id: str, hyper: dict, ref_kw: dict, period: int, seed: int) -> Case:
    side = lambda init: DropLayers(init, ref_kw, aux_adamw(FISMO_ADAM, wd=None), period, seed)  # noqa: E731
    return Case(id, {**hyper, **FISMO_ADAM, "ns_dtype": "float32"}, side, T.MUON_FP32, steps=24)


PRODIGY_F64 = T.Tol(1e-12, why="""
float64 on both sides (Prodigy's step size d is a ratio of sums over every parameter, and its
numerator reads W₀ − W, which float32 parameters round at u·|W| — ~1e-5 of d at lr·d = 1e-3 — so
the float32 cases see that rounding through d and ADAM_FP32 applies): the two sides sum in
different orders, ~1e-16 relative per step.""")


# ---- issue 14: well-known optimizers against torch.optim / pytorch_optimizer run in float64 -------
def zoo_case(id: str, hyper: dict, make) -> Case:
    """The oracle (``make(float64 params)``) takes the spec's hyperparameters under the same names;
    float32 spec against a float64 oracle: ADAM_FP32."""
    return Case(id, hyper, whole(float64_part(make)), T.ADAM_FP32)


def _zoo_entries() -> list[Entry]:
    import pytorch_optimizer as P  # a test-only dependency (the dev extra)
    O = torch.optim  # noqa: N806
    eps32 = 1.1920928955078125e-07  # torch.finfo(float32).eps: torch.optim.Adafactor's ε₁ = None
    adam = dict(lr=1e-2)
    return [
        Entry("nadam", (zoo_case("defaults", adam, lambda p: O.NAdam(p, lr=1e-2)),
                        zoo_case("betas-decay-psi", dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=0.1, momentum_decay=0.01),
                                 lambda p: O.NAdam(p, lr=1e-2, betas=(0.8, 0.99), weight_decay=0.1, momentum_decay=0.01))),
              train=adam),
        # β₂ = 0.999: ρ_t ≤ 5 for t ≤ 5 (the un-rectified branch), rectified after; β₂ = 0.9: from t = 4
        Entry("radam", (zoo_case("defaults", adam, lambda p: O.RAdam(p, lr=1e-2)),
                        zoo_case("beta2-0.9-decay", dict(lr=1e-2, betas=(0.9, 0.9), weight_decay=0.1),
                                 lambda p: O.RAdam(p, lr=1e-2, betas=(0.9, 0.9), weight_decay=0.1))),
              train=adam),
        Entry("adamw_amsgrad", (zoo_case("decay", dict(lr=1e-2, weight_decay=0.1),
                                         lambda p: O.AdamW(p, lr=1e-2, weight_decay=0.1, amsgrad=True)),),
              train=adam),
        Entry("adafactor", (zoo_case("defaults", adam, lambda p: O.Adafactor(p, lr=1e-2, eps=(eps32, 1e-3))),
                            zoo_case("decay-clip", dict(lr=3e-2, weight_decay=0.1, d=1.5, beta2_decay=-0.6),
                                     lambda p: O.Adafactor(p, lr=3e-2, weight_decay=0.1, d=1.5, beta2_decay=-0.6,
                                                           eps=(eps32, 1e-3)))),
              train=adam),
        Entry("lamb", (zoo_case("defaults", adam, lambda p: P.Lamb(p, lr=1e-2)),
                       zoo_case("decay-betas", dict(lr=1e-2, weight_decay=0.1, betas=(0.8, 0.99)),
                                lambda p: P.Lamb(p, lr=1e-2, weight_decay=0.1, betas=(0.8, 0.99)))),
              train=adam),
        Entry("adabelief", (zoo_case("defaults", adam, lambda p: P.AdaBelief(p, lr=1e-2)),
                            zoo_case("decay-eps", dict(lr=1e-2, weight_decay=0.1, eps=1e-8),
                                     lambda p: P.AdaBelief(p, lr=1e-2, weight_decay=0.1, eps=1e-8))),
              train=adam),
        Entry("adan", (zoo_case("defaults", adam, lambda p: P.Adan(p, lr=1e-2)),
                       zoo_case("betas-proximal-decay", dict(lr=1e-2, weight_decay=0.1, betas=(0.9, 0.8, 0.95)),
                                lambda p: P.Adan(p, lr=1e-2, weight_decay=0.1, betas=(0.9, 0.8, 0.95)))),
              train=adam),
        # torch.optim.Adagrad; lr_decay, L2 decay and a nonzero initial accumulator in the second case
        Entry("adagrad", (zoo_case("defaults", adam, lambda p: O.Adagrad(p, lr=1e-2)),
                          zoo_case("lr-decay-init-decay",
                                   dict(lr=1e-2, lr_decay=0.05, weight_decay=0.1, initial_accumulator_value=0.1),
                                   lambda p: O.Adagrad(p, lr=1e-2, lr_decay=0.05, weight_decay=0.1,
                                                       initial_accumulator_value=0.1))),
              train=dict(lr=0.05), resume=(dict(initial_accumulator_value=0.1, lr_decay=0.01),)),
        # no warm-up (t_alpha_beta3 = None); the paper's warm-ups over T = 10 of the 20 steps (both sides of
        # T), β₃ = 0.99 so that the slow EMA moves within 20 steps, decoupled decay (the paper's)
        Entry("ademamix", (zoo_case("no-warmup", adam, lambda p: P.AdEMAMix(p, lr=1e-2)),
                           zoo_case("warmup-10-decay",
                                    dict(lr=1e-2, betas=(0.9, 0.999, 0.99), t_alpha_beta3=10.0, weight_decay=0.1),
                                    lambda p: P.AdEMAMix(p, lr=1e-2, betas=(0.9, 0.999, 0.99), t_alpha_beta3=10.0,
                                                         weight_decay=0.1, weight_decouple=True))),
              train=adam, resume=(dict(t_alpha_beta3=15.0),), compiled=dict(t_alpha_beta3=2.0)),
        # the parameter is y on both sides; warm-up over 5 of the 20 steps, t^r weighting and decay at y
        Entry("schedulefree_adamw", (zoo_case("lr", adam, lambda p: P.ScheduleFreeAdamW(p, lr=1e-2)),
                                     zoo_case("warmup-r-decay",
                                              dict(lr=1e-2, betas=(0.8, 0.99), warmup_steps=5.0, r=0.5,
                                                   weight_decay=0.1),
                                              lambda p: P.ScheduleFreeAdamW(p, lr=1e-2, betas=(0.8, 0.99),
                                                                            warmup_steps=5, r=0.5,
                                                                            weight_decay=0.1))),
              train=adam, resume=(dict(warmup_steps=15.0),), compiled=dict(warmup_steps=2.0)),
        # the official code restated in float64 (pytorch_optimizer's Prodigy sums d's numerator and
        # denominator in float32 tensors): d is first raised at step 3 (float64 case) / 2 (float32 cases),
        # then limited by growth_rate or d_max
        Entry("prodigy", (Case("d-estimate-float64", dict(lr=0.5, d0=1e-3, d_coef=10.0),
                               whole(lambda ps: Prodigy(ps, lr=0.5, d0=1e-3, d_coef=10.0)), PRODIGY_F64, dtype=F64),
                          *(Case(id, h, whole(lambda ps, h=h: Prodigy(ps, **h)), T.ADAM_FP32) for id, h in [
                              ("d0-1e-2", dict(lr=1.0, d0=1e-2)),
                              ("growth-decay-beta3", dict(lr=1.0, d0=1e-3, weight_decay=0.1, growth_rate=1.2,
                                                          beta3=0.9, d_coef=20.0))])),
              train=dict(lr=1.0, d0=1e-3), resume=(dict(d_coef=10.0),)),
        # float32 Newton–Schulz (the spec) against the reference's float64 one: MUON_FP32
        Entry("normuon", tuple(Case(id, {**h, "ns_dtype": "float32", **MUON_AUX_ZOO}, split(
            lambda ps, h=h: NorMuon(ps, lambda X: R.newton_schulz(X, "muon", 5), **h),
            adamw(MUON_AUX_ZOO["adam_lr"], MUON_AUX_ZOO["adam_betas"], MUON_AUX_ZOO["adam_eps"])), T.MUON_FP32)
            for id, h in [("nesterov", dict(lr=0.02, momentum=0.95, beta2=0.95)),
                          ("plain-decay", dict(lr=0.03, momentum=0.9, beta2=0.9, weight_decay=0.1, nesterov=False))]),
              train=dict(lr=0.02, adam_lr=0.01, ns_dtype="float32")),
        # every parameter (the bias as a 12×1 column); float32 statistics, float64 roots: ADAM_FP32. Cached
        # roots (T = 3) with ε = 0.1: a small ε makes the float32 statistics' rounding visible (shampoo.opt)
        Entry("shampoo", tuple(Case(id, h, whole(lambda ps, h=h: Shampoo(ps, lr=h["lr"], eps=h["eps"],
                                                                           frequency=h["precondition_frequency"])),
                                    T.ADAM_FP32)
                               for id, h in [("every-step", dict(lr=0.1, eps=1e-4, precondition_frequency=1)),
                                             ("cached-roots-3", dict(lr=0.05, eps=0.1, precondition_frequency=3))]),
              train=dict(lr=0.1), resume=(dict(precondition_frequency=4),), compiled=dict(root_dtype="float32")),
        # SOAP vs the official soap.py restated in float64 (zoo.SOAP): the square matrix and the bias only — a
        # non-square G₁ makes L or R rank-deficient at step 1, and the basis inside that null space (eigh's
        # arbitrary choice) changes Adam's update at O(1) between float32 and float64 (soap.opt). Refreshes by
        # power iteration + sorted QR at steps 4, 7, …, 19 (T = 3) or every step (T = 1): ADAM_FP32
        Entry("soap", tuple(Case(id, h, whole(lambda ps, h=h: SOAP(ps, lr=h["lr"], betas=h["betas"],
                                                                   shampoo_beta=h["shampoo_beta"], eps=h["eps"],
                                                                   weight_decay=h["weight_decay"],
                                                                   frequency=h["precondition_frequency"])),
                                 T.ADAM_FP32, steps=24, keys=("square", "bias"))
                            for id, h in [("refresh-3", dict(lr=0.01, betas=(0.9, 0.95), shampoo_beta=0.9, eps=1e-8,
                                                             weight_decay=0.1, precondition_frequency=3)),
                                          ("refresh-1", dict(lr=3e-3, betas=(0.95, 0.95), shampoo_beta=0.95,
                                                             eps=1e-8, weight_decay=0.01, precondition_frequency=1))])
              # float64 spec: the non-square orientations (L of the tall, R of the wide) are checked too — in
              # float64 both sides form the same step-1 statistics and LAPACK picks the same null-space basis
              # (measured ≤ 3e-14); the conv's (4×27) R differs in its summation order and is left out
              + (Case("refresh-3-float64", dict(lr=0.01, betas=(0.9, 0.95), shampoo_beta=0.9, eps=1e-8,
                                                weight_decay=0.1, precondition_frequency=3),
                      whole(lambda ps: SOAP(ps, lr=0.01, betas=(0.9, 0.95), shampoo_beta=0.9, eps=1e-8,
                                            weight_decay=0.1, frequency=3)),
                      SOAP_FP64, dtype=F64, steps=24, keys=("tall", "wide", "square", "bias")),),
              train=dict(lr=0.01, precondition_frequency=2), resume=(dict(precondition_frequency=4),)),
    ]


MUON_AUX_ZOO = dict(adam_lr=0.01, adam_betas=(0.9, 0.95), adam_eps=1e-10)
ZOO = _zoo_entries()


# ---- the table -----------------------------------------------------------------------------------
TABLE: list[Entry] = [
    Entry("adamw", (torch_case("lr", torch.optim.AdamW, lr=1e-2),
                    torch_case("betas-eps-decay", torch.optim.AdamW, lr=3e-3, betas=(0.8, 0.99), eps=1e-6,
                               weight_decay=0.1)),
          train=dict(lr=0.01)),
    Entry("sgd", (torch_case("plain", torch.optim.SGD, lr=1e-2),
                  torch_case("momentum", torch.optim.SGD, lr=1e-2, momentum=0.9),
                  torch_case("dampening-decay", torch.optim.SGD, lr=1e-2, momentum=0.9, dampening=0.3, weight_decay=1e-2),
                  torch_case("nesterov-decay", torch.optim.SGD, lr=1e-2, momentum=0.9, nesterov=True, weight_decay=1e-2)),
          train=dict(lr=0.05, momentum=0.9), compiled=dict(momentum=0.9)),
    Entry("lion", (sign_case(lambda ps: R.Lion(ps, lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1),
                             lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1),),
          train=dict(lr=3e-3)),
    Entry("signum", (sign_case(lambda ps: R.Signum(ps, lr=1e-3, beta=0.9, weight_decay=0.1),
                               lr=1e-3, momentum=0.9, weight_decay=0.1),),
          train=dict(lr=3e-3)),
    Entry("muon", (muon_case("original"), muon_case("match_rms_adamw")), train=dict(lr=0.02, adam_lr=0.01)),
    Entry("aro", (aro_case("sinkhorn", "sinkhorn"), aro_case("row_normalize", "row_norm"),
                  # float64 sign: on the square matrix entries of Rᵀ M reach 1e-11 (the sign policy drives
                  # the rotated momentum towards zeros), so even float64 runs part after ~15 steps: left out
                  aro_case("sign", "sign", F64, keys=("tall", "wide", "conv", "bias"))),
          train=dict(lr=0.02, adam_lr=0.01)),
    Entry("auon", (auon_case("v1", "v1", lr=0.05, momentum=0.95, weight_decay=0.1),
                   # the v1 optimizer switched to HEAD by its structural knobs == the HEAD reference
                   auon_case("v1-knobs-to-head", "head", lr=0.05, momentum=0.9, weight_decay=0.05, gamma=1.5,
                             numerator="raw", shape_scale="none")),
          train=dict(lr=0.02)),
    Entry("auon_head", (auon_case("head", "head", lr=0.05, momentum=0.9, weight_decay=0.05),), spec="auon",
          train=dict(lr=0.2)),  # HEAD ≈ Nesterov SGD on the raw momentum: an SGD-sized lr
    Entry("hybrid_auon", (hybrid_case(1), hybrid_case(5)), train=dict(lr=0.02)),
    # nesterov=False is a structural variant (another graph): left out for time
    Entry("root", (root_case(),), train=dict(lr=0.02)),
    # ν = ‖M‖_* scales the step with the gradient (small here): lr as the README's 1e-3 × O(100)
    Entry("polargrad", tuple(polargrad_case(False, m, s) for m, s in
                             [("svd", 1), ("qdwh", 6), ("ns", 5), ("polar_express", 5)]),
          train=dict(lr=0.2, polar_method="qdwh")),
    Entry("polargrad_polar_first", (polargrad_case(True, "svd", 1), polargrad_case(True, "ns", 5)), spec="polargrad",
          train=dict(lr=0.2, polar_method="svd")),
    # resume: the low-rank rule on the tall matrix (rank 3 of 8), whose sketch depends on the restored step
    Entry("lowrank_muon", (lowrank_case(False), lowrank_case(False, "bfloat16")),
          train=dict(lr=0.02, rank=4, min_dim=8), resume=(LOW_RANK,)),
    Entry("lowrank_msgd", (lowrank_case(True),), spec="lowrank_muon",
          train=dict(lr=0.02, rank=4, min_dim=8), resume=(LOW_RANK,)),
    Entry("namo", tuple(namo_case(R.NAMO, id, dt, **c) for id, c in
                        [("open", dict(lr=0.05, momentum=0.95, weight_decay=0.1)),
                         ("clamped", dict(lr=0.8, momentum=0.9, weight_decay=0.1, mu2=0.95))]
                        for dt in ("float32", "bfloat16")),
          train=dict(lr=0.05, adam_lr=0.01)),
    Entry("namo_d", (*(namo_case(R.NAMOD, id, "float32", lr=0.05, col_state_clamp_c=c, weight_decay=0.1)
                       for id, c in [("c0.75", 0.75), ("c0.1", 0.1), ("c1", 1.0)]),
                     namo_case(R.NAMOD, "clamped-wd1.5", "float32", lr=0.8, col_state_clamp_c=0.4, weight_decay=1.5),
                     namo_case(R.NAMOD, "c0.75", "bfloat16", lr=0.05, col_state_clamp_c=0.75, weight_decay=0.1)),
          train=dict(lr=0.05, adam_lr=0.01)),
    # resume: a warm-up of 12 steps, so its boundary falls after the resume and the restored step
    # count decides the threshold
    Entry("spectra_adamw", tuple(spectra_case("adamw", dt, *[dict(betas=(0.8, 0.999), eps=1e-8, weight_decay=0.1)] * 2)
                                 for dt in ("float32", "bfloat16")), spec="spectra",
          train=dict(lr=0.01, peak_lr=0.01, warmup_steps=5, c=1.0), resume=(dict(warmup_steps=12),), warmup=True),
    Entry("spectra_signum", tuple(spectra_case("signum", dt, dict(momentum=0.9, weight_decay=0.1),
                                               dict(beta=0.9, weight_decay=0.1))
                                  for dt in ("float32", "bfloat16")), spec="spectra",
          train=dict(lr=0.01, peak_lr=0.01, warmup_steps=5, c=1.0), resume=(dict(warmup_steps=12),), warmup=True),
    Entry("conda", (Case("float64", CONDA, given_basis(CONDA, "conda"), T.SUBSPACE_FP64, dtype=F64),
                    Case("float32-given-the-basis", dict(CONDA, betas=(0.9, 0.999), weight_decay=0.0),
                         given_basis(dict(CONDA, betas=(0.9, 0.999), weight_decay=0.0), "conda", given=True),
                         T.ADAM_FP32)),
          train=dict(lr=0.02, update_proj_gap=T_REFRESH), resume=(dict(CONDA, weight_decay=0.01),)),
    Entry("frugal", tuple(Case(id, dict(FRUGAL, density=d), split(
        lambda ps, d=d: R.FRUGALBlock(ps, density=d, **FRUGAL),
        adamw(FRUGAL["lr"], FRUGAL["betas"], FRUGAL["eps"], FRUGAL["weight_decay"])), T.ADAM_FP32)
        for id, d in [("one-active", 0.25), ("two-active", 0.5)]),
          train=dict(lr=0.01, density=0.5, update_gap=T_REFRESH), resume=(dict(FRUGAL, density=0.5),)),
    Entry("frugal_svd", (Case("float64", dict(FRUGAL, density=0.25), given_basis(dict(FRUGAL, density=0.25), "frugal"),
                              T.SUBSPACE_FP64, dtype=F64),
                         Case("float32-given-the-basis", dict(FRUGAL, density=0.25),
                              given_basis(dict(FRUGAL, density=0.25), "frugal", given=True), T.FRUGAL_SVD_FP32)),
          spec="frugal", train=dict(lr=0.01, density=0.5, update_gap=T_REFRESH), resume=(dict(FRUGAL, density=0.25),)),
    # resume with gap 3: refreshes on steps 1, 4, 7, 10, 13, …; the resumed steps 11 and 12 use the
    # indices cached at step 10 (restored from the state dict), 13 refreshes
    Entry("dct_adamw", tuple(dct_case(gap, ef) for ef in (False, True) for gap in (1, 3)),
          train=dict(lr=0.01, rank=4, update_proj_gap=3, use_ef=True),
          resume=(dict(rank=3, use_ef=False), dict(rank=3, use_ef=True))),
    # resume: the momentum buffer (with its error feedback) is the only matrix state
    Entry("trion", (trion_case("kj-decay", "muon", "kj", 0.1), trion_case("dion", "spectral", "dion", 0.0)),
          train=dict(lr=0.02, rank=4, ns_dtype="float32", adam_lr=0.01), resume=(dict(rank=3),)),
    Entry("lanton", (lanton_case("option1-min", {}, {}),
                     lanton_case("mean-eps-decay", dict(normalization="mean", eps=1e-3, weight_decay=0.1),
                                 dict(normalization="group_mean", eps=1e-3, weight_decay=0.1)),
                     lanton_case("option2-none", dict(estimator_mix=0.0, normalization="none"),
                                 dict(estimator="option2", normalization="none")),
                     lanton_case("defaults-float32", {}, {}, dtype=F32)),
          train=dict(lr=0.02)),
    Entry("fismo", tuple(fismo_case(id, dt, h, r) for dt in (F32, F64) for id, h, r in FISMO_CASES),
          train=dict(lr=0.05, adam_lr=0.01)),
    # resume with resample_every = 4: draws at steps 1, 5, 9, 13 — the resumed step 11 is mid-period
    Entry("drop_muon", (drop_case("every-step", dict(lr=0.05, beta=0.1), dict(lr=0.05, beta=0.1), 1, 0),
                        drop_case("resample-every-3", dict(lr=0.05, beta=0.05, resample_every=3, seed=5),
                                  dict(lr=0.05, beta=0.05), 3, 5),
                        drop_case("shape-scaled", dict(lr=0.03, beta=0.2, shape_scale="original", seed=11),
                                  dict(lr=0.03, beta=0.2, shape="original"), 1, 11)),
          train=dict(lr=0.05, adam_lr=0.01, ns_dtype="float32"), resume=(dict(resample_every=4),)),
    # ---- issue 14's well-known optimizers: torch.optim or pytorch_optimizer 4.1.0 on float64 copies --------
    *ZOO,
]
