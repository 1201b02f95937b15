"""Process bookkeeping (scope_lib/distributed.py) without a process group: shares, group ids and
the checks a multi-process run relies on (the all-reduce itself: tests/test_trainer.py)."""

import numpy as np
import pytest
import torch

from scope_lib.distributed import Processes


def test_each_process_takes_its_contiguous_share_and_the_shares_cover_the_batch():
    items = list(range(12))
    shares = [Processes(rank, 3).share(items) for rank in range(3)]
    assert shares == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    assert Processes().share(items) == items and Processes().is_main and not Processes(1, 3).is_main


def test_group_offsets_never_collide_across_steps_and_ranks():
    offsets = {Processes(rank, 4).group_offset(step) for step in range(50) for rank in range(4)}
    assert len(offsets) == 200


def test_counts_the_processes_do_not_divide_are_refused_naming_the_key():
    Processes(0, 2).check_divisible(prompts_per_step=8)
    with pytest.raises(ValueError, match=r"optim\.mini_batch_prompts' \(3\) must be divisible by the 2"):
        Processes(0, 2).check_divisible(prompts_per_step=8, mini_batch_prompts=3)


def test_one_process_leaves_gradients_and_rows_as_they_are():
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    Processes().sum_gradients([p])
    assert torch.equal(p.grad, torch.full((3,), 2.0))
    part = {"group": np.arange(3), "texts": ["a", "b", "c"]}
    assert Processes().gather_rows(part, list_keys=("texts",)) is part
