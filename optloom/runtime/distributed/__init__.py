"""optloom on several processes: FSDP2-sharded parameters (DTensors) and, opted in with
:func:`replicated`, DDP-replicated ones. The step is :class:`DistributedStep` (a strategy of the
runtime); docs/distributed.md explains what runs where."""
from __future__ import annotations

from typing import Any

import torch

from ...check import ir
from ..buckets import Bucket
from .buckets import ShardedBucket, is_sharded
from .strategy import DistributedStep, check_param, init_state, replicated


def bucket_type(p: torch.Tensor) -> type[Bucket]:
    """The bucket class for a parameter: sharded for FSDP2 DTensors."""
    return ShardedBucket if is_sharded(p) else Bucket


def strategy_for(p: torch.Tensor, rule: ir.RuleIR, label: str, spec: str, current: Any) -> Any:
    """The step strategy an optimizer holding ``p`` needs: ``current`` unless ``p`` is an FSDP2
    DTensor and ``current`` is not yet a :class:`DistributedStep`. Rejects what it cannot run."""
    if not is_sharded(p):
        return current
    check_param(p, label)
    if rule.reductions:
        raise NotImplementedError(
            f"rule '{rule.label}' of spec '{spec}' reduces across its parameter group (group_reduce), "
            f"which FSDP2-sharded parameters do not support yet (parameter {label})")
    return current if isinstance(current, DistributedStep) else DistributedStep()


__all__ = ["DistributedStep", "bucket_type", "init_state", "is_sharded", "replicated", "strategy_for"]
