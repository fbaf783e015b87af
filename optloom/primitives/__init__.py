"""The primitive library. Importing this package registers every primitive."""
from . import apply, elementwise, moments, orthogonalize, reductions, shape  # noqa: F401
from .context import Ctx
from .registry import REGISTRY, Primitive, State, all_primitives, lookup, primitive

__all__ = ["Ctx", "Primitive", "REGISTRY", "State", "all_primitives", "lookup", "primitive"]
