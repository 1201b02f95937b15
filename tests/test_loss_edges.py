"""Losses at their edges: an empty or all-masked batch gives loss 0 and zero, finite
gradients; the exact reverse KL is finite wherever the student puts mass, even where the teacher
gives a token probability 0 (log-prob -inf), and is checked against float64 hand computations."""

from __future__ import annotations

import math
import os
import random

import pytest
import torch

from scope_lib import losses
from scope_lib.losses import TEACHER_LOGP_FLOOR, full_reverse_kl


@pytest.fixture
def gen():
    seed = int(os.environ.get("SCOPE_TEST_SEED", random.SystemRandom().randrange(2**32)))
    print(f"seed={seed}")
    return torch.Generator().manual_seed(seed)


def _batch(rows: int, length: int, gen, *, masked: bool):
    """Token log-probs that depend on one parameter `scale` (so a gradient has somewhere to go)."""
    scale = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    base = -torch.rand(rows, length, generator=gen, dtype=torch.float64) * 3
    logp = base * scale
    mask = torch.zeros(rows, length, dtype=torch.bool) if masked else torch.ones(rows, length, dtype=torch.bool)
    # Under the mask the inputs may hold anything; the loss must not read it.
    old_logp = base.clone()
    teacher_logp = torch.full((rows, length), -math.inf, dtype=torch.float64)
    if rows:
        old_logp[:, 0] = math.nan
    return scale, logp, old_logp, teacher_logp, mask


LOSS_NAMES = ("grpo", "opd_baseline", "opd_baseline_clipped", "sft", "scope", "scope_clipped", "mle_rows", "opd_rows")


def _losses(logp, old_logp, teacher_logp, mask):
    """Every batch loss of the module, as name -> scalar."""
    rows = logp.shape[0]
    rewards = torch.zeros(rows, dtype=torch.float64)
    group = torch.zeros(rows, dtype=torch.long)
    correct = torch.zeros(rows, dtype=torch.bool)
    return {
        "grpo": losses.grpo_loss(logp, old_logp, old_logp, rewards, group, mask)[0],
        "opd_baseline": losses.opd_baseline_loss(logp, old_logp, teacher_logp, mask)[0],
        "opd_baseline_clipped": losses.opd_baseline_loss(logp, old_logp, teacher_logp, mask, clip_eps=0.2)[0],
        "sft": losses.sft_loss(logp, mask),
        "scope": losses.scope_loss(logp, old_logp, teacher_logp, mask, correct, group)[0],
        "scope_clipped": losses.scope_loss(logp, old_logp, teacher_logp, mask, correct, group, clip_eps=0.2)[0],
        "mle_rows": losses.mle_loss(logp, old_logp, mask).sum(),
        "opd_rows": losses.opd_loss(logp, old_logp, teacher_logp, mask).sum(),
    }


@pytest.mark.parametrize("rows,masked", [(0, False), (3, True)], ids=["no rows", "all masked"])
def test_empty_batch_gives_zero_loss_and_zero_gradient(gen, rows, masked):
    for name in LOSS_NAMES:
        scale, logp, old_logp, teacher_logp, mask = _batch(rows, 4, gen, masked=masked)
        if rows == 0:
            teacher_logp = torch.zeros_like(logp)  # nothing to read either way
        all_losses = _losses(logp, old_logp, teacher_logp, mask)
        assert set(all_losses) == set(LOSS_NAMES)
        loss = all_losses[name]
        assert loss.shape == () and loss.item() == 0.0, (name, loss)  # was NaN for grpo, opd_baseline, sft
        if loss.requires_grad:  # a zero still connected to the graph: its gradient must be exactly 0
            (grad,) = torch.autograd.grad(loss, scale, allow_unused=True)
            assert grad is None or grad.item() == 0.0, (name, grad)


