"""Distributed bookkeeping for the trainer, in one place: which process this is, its share of a
step's prompts, and the two collective operations an update needs.

`accelerate launch` (or torchrun) starts one process per device; each takes an equal share of
every step's prompts, computes its gradients scaled by the *global* batch size (so the losses
add up), and the gradients are summed with an all-reduce: the update equals one process on the
global batch. The per-rollout weight records of every process are gathered onto rank 0, which
alone writes files. With one process every operation here is the identity.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence, TypeVar

import numpy as np
import torch
import torch.distributed as dist

T = TypeVar("T")


def init() -> None:
    """Join the process group `accelerate launch` (or torchrun) describes in the environment."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        from accelerate import PartialState  # optional dependency: only for multi-process runs

        PartialState()  # initialises torch.distributed (gloo on CPU, nccl on GPU)


@dataclass
class Processes:
    """This process's `rank` among `size` training processes."""

    rank: int = 0
    size: int = 1

    @classmethod
    def current(cls) -> "Processes":
        """Join the process group when the environment describes one (`init`), then read it."""
        init()
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes the run directory."""
        return self.rank == 0

    def check_divisible(self, **counts: int) -> None:
        """ValueError unless each `optim.<key>` count splits evenly across the processes."""
        for key, value in counts.items():
            if value % self.size:
                raise ValueError(f"config key 'optim.{key}' ({value}) must be divisible by the {self.size} processes")

    def share(self, items: Sequence[T]) -> list[T]:
        """This process's contiguous share of `items` (whose length the process count divides)."""
        n = len(items) // self.size
        return list(items[self.rank * n : (self.rank + 1) * n])

    def group_offset(self, step: int) -> int:
        """Added to a step's prompt indices so group ids differ across steps and processes."""
        return step * 1_000_000 + self.rank * 10_000

    def sum_gradients(self, params: Sequence[torch.nn.Parameter]) -> None:
        """All-reduce (sum, not mean: each process's loss is already scaled by the global size)."""
        if self.size == 1:
            return
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)

    def gather_rows(self, part: dict, list_keys: Sequence[str] = ()) -> dict:
        """Every process's `part` (arrays of rows, and Python lists under `list_keys`), in rank order."""
        if self.size == 1:
            return part
        gathered: list = [None] * self.size
        dist.all_gather_object(gathered, part)
        return {key: [x for g in gathered for x in g[key]] if key in list_keys
                else np.concatenate([g[key] for g in gathered]) for key in part}
