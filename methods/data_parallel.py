"""This process's share of data-parallel work, for runs under `accelerate launch` (or `torchrun`) with several processes.

Every process holds the same model and walks the same batches; each computes its slice of a batch, and gradients
and loss sums are added up across processes (`torch.distributed.all_reduce`), so every process takes the same step,
the one a single process would take on the whole batch. One process (rank 0) writes files. With one process every
operation here is a no-op, so the same code runs unchanged on one CPU, one GPU or several.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

Item = TypeVar("Item")


@dataclass(frozen=True)
class DataParallel:
    """Rank `rank` of `world` processes; `DataParallel()` is a single process."""

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, items: list[Item]) -> list[Item]:
        """This process's items: every `world`-th one, starting at `rank`."""
        return items[self.rank :: self.world]

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The elementwise sum of `tensor` over all processes (in place)."""
        if self.world > 1:
            dist.all_reduce(tensor)
        return tensor

    def sum_gradients(self, parameters: list[torch.nn.Parameter]) -> None:
        """Add up each parameter's gradient over all processes (a process with no data contributes zeros)."""
        if self.world == 1:
            return
        for parameter in parameters:
            if parameter.grad is None:
                parameter.grad = torch.zeros_like(parameter)
            dist.all_reduce(parameter.grad)

    def gather(self, value: Any) -> list[Any]:
        """Every process's `value` (any picklable object), in rank order."""
        if self.world == 1:
            return [value]
        gathered: list[Any] = [None] * self.world
        dist.all_gather_object(gathered, value)
        return gathered

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


SINGLE_PROCESS = DataParallel()
