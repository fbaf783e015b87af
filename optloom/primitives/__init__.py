"""The primitive library. Importing this package registers every primitive."""
from . import (adaptive, apply, bases, elementwise, init, kronecker, moments, normalizers, ns_variants, orthogonalize,  # noqa: F401
               dct, polar, reductions, sampling, shape, spectral, subspace)
from .context import Ctx
from .registry import REGISTRY, Primitive, State, all_primitives, lookup, primitive

__all__ = ["Ctx", "Primitive", "REGISTRY", "State", "all_primitives", "lookup", "primitive"]
