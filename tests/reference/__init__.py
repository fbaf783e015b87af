"""Independent float64 reference oracles for the shipped optimizers, written from their papers and
official code (the table "Sources" in docs/optimizers.md names them per optimizer).

Shares no code with ``optloom``. Every class: ``Cls(params: list[(name, tensor)], **hyper)``,
``.step(grads: dict[name, tensor])``, ``.params: dict[name, tensor]`` (float64 copies),
``.state: dict[name, dict[str, tensor]]``. Hyper-parameters are plain attributes (set ``.lr`` etc.
between steps for schedules). Random choices are explicit callables/arguments.
"""
from tests.reference.adaptive import NAMO, NAMOD
from tests.reference.aro import ARO
from tests.reference.baseline import SGD, AdamW, Lion, Muon, Signum
from tests.reference.common import newton_schulz, ns_scalar_map, polar_svd, shape_scale
from tests.reference.frontier import FISMO, LANTON, DropMuon
from tests.reference.muon_family import ROOT, AuON, HybridAuON, LowRankMuon, PolarGrad
from tests.reference.spectral import SPECTRA, hard_spectral_clip, soft_spectral_clip
from tests.reference.subspace import DCTAdamW, FRUGALBlock, FRUGALProjected, Conda, Trion, dct_matrix

__all__ = [
    "SGD", "AdamW", "Lion", "Signum", "Muon", "AuON", "HybridAuON", "ROOT", "PolarGrad",
    "LowRankMuon", "ARO", "NAMO", "NAMOD", "SPECTRA", "Conda", "FRUGALBlock", "FRUGALProjected",
    "DCTAdamW", "Trion", "DropMuon", "FISMO", "LANTON", "newton_schulz", "ns_scalar_map",
    "polar_svd", "shape_scale", "soft_spectral_clip", "hard_spectral_clip", "dct_matrix",
]
