"""Every exception a user of optloom can meet, in one place (all exported from ``optloom``).

Each leaves the optimizer as it was: a spec that fails to check builds nothing; a step that raises
changed no parameter and no state; a rejected state_dict loaded nothing.
"""
from __future__ import annotations

from .lang.diagnostics import SpecError


class NonFiniteGradientError(FloatingPointError):
    """A gradient held NaN or Inf; the step was not applied."""


class StateDictError(ValueError):
    """A state_dict that does not fit this optimizer; the optimizer was left untouched."""


class DistributedStepError(RuntimeError):
    """A rank failed during a distributed step; no rank applied any part of it."""


class UnsupportedParameterError(TypeError):
    """A parameter optloom cannot step as given (complex dtype, sparse gradient, a DTensor
    placement it does not run); the message names the parameter and what to do instead."""


__all__ = ["DistributedStepError", "NonFiniteGradientError", "SpecError", "StateDictError",
           "UnsupportedParameterError"]
