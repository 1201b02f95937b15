"""How the trainer's update walks one batch of rollouts (scope_lib/trainer.py, `Trainer.update`).

    batch --update_plan--> mini-batches of `mini_batch_prompts` prompt groups (one optimizer step each)
          --micro_batches--> micro-batches of whole groups (one forward and backward pass each)
          --trim--> the micro-batch's rows without the columns that are padding in all of them

A micro-batch always holds every row of each prompt group it touches (`check_whole_groups`): the
Eq. 4-5 softmax and GRPO's group advantage are computed per micro-batch.

`early_forward` runs the update's first micro-batch forward pass ahead of the update: with
`reward.overlap` the trainer starts it once generation is done, while the pipeline's worker still
grades the rows that ended last (`pipeline.score_rollouts`' `while_grading`). The forward pass
reads the rollouts only; the loss reads the rewards after it. `Trainer._micro_loss` takes the
logits only for the micro-batch with the same inputs and the same parameters (`EarlyForward.matches`),
so the update is the synchronous path's bit for bit (tests/test_reward_overlap.py).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch

from scope_lib import logprobs

__all__ = ["EarlyForward", "check_whole_groups", "early_forward", "micro_batches", "student_logits", "trim",
           "update_plan"]


def micro_batches(group: torch.Tensor, rows_per_micro: int) -> list[torch.Tensor]:
    """Row indices split into micro-batches of whole prompt groups (rows of a group are adjacent)."""
    boundaries = [0] + (torch.nonzero(group[1:] != group[:-1]).squeeze(-1) + 1).tolist() + [len(group)]
    batches, current = [], []
    for start, end in zip(boundaries[:-1], boundaries[1:]):
        if current and len(current) + (end - start) > rows_per_micro:
            batches.append(torch.tensor(current))
            current = []
        current.extend(range(start, end))
    if current:
        batches.append(torch.tensor(current))
    return batches


def check_whole_groups(micro_group: torch.Tensor, group_sizes: Counter) -> None:
    """RuntimeError unless a micro-batch holds every row of each prompt group it touches.

    The Eq. 4-5 softmax (and GRPO's group advantage) is computed per micro-batch; a group cut in
    two would be normalised twice, and its record would not be the weights of docs/DESIGN.md §2.6-2.7.
    """
    for group, count in Counter(micro_group.tolist()).items():
        if count != group_sizes[group]:
            raise RuntimeError(f"a micro-batch holds {count} of the {group_sizes[group]} rows of prompt group {group}: "
                               "the rows of a group must be adjacent in the batch")


def trim(batch: dict[str, torch.Tensor], rows: torch.Tensor) -> dict[str, torch.Tensor]:
    """Select rows and drop the columns (dim 1) that are padding in every selected row."""
    sub = {k: v[rows] for k, v in batch.items()}
    used = sub["attention_mask"].bool().any(0).nonzero().squeeze(-1)
    first, last = int(used[0]), int(used[-1]) + 1
    return {k: (v[:, first:last] if v.dim() >= 2 else v) for k, v in sub.items()}


def update_plan(group: torch.Tensor, per_mini: int, rows_per_micro: int) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
    """The update's order: per mini-batch of `per_mini` prompt groups (in order of first
    appearance), its rows and their micro-batches (indices into those rows)."""
    unique, order = list(dict.fromkeys(group.tolist())), group.tolist()
    plan = []
    for start in range(0, len(unique), per_mini):
        chosen = set(unique[start : start + per_mini])
        rows = torch.tensor([i for i, g in enumerate(order) if g in chosen])
        plan.append((rows, micro_batches(group[rows], rows_per_micro)))
    return plan


def student_logits(student: torch.nn.Module, ids: torch.Tensor, att: torch.Tensor) -> torch.Tensor:
    """The student's logits on left-padded rows (positions counted from each row's first token)."""
    return student(input_ids=ids, attention_mask=att, position_ids=logprobs.position_ids_from_mask(att)).logits


def _versions(student: torch.nn.Module) -> list[int]:
    """Each parameter's in-place version counter: it moves whenever an optimizer step writes it."""
    return [p._version for p in student.parameters()]


@dataclass
class EarlyForward:
    """The update's first micro-batch forward pass, run before the update (with autograd)."""

    input_ids: torch.Tensor  # the micro-batch's inputs, trimmed and on the model's device
    attention_mask: torch.Tensor
    versions: list[int]  # `_versions(student)` when it ran
    logits: torch.Tensor

    def matches(self, student: torch.nn.Module, ids: torch.Tensor, att: torch.Tensor) -> bool:
        """Whether these logits are `student`'s on (ids, att) now: same inputs, no parameter written since."""
        return (ids.shape == self.input_ids.shape and torch.equal(ids, self.input_ids)
                and torch.equal(att, self.attention_mask) and self.versions == _versions(student))


def early_forward(student: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  group: torch.Tensor, *, per_mini: int, rows_per_micro: int, device) -> EarlyForward:
    """The forward pass the update would run first on this batch, in training mode with autograd."""
    rows, micros = update_plan(group, per_mini, rows_per_micro)[0]
    known = {"input_ids": input_ids[rows], "attention_mask": attention_mask[rows]}
    micro = {k: v.to(device) for k, v in trim(known, micros[0]).items()}
    was_training = student.training
    student.train()
    try:
        with torch.enable_grad():
            logits = student_logits(student, micro["input_ids"], micro["attention_mask"])
    finally:
        student.train(was_training)
    return EarlyForward(micro["input_ids"], micro["attention_mask"], _versions(student), logits)
