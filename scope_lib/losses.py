"""The training losses: SCOPE (Eq. 1-3, 6) and the GRPO / KD / OPD / hybrid (KDRL-style) baselines.

Conventions (shared by the whole project):

- ``logp``, ``old_logp``, ``teacher_logp``, ``ref_logp``: (B, T) float token log-probs aligned with
  ``input_ids``: ``logp[:, t] = log p(input_ids[:, t] | input_ids[:, :t])``, ``logp[:, 0] = 0``.
- ``mask``: (B, T) response mask, 1 exactly on generated tokens. ``|y_i| = mask[i].sum()``.
  Values under ``mask == 0`` never matter, not even NaN/inf: every masked read goes through
  ``torch.where`` on the *inputs* (not a multiplication by 0, and not only on the outputs, since
  ``where(m, exp(x), 0)`` still back-propagates ``0 * inf = NaN``).
- The token log-ratio ``logp - old_logp`` is clamped to [-20, 20] before ``exp`` (as verl does),
  so rho stays finite in float32.
- Every per-sequence loss is a token mean over that sequence's response (``1/|y_i|``); a row with
  no response token contributes 0. A batch with no rows, or with every token masked, gives loss 0
  whose gradient is exactly 0 (a zero still connected to the graph, so ``backward`` works), never
  NaN: batch means divide by ``max(rows, 1)``.
- Normalisation over the batch lives in one place, :func:`normalise`: Eq. 6's ``E_x`` (the
  per-row sum over the number of prompts, SCOPE) or the mean over rows (GRPO, KD, OPD, hybrid), and,
  given the global batch's count ``n_global``, the micro-batch's share of the global batch's loss
  (``mean * n / n_global``), so that micro-batch losses sum to the loss of the whole batch.
  Every loss here takes ``n_global``; the trainer never rescales a loss itself.
- :func:`full_reverse_kl` (the exact small-vocabulary KL) clamps teacher log-probs at
  ``TEACHER_LOGP_FLOOR`` (-100 nats): a token the student gives mass and the teacher probability 0
  costs a large but finite penalty whose gradient pushes the student off it, and a token both
  rule out costs nothing (``0 log 0 = 0``), so the KL is finite wherever the student's support is.

Where the code departs from the paper (each one an explicit option, docs/DESIGN.md §3):

- ``opd_loss(clip_eps=...)`` / ``scope_loss(clip_eps=...)`` (``scope.incorrect_path: clipped_ppo``): the authors' released
  verl fork feeds ``A_t = -(old_logp - teacher_logp) * w_T`` as the advantage of a PPO clipped
  surrogate. Because ``w_T >= 0`` factors out of the clipped max, weighting the advantage equals
  weighting the per-sequence clipped loss, which is what we do. verl averages tokens over the
  whole micro-batch (``token-mean``); we keep the per-sequence token mean and the ``E_x`` over
  prompts of Eq. 6, so the two paths keep the paper's normalisation.
- The released code's correct path is a weighted NLL ``-w_S * mean_t logp``; it has the same
  gradient as Eq. 2 at ``theta = theta_old`` (one update per batch), so Eq. 2 is used throughout.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch

from scope_lib.logprobs import TEACHER_LOGP_FLOOR, full_reverse_kl  # the exact-KL loss's KL and its floor
from scope_lib.weights import DPAW, sequence_logp, weight_stats

IncorrectPath = Literal["paper", "clipped_ppo"]
INCORRECT_PATHS = ("paper", "clipped_ppo")

__all__ = [
    "DPAWWeights",
    "INCORRECT_PATHS",
    "TEACHER_LOGP_FLOOR",
    "dpaw_weights",
    "exact_kl_row_loss",
    "full_reverse_kl",
    "grpo_loss",
    "group_advantages",
    "hybrid_loss",
    "mle_loss",
    "normalise",
    "normaliser_count",
    "opd_baseline_loss",
    "opd_loss",
    "scope_loss",
    "sft_loss",
]


# ---------------------------------------------------------------------------------------------
# per-sequence losses (Eq. 1-3)


def _check_token_tensors(**tensors: torch.Tensor) -> None:
    ref_name, ref = next(iter(tensors.items()))
    if ref.dim() != 2:
        raise ValueError(f"{ref_name} must be 2-D (B, T), got shape {tuple(ref.shape)}")
    for name, value in tensors.items():
        if value.shape != ref.shape:
            raise ValueError(f"{name} must have the shape of {ref_name} {tuple(ref.shape)}, got {tuple(value.shape)}")


def _masked(x: torch.Tensor, on: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
    return torch.where(on, x, torch.full_like(x, fill))


def _token_mean(values: torch.Tensor, on: torch.Tensor) -> torch.Tensor:
    """(B, T) -> (B,): ``sum_t values * on / |y|``; empty rows give 0. ``values`` must be finite on ``on``."""
    lengths = on.sum(-1).clamp(min=1).to(values.dtype)
    return _masked(values, on).sum(-1) / lengths


def _batch_mean(per_row: torch.Tensor) -> torch.Tensor:
    """(B,) -> scalar mean over rows; 0 (with zero gradient) for B = 0, where ``.mean()`` is NaN."""
    return per_row.sum() / max(per_row.numel(), 1)


# ---------------------------------------------------------------------------------------------
# the batch normalisation (Eq. 6's E_x, the baselines' row mean), in one place

Unit = Literal["prompts", "rows"]
UNITS = ("prompts", "rows")


def normaliser_count(group: torch.Tensor, unit: Unit) -> int:
    """How many units a batch's rows make: distinct prompts (Eq. 6's ``E_x``) or rows.

    group: (B,) int prompt ids. SCOPE normalises per prompt; GRPO, KD and OPD per row.
    """
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    return int(torch.unique(group).numel()) if unit == "prompts" else int(group.shape[0])


def normalise(per_row: torch.Tensor, n_units: int, n_global: int | None = None) -> torch.Tensor:
    """The batch loss from its (B,) per-row summands: ``sum_i per_row_i / n_units``.

    ``n_units`` is :func:`normaliser_count` of the batch (prompts for Eq. 6, rows for the
    baselines); 0 units give a zero loss with zero gradient. With ``n_global`` (that count over
    the whole global batch: every micro-batch and every process), the result is this batch's
    share ``mean * n_units / n_global``: summed over the micro-batches it is the global batch's
    loss. (The mean is taken first and rescaled after, the order the trainer always used, so
    results are bitwise those of earlier versions.)
    """
    loss = per_row.sum() / max(n_units, 1)
    if n_global is None:
        return loss
    if not isinstance(n_global, int) or n_global < 1:
        raise ValueError(f"n_global must be a positive int or None, got {n_global!r}")
    return loss * n_units / n_global


# verl's bound on the token log-ratio: rho <= e^20 keeps float32 finite when a policy has drifted far
# (the ratio and its gradient are then saturated, which only happens far off the trust region).
MAX_LOG_RATIO = 20.0


def _ratio(logp: torch.Tensor, old_logp: torch.Tensor, on: torch.Tensor) -> torch.Tensor:
    # Eq. 1: rho_t = pi_theta / pi_old; masked before exp so padding cannot produce inf or NaN grads.
    log_ratio = _masked(logp - old_logp.detach(), on)
    return torch.exp(log_ratio.clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO))


def _clipped_surrogate(ratio: torch.Tensor, advantage: torch.Tensor, clip_eps: float):
    """PPO clipped surrogate per token: ``max(-A rho, -A clip(rho, 1-eps, 1+eps))`` and where it clipped."""
    unclipped = -advantage * ratio
    clipped = -advantage * torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    return torch.maximum(unclipped, clipped), (clipped > unclipped)


def _check_clip(clip_eps) -> None:
    if clip_eps is not None and not (isinstance(clip_eps, (int, float)) and 0 < clip_eps < 1):
        raise ValueError(f"clip_eps must be None or a number in (0, 1), got {clip_eps!r}")


def mle_loss(logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Eq. 2, valid-trajectory exploitation: ``L_MLE_i = -(1/|y_i|) sum_t rho_it``, shape (B,).

    logp: (B, T) current-policy token log-probs (with grad). old_logp: (B, T) behaviour policy
    ``pi_old`` (detached here). mask: (B, T) response mask. Eq. 1: ``rho = exp(logp - old_logp)``.
    At ``theta = theta_old`` the gradient equals the length-normalised NLL gradient.
    """
    _check_token_tensors(logp=logp, old_logp=old_logp, mask=mask)
    on = mask != 0
    return -_token_mean(_ratio(logp, old_logp, on), on)