def test_empty_batch_stats_are_finite_or_nan_never_errors():
    logp = torch.zeros(0, 4, requires_grad=True)
    loss, stats = losses.grpo_loss(logp, logp.detach(), None, torch.zeros(0), torch.zeros(0, dtype=torch.long),
                                   torch.zeros(0, 4))
    assert loss.item() == 0.0 and stats["clip_frac"] == 0.0
    loss, stats = losses.opd_baseline_loss(logp, logp.detach(), logp.detach(), torch.zeros(0, 4))
    assert loss.item() == 0.0 and stats["opd_loss"] == 0.0 and stats["clip_frac"] == 0.0


# --- the exact reverse KL where the teacher gives probability 0 ------------------------------


def _hand_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """float64 loops: sum over tokens the student gives mass of p_S (log p_S - max(log p_T, floor)), (B, T)."""
    B, T, V = student_logits.shape
    out = torch.zeros(B, T, dtype=torch.float64)
    for b in range(B):
        for t in range(1, T):
            s = student_logits[b, t - 1].double()
            u = teacher_logits[b, t - 1].double()
            log_zs = torch.logsumexp(s, 0).item()
            log_zt = torch.logsumexp(u, 0).item()
            total = 0.0
            for v in range(V):
                log_ps = s[v].item() - log_zs
                if log_ps == -math.inf:
                    continue  # 0 log 0 = 0: no mass, no term
                log_pt = max(u[v].item() - log_zt, TEACHER_LOGP_FLOOR)
                total += math.exp(log_ps) * (log_ps - log_pt)
            out[b, t] = total
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kl_is_finite_where_the_teacher_gives_zero_probability(gen, dtype):
    B, T, V = 2, 4, 7
    student = torch.randn(B, T, V, generator=gen, dtype=torch.float64)
    teacher = torch.randn(B, T, V, generator=gen, dtype=torch.float64)
    teacher[0, 0, 2] = -math.inf  # teacher rules out a token the student gives mass
    teacher[1, :, 5] = -math.inf
    student[1, :, 5] = -math.inf  # ... and one both rule out: 0 * (-inf - -inf) was NaN
    student[0, 2, 0] = -math.inf  # student-only zero: no term
    student_param = student.to(dtype).requires_grad_(True)
    kl = full_reverse_kl(student_param, teacher.to(dtype))
    assert torch.isfinite(kl).all(), kl  # was inf at [0, 1] and NaN at [1, 1:]
    tolerance = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(kl.double(), _hand_kl(student, teacher), **tolerance)
    # The clamp is a large but bounded penalty: at most -floor nats per position.
    assert kl.max() <= -TEACHER_LOGP_FLOOR
    (grad,) = torch.autograd.grad(kl.sum(), student_param)
    assert torch.isfinite(grad).all()
    assert grad[0, 0, 2] > 0  # the gradient pushes the student off the token the teacher rules out
    assert (grad[1, :, 5] == 0).all() and grad[0, 2, 0] == 0  # no mass, no gradient


def test_kl_zero_when_both_rule_out_the_same_tokens(gen):
    logits = torch.randn(3, 5, 9, generator=gen)
    logits[..., :3] = -math.inf
    kl = full_reverse_kl(logits, logits.clone())
    torch.testing.assert_close(kl, torch.zeros(3, 5), atol=1e-6, rtol=0)


def test_kl_unchanged_above_the_floor(gen):
    """With every teacher log-prob above the floor, the clamp changes nothing (float64 identity)."""
    student = torch.randn(2, 6, 11, generator=gen, dtype=torch.float64)
    teacher = torch.randn(2, 6, 11, generator=gen, dtype=torch.float64) * 3
    log_ps = torch.log_softmax(student, -1)[:, :-1]
    log_pt = torch.log_softmax(teacher, -1)[:, :-1]
    assert log_pt.min() > TEACHER_LOGP_FLOOR
    want = (log_ps.exp() * (log_ps - log_pt)).sum(-1)
    torch.testing.assert_close(full_reverse_kl(student, teacher)[:, 1:], want, rtol=1e-12, atol=1e-12)
