"""optloom: a declarative optimizer-composition language and its compiler for PyTorch.

>>> opt = optloom.optimizer("adamw", model.parameters(), lr=1e-3)   # doctest: +SKIP
"""
from .backends import backend_names, register_kernel
from .check.program import Program, compile
from .export import export
from .errors import (DistributedStepError, NonFiniteGradientError, SpecError, StateDictError,
                     UnsupportedParameterError)
from .lang.diagnostics import Diagnostic
from .preclip import spectral_preclip_
from .primitives.registry import State, primitive
from .runtime.distributed import init_state, replicated
from .runtime.optimizer import SpecOptimizer

__version__ = "0.1.0"


def optimizer(spec: str, params, backend: str | None = None, nonfinite: str = "raise", name: str | None = None,
              **hyperparams) -> SpecOptimizer:
    """Build a ``torch.optim.Optimizer`` from a spec (a shipped name, a .opt path or spec text).
    ``backend``: ``"inductor"`` (the default; ``$OPTLOOM_BACKEND`` overrides it) compiles the step
    with ``torch.compile`` on the first call; ``"eager"`` runs the same graphs uncompiled
    (``backend_names()`` lists them)."""
    return SpecOptimizer(compile(spec, name=name), params, backend=backend, nonfinite=nonfinite, **hyperparams)


__all__ = ["Diagnostic", "DistributedStepError", "NonFiniteGradientError", "Program", "SpecError", "SpecOptimizer",
           "State", "StateDictError", "UnsupportedParameterError", "backend_names", "compile", "export", "init_state",
           "optimizer", "primitive", "register_kernel", "replicated", "spectral_preclip_"]