def _opd_advantage(logp, old_logp, teacher_logp, on, clipped: bool) -> torch.Tensor:
    """OPD's per-token advantage (B, T), 0 off ``on``: Eq. 3's ``sg[teacher_logp - logp]`` or, for
    the released code's clipped form, ``sg[teacher_logp - old_logp]``. Shared by OPD, SCOPE's
    incorrect path and the hybrid's teacher term, so the three are one quantity."""
    if not clipped:
        # Eq. 3: A_t = sg[log pi_T - log pi_theta]; its expectation is the reverse-KL gradient.
        return _masked((teacher_logp - logp).detach(), on)
    # Released code: A_t = -(old_logp - teacher_logp) in a clipped PPO surrogate.
    return _masked((teacher_logp - old_logp).detach(), on)


def _opd_token_terms(logp, old_logp, teacher_logp, on, clip_eps):
    """Per-token OPD loss (B, T), advantage (B, T) and clipped indicator (B, T); all masked by ``on``."""
    ratio = _ratio(logp, old_logp, on)
    advantage = _opd_advantage(logp, old_logp, teacher_logp, on, clipped=clip_eps is not None)
    if clip_eps is None:
        return -ratio * advantage, advantage, torch.zeros_like(on)
    per_token, was_clipped = _clipped_surrogate(ratio, advantage, clip_eps)
    return per_token, advantage, was_clipped & on


