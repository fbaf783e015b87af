"""The primitive library. Importing this package registers every primitive: one module per family
(``family=`` of each declaration), plus the shared helpers of :mod:`.linalg`, :mod:`.streams` and
:mod:`.ns_coefficients`."""
from . import (apply, elementwise, init, kronecker, moments, normalizers, orthogonalize,  # noqa: F401
               precision, reductions, rotation, sampling, shape, spectral, subspace)
from .context import Ctx
from .registry import REGISTRY, Primitive, State, all_primitives, lookup, primitive

__all__ = ["Ctx", "Primitive", "REGISTRY", "State", "all_primitives", "lookup", "primitive"]
