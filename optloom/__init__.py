"""optloom: a declarative optimizer-composition language and its compiler for PyTorch.

>>> opt = optloom.optimizer("adamw", model.parameters(), lr=1e-3)   # doctest: +SKIP
"""
from .check.program import Program, compile
from .lang.diagnostics import Diagnostic, SpecError
from .primitives.registry import State, primitive

__version__ = "0.1.0"


def optimizer(spec, params, backend: str | None = None, nonfinite: str = "raise", name: str | None = None,
              **hyperparams):
    """Build a ``torch.optim.Optimizer`` from a spec (a shipped name, a .opt path or spec text).
    ``backend``: ``"inductor"`` (the default; ``$OPTLOOM_BACKEND`` overrides it) compiles the step
    with ``torch.compile`` on the first call; ``"eager"`` runs the same graphs uncompiled."""
    from .runtime.optimizer import SpecOptimizer

    return SpecOptimizer(compile(spec, name=name), params, backend=backend, nonfinite=nonfinite, **hyperparams)


from .preclip import spectral_preclip_  # noqa: E402

__all__ = ["Diagnostic", "Program", "SpecError", "State", "compile", "optimizer", "primitive", "spectral_preclip_"]