def opd_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    teacher_logp: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_eps: float | None = None,
) -> torch.Tensor:
    """Eq. 3, flawed-trajectory rectification, shape (B,).

    ``L_OPD_i = -(1/|y_i|) sum_t rho_it * sg[teacher_logp_t - logp_t]``.
    logp, old_logp, teacher_logp, mask: (B, T). With ``clip_eps`` set, the released-code variant:
    advantage ``sg[teacher_logp - old_logp]`` in the PPO clipped surrogate
    ``max(-A rho, -A clip(rho, 1-eps, 1+eps))``, still a per-sequence token mean.
    """
    _check_token_tensors(logp=logp, old_logp=old_logp, teacher_logp=teacher_logp, mask=mask)
    _check_clip(clip_eps)
    on = mask != 0
    per_token, _, _ = _opd_token_terms(logp, old_logp, teacher_logp, on, clip_eps)
    return _token_mean(per_token, on)


# ---------------------------------------------------------------------------------------------
# SCOPE, Eq. 6


class DPAWWeights(NamedTuple):
    """Eq. 4-5 weights of a batch and the detached sequence scores they were computed from, all (B,)."""

    student: torch.Tensor  # w_S: 0 on incorrect rows
    teacher: torch.Tensor  # w_T: 0 on correct rows
    student_seq_logp: torch.Tensor  # s_S = sequence_logp(old_logp, mask), pi_old's score (Eq. 4)
    teacher_seq_logp: torch.Tensor  # s_T on incorrect rows (0 on correct rows, which the teacher need not score)


def dpaw_weights(
    old_logp: torch.Tensor,
    teacher_logp: torch.Tensor,
    mask: torch.Tensor,
    correct: torch.Tensor,
    group: torch.Tensor,
    dpaw: DPAW = DPAW(),
) -> DPAWWeights:
    """The Eq. 4 / Eq. 5 weights of a batch under the settings ``dpaw``, and the scores behind them.

    old_logp, teacher_logp, mask: (B, T); teacher_logp is read on incorrect rows only. correct:
    (B,) bool. group: (B,) int prompt ids. Scores are ``sequence_logp`` of the detached
    log-probs. The trainer computes them once per micro-batch, hands them to :func:`scope_loss`
    and keeps them in the step's weight record.
    """
    on = mask != 0
    student_seq_logp = sequence_logp(old_logp.detach(), on).detach()
    teacher_seq_logp = sequence_logp(teacher_logp.detach(), on & ~correct[:, None]).detach()
    return DPAWWeights(dpaw.student(student_seq_logp, correct, group), dpaw.teacher(teacher_seq_logp, correct, group),
                       student_seq_logp, teacher_seq_logp)


