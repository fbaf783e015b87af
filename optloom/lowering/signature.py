"""The step graph's calling convention, owned by one type.

A step graph is ``f(param, grad, step, ids, *states, *runtime, *reduced)``: the bucket's
parameter and gradient buffers, its step count (0-d), the members' parameter ids, one buffer per
state (in first-use order), the leaves of the runtime hyperparameters (0-d tensors; a tuple of
floats gives one leaf per item) and one 0-d value per group reduction. It writes the new
parameter and states into their buffers in place. Everything that builds, feeds or reads these
inputs — lowering, the executor, the distributed strategy — goes through :class:`StepSignature`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from .. import kinds


@dataclass(frozen=True)
class StepArgs:
    """The inputs of one call of a step graph, by name."""

    param: Any
    grad: Any
    step: Any
    ids: Any
    states: dict[str, Any]
    runtime: dict[str, Any]  # name -> 0-d tensor, or tuple of 0-d tensors
    reduced: list[Any]


@dataclass(frozen=True)
class StepSignature:
    states: tuple[str, ...]
    runtime: tuple[tuple[str, Any], ...]  # (name, a template of its value: 0.0 or a tuple of floats)
    n_reduced: int = 0

    @classmethod
    def of(cls, states: Sequence[str], runtime: dict[str, Any], n_reduced: int = 0) -> "StepSignature":
        """``runtime``: each runtime hyperparameter's current value (its form: float or tuple)."""
        return cls(tuple(states), tuple((n, _template(v)) for n, v in sorted(runtime.items())), n_reduced)

    @property
    def runtime_names(self) -> list[str]:
        return [n for n, _ in self.runtime]

    @property
    def n_runtime_leaves(self) -> int:
        return sum(len(kinds.runtime_leaves(t)) for _, t in self.runtime)

    def pack(self, param: Any, grad: Any, step: Any, ids: Any, states: Sequence[Any],
             runtime: Sequence[Any], reduced: Sequence[Any] = ()) -> list[Any]:
        """Positional graph inputs. ``runtime``: the runtime leaves, flat, in signature order."""
        if len(states) != len(self.states) or len(runtime) != self.n_runtime_leaves:
            raise ValueError(f"step graph takes {len(self.states)} state(s) and {self.n_runtime_leaves} runtime "
                             f"value(s), got {len(states)} and {len(runtime)}")
        return [param, grad, step, ids, *states, *runtime, *reduced]

    def unpack(self, args: Sequence[Any]) -> StepArgs:
        ns = len(self.states)
        leaves = iter(args[4 + ns: 4 + ns + self.n_runtime_leaves])
        runtime = {name: kinds.rebuild(t, leaves) for name, t in self.runtime}
        return StepArgs(args[0], args[1], args[2], args[3], dict(zip(self.states, args[4: 4 + ns])), runtime,
                        list(args[4 + ns + self.n_runtime_leaves:]))

    def state_inputs(self, args: Sequence[Any]) -> list[Any]:
        """The state buffers among packed inputs (what a transactional step commits)."""
        return list(args[4: 4 + len(self.states)])


def _template(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return tuple(_template(v) for v in value)
    return 0.0