def scope_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    teacher_logp: torch.Tensor,
    mask: torch.Tensor,
    correct: torch.Tensor,
    group: torch.Tensor,
    *,
    weights: DPAW | DPAWWeights = DPAW(),
    clip_eps: float | None = None,
    opd_row_loss: torch.Tensor | None = None,
    n_global: int | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Eq. 6: ``L = E_x [ sum_{i in Omega_c} w_S_i L_MLE_i + sum_{i in Omega_w} w_T_i L_OPD_i ]``.

    logp, old_logp, mask: (B, T). teacher_logp: (B, T), read only on incorrect rows (correct rows
    may hold anything, NaN included). correct: (B,) bool reward. group: (B,) int prompt ids.
    ``E_x`` is the sum over rows divided by the number of distinct prompts in the batch.

    ``weights``: the Eq. 4-5 weights (:func:`dpaw_weights`, a :class:`DPAWWeights`), or the
    :class:`scope_lib.weights.DPAW` settings to compute them with from ``pi_old``'s sequence score
    ``sequence_logp(old_logp, mask)`` (Eq. 4) and ``sequence_logp(teacher_logp, mask)`` (Eq. 5),
    both detached. Ablations (docs/DESIGN.md §2.10, Fig. 5-6) are settings of that object.

    Micro-batching: weights are a softmax over a prompt's whole group, so a micro-batch must
    hold whole groups, or be given the rows of weights computed on the full batch; with
    ``n_global`` (the global batch's prompt count) the loss is this batch's share of the global
    batch's loss (:func:`normalise`), so the micro-batch losses sum to the full-batch loss.

    ``clip_eps``: None is Eq. 3 on the incorrect path; a number, the released code's clipped
    OPD (``scope.incorrect_path: clipped_ppo``). ``opd_row_loss``: optional (B,) per-row
    incorrect-path loss that replaces ``L_OPD_i`` (:func:`exact_kl_row_loss`, the exact
    small-vocabulary option); read on incorrect rows only, it must be finite there.

    Returns (scalar loss, stats) with python floats: ``mle_loss`` / ``opd_loss`` (weighted means
    over each path), ``n_correct``, ``n_incorrect``, ``n_prompts``, ``student_w_*`` /
    ``teacher_w_*`` (:func:`scope_lib.weights.weight_stats`), ``clip_frac`` (fraction of
    incorrect-path tokens clipped; 0 without ``clip_eps``) and ``opd_adv_mean`` (mean token
    advantage on the incorrect path).
    """
    _check_token_tensors(logp=logp, old_logp=old_logp, teacher_logp=teacher_logp, mask=mask)
    if correct.dim() != 1 or correct.shape[0] != logp.shape[0]:
        raise ValueError(f"correct must be 1-D of length {logp.shape[0]}, got shape {tuple(correct.shape)}")
    if correct.dtype != torch.bool:
        raise ValueError(f"correct must be a bool tensor, got {correct.dtype}")
    clip = clip_eps  # None: Eq. 3
    _check_clip(clip)
    on = mask != 0
    wrong_tokens = on & ~correct[:, None]  # (B, T) the only place teacher_logp is read

    # Eq. 4 / Eq. 5 weights from detached sequence scores.
    if isinstance(weights, DPAW):
        weights = dpaw_weights(old_logp, teacher_logp, mask, correct, group, weights)
    if not isinstance(weights, DPAWWeights):
        raise ValueError(f"weights must be a DPAW or a DPAWWeights, got {type(weights).__name__}")
    w_student, w_teacher = weights.student.detach(), weights.teacher.detach()
    if w_student.shape != correct.shape or w_teacher.shape != correct.shape:
        raise ValueError(f"weights must hold two ({correct.shape[0]},) tensors (student, teacher)")
    w_student = w_student.to(logp.dtype if logp.is_floating_point() else torch.float32)
    w_teacher = w_teacher.to(w_student.dtype)

    # Eq. 2 on every row (cheap), Eq. 3 with the teacher replaced by the current policy on correct rows:
    # the advantage there is 0 and whatever teacher_logp held cannot reach the loss or its gradient.
    l_mle = mle_loss(logp, old_logp, mask)  # (B,)
    safe_teacher = torch.where(wrong_tokens, teacher_logp.detach(), logp.detach())
    opd_tokens, advantage, was_clipped = _opd_token_terms(logp, old_logp, safe_teacher, wrong_tokens, clip)
    l_opd = _token_mean(opd_tokens, wrong_tokens)  # (B,)
    if opd_row_loss is not None:
        if opd_row_loss.shape != correct.shape:
            raise ValueError(f"opd_row_loss must have shape ({correct.shape[0]},), got {tuple(opd_row_loss.shape)}")
        l_opd = torch.where(~correct, opd_row_loss, torch.zeros_like(opd_row_loss)).to(l_mle.dtype)

    per_row = torch.where(correct, w_student * l_mle, w_teacher * l_opd)  # Eq. 6 summand
    n_prompts = normaliser_count(group, "prompts")
    loss = normalise(per_row, n_prompts, n_global)  # Eq. 6's E_x

    def path_mean(w: torch.Tensor, values: torch.Tensor, rows: torch.Tensor) -> float:
        total = float(w[rows].sum()) if bool(rows.any()) else 0.0
        return float((w[rows] * values.detach()[rows]).sum()) / total if total > 0 else math.nan

    n_wrong_tokens = int(wrong_tokens.sum())
    stats: dict[str, float] = {
        "mle_loss": path_mean(w_student, l_mle, correct),
        "opd_loss": path_mean(w_teacher, l_opd, ~correct),
        "n_correct": float(correct.sum()),
        "n_incorrect": float((~correct).sum()),
        "n_prompts": float(n_prompts),
        "clip_frac": float(was_clipped.sum()) / n_wrong_tokens if n_wrong_tokens else 0.0,
        "opd_adv_mean": float(advantage.sum()) / n_wrong_tokens if n_wrong_tokens else math.nan,
    }
    for prefix, w, rows in (("student_w_", w_student, correct), ("teacher_w_", w_teacher, ~correct)):
        stats.update({prefix + k: v for k, v in weight_stats(w, rows, group).items()})
    return loss, stats


# ---------------------------------------------------------------------------------------------
# baselines: GRPO, KD (SFT), OPD


def group_advantages(
    rewards: torch.Tensor, group: torch.Tensor, *, eps: float = 1e-6, std_normalize: bool = True
) -> torch.Tensor:
    """GRPO group-normalised advantages ``(r_i - mean_g) / (std_g + eps)``, (N,) float32.

    rewards: (N,) float. group: (N,) int prompt ids (arbitrary, unsorted). ``std_g`` is the
    population std (``unbiased=False``); verl uses the unbiased one, which only rescales groups
    of equal size. A single-member group gets advantage 0. ``std_normalize=False`` returns
    ``r_i - mean_g`` (Dr. GRPO). Vectorised with index_add, no loop over prompts.
    """
    if rewards.dim() != 1 or group.shape != rewards.shape:
        raise ValueError(
            f"rewards and group must be 1-D of equal length, got {tuple(rewards.shape)} and {tuple(group.shape)}"
        )
    r = rewards.detach().to(torch.float64)
    _, gidx = torch.unique(group, return_inverse=True)
    n_groups = int(gidx.max().item()) + 1 if gidx.numel() else 0
    zeros = torch.zeros(n_groups, dtype=torch.float64, device=r.device)
    count = zeros.index_add(0, gidx, torch.ones_like(r))
    mean = zeros.index_add(0, gidx, r) / count.clamp(min=1)
    centred = r - mean[gidx]
    if not std_normalize:
        return centred.float()
    var = zeros.index_add(0, gidx, centred * centred) / count.clamp(min=1)
    return (centred / (var.sqrt()[gidx] + eps)).float()


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor | None,
    rewards: torch.Tensor,
    group: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_eps: float = 0.2,
    beta: float = 1e-4,
    n_global: int | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """GRPO baseline (Table 3: G=8, clip 0.2, KL coefficient 1e-4), scalar loss and stats.

    logp, old_logp, ref_logp, mask: (B, T); rewards: (B,) float; group: (B,) int.
    Per token: ``max(-A rho, -A clip(rho, 1-eps, 1+eps)) + beta * k3``, with ``A`` from
    :func:`group_advantages` and the k3 estimator ``exp(ref - logp) - (ref - logp) - 1`` of
    ``KL(pi_theta || pi_ref)`` (``ref - logp`` clamped to +-20 like rho). Aggregation: per-sequence token mean, then mean over sequences.
    ``ref_logp=None`` (or ``beta=0``) drops the KL term. ``n_global``: the global batch's row
    count; the loss is then this batch's share of it (:func:`normalise`).
    stats: ``pg_loss``, ``kl`` (mean k3), ``clip_frac`` (fraction of response tokens clipped),
    ``adv_mean``.
    """
    _check_token_tensors(logp=logp, old_logp=old_logp, mask=mask)
    _check_clip(clip_eps)
    if rewards.shape != (logp.shape[0],):
        raise ValueError(f"rewards must have shape ({logp.shape[0]},), got {tuple(rewards.shape)}")
    on = mask != 0
    advantage = group_advantages(rewards, group).to(logp.dtype)
    pg, kl, was_clipped = _clipped_pg_and_k3(logp, old_logp, ref_logp, advantage[:, None].expand_as(logp), on,
                                             clip_eps=clip_eps, beta=beta)
    loss = normalise(pg + beta * kl, normaliser_count(group, "rows"), n_global)
    return loss, _pg_stats(pg, kl, was_clipped, on, advantage)


def _clipped_pg_and_k3(logp, old_logp, ref_logp, token_advantage, on, *, clip_eps, beta):
    """GRPO's per-row terms, (B,) each: the token mean of the clipped surrogate of the (B, T)
    ``token_advantage``, the token mean of k3 to the reference (0 without one), and the (B, T)
    clipped indicator."""
    ratio = _ratio(logp, old_logp, on)
    per_token, was_clipped = _clipped_surrogate(ratio, token_advantage, clip_eps)
    pg = _token_mean(per_token, on)  # (B,)
    if ref_logp is not None and beta != 0:
        _check_token_tensors(logp=logp, ref_logp=ref_logp)
        # clamped like rho (verl's low_var_kl clamps too), so a far-off reference cannot overflow
        log_ratio = _masked(ref_logp.detach() - logp, on).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)
        kl = _token_mean(torch.exp(log_ratio) - log_ratio - 1.0, on)  # (B,) k3
    else:
        kl = torch.zeros_like(pg)
    return pg, kl, was_clipped


def _pg_stats(pg, kl, was_clipped, on, advantage) -> dict[str, float]:
    n_tokens = int(on.sum())
    return {
        "pg_loss": float(_batch_mean(pg.detach())),
        "kl": float(_batch_mean(kl.detach())),
        "clip_frac": float((was_clipped & on).sum()) / n_tokens if n_tokens else 0.0,
        "adv_mean": float(_batch_mean(advantage)),
    }


def hybrid_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor | None,
    teacher_logp: torch.Tensor | None,
    rewards: torch.Tensor,
    group: torch.Tensor,
    mask: torch.Tensor,
    *,
    hybrid_beta: float = 1.0,
    opd_form: IncorrectPath = "paper",
    teacher_row_loss: torch.Tensor | None = None,
    clip_eps: float = 0.2,
    beta: float = 1e-4,
    n_global: int | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """KDRL-style hybrid baseline: GRPO whose per-token advantage adds the teacher term, scalar loss and stats.

    The idea is KDRL's (Xu et al., 2025, "KDRL: Post-Training Reasoning LLMs via Unified
    Knowledge Distillation and Reinforcement Learning"): one policy-gradient objective that
    carries both the verifier's reward and the teacher's reverse KL, on every rollout, correct
    or not (SCOPE instead routes each rollout to one of the two). Per token (docs/DESIGN.md §2.9)::

        A_it = Â_i + hybrid_beta * a_it
        Â_i  = (r_i - mean_g r) / (std_g r + eps)          (group_advantages, GRPO's)
        a_it = sg[log pi_T(y_it) - log pi_theta(y_it)]     (OPD's Eq. 3 advantage; "clipped_ppo": pi_old)
        L    = mean_i (1/|y_i|) sum_t [ max(-A_it rho_it, -A_it clip(rho_it, 1-eps, 1+eps)) + beta * k3_it ]

    i.e. GRPO's clipped surrogate, token normalisation (per-sequence token mean, then mean over
    rows) and k3 reference KL (``beta``, ``grpo.beta``; none beyond it), with ``a_it`` exactly
    the per-token advantage OPD uses under the same setting (``opd_form`` is
    ``scope.incorrect_path``; :func:`_opd_advantage`): with every reward of a group equal
    (``Â = 0``) the teacher term is OPD's advantage times ``hybrid_beta``, and ``hybrid_beta = 0``
    is :func:`grpo_loss` exactly (the teacher is then never read).

    With ``teacher_row_loss`` (the (B,) :func:`exact_kl_row_loss`, ``scope.kl_estimator: exact``,
    which replaces OPD's sampled estimator by the exact KL in :func:`opd_baseline_loss` too) the
    teacher term is that loss instead of an advantage: ``L = mean_i [pg_i(Â) + hybrid_beta *
    KL_i + beta * k3_i]``, whose gradient is the expectation of the sampled term's.

    logp, old_logp, ref_logp, teacher_logp, mask: (B, T); rewards: (B,) float; group: (B,) int.
    ``teacher_logp`` is read on response tokens only (and not at all with ``teacher_row_loss``
    or ``hybrid_beta = 0``). ``n_global``: the global batch's row count (:func:`normalise`).
    stats: GRPO's (``pg_loss``, ``kl``, ``clip_frac``, ``adv_mean``: the reward advantage) and
    ``teacher_adv_mean`` (mean token ``a_it``) or, with ``teacher_row_loss``, ``teacher_kl``.
    """
    _check_token_tensors(logp=logp, old_logp=old_logp, mask=mask)
    _check_clip(clip_eps)
    if rewards.shape != (logp.shape[0],):
        raise ValueError(f"rewards must have shape ({logp.shape[0]},), got {tuple(rewards.shape)}")
    if isinstance(hybrid_beta, bool) or not isinstance(hybrid_beta, (int, float)) or not (
            math.isfinite(hybrid_beta) and hybrid_beta >= 0):
        raise ValueError(f"hybrid_beta must be a finite number >= 0, got {hybrid_beta!r}")
    if opd_form not in INCORRECT_PATHS:
        raise ValueError(f"opd_form must be one of {INCORRECT_PATHS}, got {opd_form!r}")
    on = mask != 0
    advantage = group_advantages(rewards, group).to(logp.dtype)
    token_advantage = advantage[:, None].expand_as(logp)
    teacher_stats: dict[str, float] = {}
    teacher_rows = None
    if hybrid_beta != 0 and teacher_row_loss is not None:
        if teacher_row_loss.shape != (logp.shape[0],):
            raise ValueError(f"teacher_row_loss must have shape ({logp.shape[0]},), got {tuple(teacher_row_loss.shape)}")
        teacher_rows = teacher_row_loss.to(logp.dtype)
        teacher_stats["teacher_kl"] = float(_batch_mean(teacher_rows.detach()))
    elif hybrid_beta != 0:
        if teacher_logp is None:
            raise ValueError("teacher_logp is needed for hybrid_beta != 0 without teacher_row_loss")
        _check_token_tensors(logp=logp, teacher_logp=teacher_logp)
        teacher_advantage = _opd_advantage(logp, old_logp, teacher_logp, on, clipped=opd_form == "clipped_ppo")
        token_advantage = token_advantage + hybrid_beta * teacher_advantage
        n_tokens = int(on.sum())
        teacher_stats["teacher_adv_mean"] = float(teacher_advantage.sum()) / n_tokens if n_tokens else math.nan
    pg, kl, was_clipped = _clipped_pg_and_k3(logp, old_logp, ref_logp, token_advantage, on, clip_eps=clip_eps, beta=beta)
    per_row = pg + beta * kl if teacher_rows is None else pg + hybrid_beta * teacher_rows + beta * kl
    loss = normalise(per_row, normaliser_count(group, "rows"), n_global)
    return loss, {**_pg_stats(pg, kl, was_clipped, on, advantage), **teacher_stats}


def sft_loss(logp: torch.Tensor, mask: torch.Tensor, *, n_global: int | None = None) -> torch.Tensor:
    """KD baseline: NLL of the given (teacher-generated) target tokens, scalar.

    logp: (B, T) student log-probs of the targets; mask: (B, T) target mask.
    ``mean_i [ -(1/|y_i|) sum_t logp_it ]``: per-sequence length-normalised, then mean over rows
    (a row with no target token contributes 0 but still counts in the mean; no rows give 0).
    ``n_global``: the global batch's row count; the loss is then this batch's share (:func:`normalise`).
    """
    _check_token_tensors(logp=logp, mask=mask)
    on = mask != 0
    return -normalise(_token_mean(logp, on), logp.shape[0], n_global)


def opd_baseline_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    teacher_logp: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_eps: float | None = None,
    row_loss: torch.Tensor | None = None,
    n_global: int | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """OPD baseline (Table 3, G=1): Eq. 3 on every rollout, uniform weight, no reward routing.

    loss = mean over rows of :func:`opd_loss` (0 for no rows). With one rollout per prompt this is ``E_x`` of
    Eq. 3. ``clip_eps`` selects the released-code clipped variant. stats: ``opd_loss``,
    ``adv_mean`` (mean token advantage), ``clip_frac``.
    ``row_loss``: optional (B,) per-row loss that replaces Eq. 3 (:func:`exact_kl_row_loss`, the
    exact small-vocabulary option); stats are then ``opd_loss`` only. ``n_global``: the global
    batch's row count; the loss is then this batch's share of it (:func:`normalise`).
    """
    _check_token_tensors(logp=logp, old_logp=old_logp, teacher_logp=teacher_logp, mask=mask)
    _check_clip(clip_eps)
    n_rows = logp.shape[0]
    if row_loss is not None:
        if row_loss.shape != (n_rows,):
            raise ValueError(f"row_loss must have shape ({n_rows},), got {tuple(row_loss.shape)}")
        mean = normalise(row_loss, n_rows)
        return normalise(row_loss, n_rows, n_global), {"opd_loss": float(mean.detach())}
    on = mask != 0
    per_token, advantage, was_clipped = _opd_token_terms(logp, old_logp, teacher_logp, on, clip_eps)
    per_row = _token_mean(per_token, on)
    loss = normalise(per_row, n_rows)
    n_tokens = int(on.sum())
    stats = {
        "opd_loss": float(loss.detach()),
        "adv_mean": float(advantage.sum()) / n_tokens if n_tokens else math.nan,
        "clip_frac": float(was_clipped.sum()) / n_tokens if n_tokens else 0.0,
    }
    return (loss if n_global is None else normalise(per_row, n_rows, n_global)), stats


# ---------------------------------------------------------------------------------------------
# the exact-KL row loss (a named option, not the paper's estimator)


def exact_kl_row_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-row token mean of the exact full-vocabulary reverse KL, (B,): ``scope.kl_estimator: exact``.

    student_logits: (B, T, V) with grad; teacher_logits: (B, T, V) raw logits or log-softmaxed
    distributions (detached; see :func:`full_reverse_kl`). mask: (B, T) response mask. Replaces the
    sampled-token Eq. 3 as SCOPE's ``opd_row_loss`` and OPD's ``row_loss``; rows without a response
    token give 0.
    """
    mask = mask.float() if not mask.is_floating_point() else mask
    kl = full_reverse_kl(student_logits, teacher_logits)
    return (kl * mask).sum(1) / mask.sum(1).clamp(min=1)

