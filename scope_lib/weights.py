"""Dual-Path Adaptive Weighting (DPAW), docs/DESIGN.md §2.6-2.7, Eq. 4 and Eq. 5.

Every rollout ``i`` of a prompt is routed by its reward: correct rollouts (``Omega_c``) get a
student-guided weight, incorrect ones (``Omega_w``) a teacher-guided weight. Both are a softmax
of a length-normalised sequence log-prob ``s_i`` taken per prompt and per path:

- Eq. 4, student-guided weight: ``w_S_i = softmax_{j in Omega_c}(-s_S_j / tau)_i``
  ``= PPL_S(y_i)^(1/tau) / sum_j PPL_S(y_j)^(1/tau)`` (harder correct rollouts weigh more);
- Eq. 5, teacher-guided weight: ``w_T_i = softmax_{j in Omega_w}(s_T_j / tau)_i``
  ``= PPL_T(y_i)^(-1/tau) / sum_j PPL_T(y_j)^(-1/tau)`` (rollouts the teacher finds
  plausible, i.e. recoverable, weigh more).

Options beyond the paper (each named, docs/DESIGN.md §3):

- ``direction="reversed"`` flips the sign inside the softmax (Fig. 5 ablations; the authors'
  released scripts use the reversed *student* weight);
- ``direction="ones"`` gives every rollout of the path weight 1, with no per-group
  normalisation: the paper's "w/o DPAW" ("standard uniform weighting"), as the authors'
  released code implements it (its equal-weights mode, and a path whose weights are off);
- ``direction="uniform"`` gives equal weights that keep DPAW's per-group normalisation (1/n
  per rollout with ``normalize="sum"``): a second ablation that isolates the normalisation;
- ``normalize="mean"`` rescales each group's path to average 1 instead of summing to 1, as the
  released code does (softmax times the path size; a single-member path gets weight 1).

All functions take flat 1-D tensors of length N (one entry per rollout) and are vectorised over
groups: group ids are arbitrary int64 prompt ids (non-contiguous, unsorted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Literal

import torch

Direction = Literal["paper", "reversed", "uniform", "ones"]
Normalize = Literal["sum", "mean"]
DIRECTIONS = ("paper", "reversed", "uniform", "ones")
NORMALIZATIONS = ("sum", "mean")

__all__ = [
    "DIRECTIONS",
    "DPAW",
    "NORMALIZATIONS",
    "sequence_logp",
    "student_ess_frac",
    "student_weights",
    "tau_student_for_ess",
    "teacher_weights",
    "weight_stats",
]


def sequence_logp(token_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Length-normalised sequence log-prob ``s_i = sum_t logp[i,t] mask[i,t] / sum_t mask[i,t]``.

    token_logp: (N, T) float, aligned with the tokens (``logp[:, t] = log p(y_t | y_<t)``).
    mask: (N, T) bool or 0/1, 1 on response tokens.
    Returns (N,) float32 (float64 if ``token_logp`` is float64). Rows with no response token
    give 0. Values under ``mask == 0`` are ignored, even when NaN or inf.
    ``PPL(y_i) = exp(-s_i)``.
    """
    if token_logp.dim() != 2:
        raise ValueError(f"token_logp must be 2-D (N, T), got shape {tuple(token_logp.shape)}")
    if mask.shape != token_logp.shape:
        raise ValueError(
            f"mask must have the shape of token_logp {tuple(token_logp.shape)}, got {tuple(mask.shape)}"
        )
    out_dtype = torch.float64 if token_logp.dtype == torch.float64 else torch.float32
    on = mask != 0
    # torch.where, not multiplication: NaN/inf under the mask (e.g. missing teacher scores) must not leak.
    logp = torch.where(on, token_logp.to(out_dtype), torch.zeros((), dtype=out_dtype, device=token_logp.device))
    lengths = on.sum(-1).clamp(min=1).to(out_dtype)
    return logp.sum(-1) / lengths


# ---------------------------------------------------------------------------------------------
# argument checks


def _check_inputs(seq_logp, correct, group, tau, direction, normalize) -> None:
    for name, value in (("seq_logp", seq_logp), ("correct", correct), ("group", group)):
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        if value.dim() != 1:
            raise ValueError(f"{name} must be 1-D (one entry per rollout), got shape {tuple(value.shape)}")
    n = seq_logp.shape[0]
    for name, value in (("correct", correct), ("group", group)):
        if value.shape[0] != n:
            raise ValueError(f"{name} must have length {n} like seq_logp, got {value.shape[0]}")
    if not seq_logp.is_floating_point():
        raise ValueError(f"seq_logp must be a floating tensor, got {seq_logp.dtype}")
    if correct.dtype != torch.bool:
        raise ValueError(f"correct must be a bool tensor, got {correct.dtype}")
    if group.is_floating_point() or group.is_complex() or group.dtype == torch.bool:
        raise ValueError(f"group must be an integer tensor of prompt ids, got {group.dtype}")
    if isinstance(tau, torch.Tensor):
        if tau.numel() != 1:
            raise ValueError(f"tau must be a positive finite scalar, got a tensor of shape {tuple(tau.shape)}")
        tau = tau.item()
    if isinstance(tau, bool) or not isinstance(tau, (int, float)):
        raise ValueError(f"tau must be a positive finite number, got {tau!r}")
    if not math.isfinite(tau) or tau <= 0:
        raise ValueError(f"tau must be a positive finite number, got {tau!r}")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")


# ---------------------------------------------------------------------------------------------
# the shared grouped, masked softmax


def _grouped_path_softmax(
    scores: torch.Tensor,
    on_path: torch.Tensor,
    group: torch.Tensor,
    sign: float,
    tau: float,
    normalize: str,
) -> torch.Tensor:
    """Per-group softmax of ``sign * scores / tau`` over the rows with ``on_path``; 0 elsewhere.

    ``sign`` is +1, -1 or 0 (0 = uniform). Computed in float64 in log space: the per-group
    maximum is subtracted *before* dividing by tau, so neither -1e4 log-probs nor a tiny tau
    can overflow, and the group's top row always contributes exp(0) = 1 to its denominator.
    """
    out_dtype = torch.float64 if scores.dtype == torch.float64 else torch.float32
    device = scores.device
    _, gidx = torch.unique(group, return_inverse=True)  # (N,) dense ids 0..G-1
    n_groups = int(gidx.max().item()) + 1 if gidx.numel() else 0

    zero = torch.zeros((), dtype=torch.float64, device=device)
    # Off-path rows may hold anything (NaN teacher scores of correct rows): replace them first.
    z = torch.where(on_path, scores.detach().to(torch.float64) * sign, zero)  # (N,)
    if bool((on_path & ~torch.isfinite(z)).any()):
        raise ValueError("seq_logp must be finite on the weighted path (got NaN or inf)")

    neg_inf = torch.full((n_groups,), -math.inf, dtype=torch.float64, device=device)
    z_for_max = torch.where(on_path, z, torch.full_like(z, -math.inf))
    group_max = neg_inf.scatter_reduce(0, gidx, z_for_max, reduce="amax", include_self=True)  # (G,)
    group_max = torch.where(torch.isfinite(group_max), group_max, zero)  # groups with nobody on the path
    shifted = (z - group_max[gidx]) / tau  # <= 0 on the path
    expd = torch.where(on_path, torch.exp(shifted), zero)  # (N,)

    denom = torch.zeros(n_groups, dtype=torch.float64, device=device).index_add_(0, gidx, expd)
    # denom >= 1 for any group with a path member; clamp only guards the empty groups (0/1 = 0).
    weights = expd / denom.clamp(min=1.0)[gidx]
    if normalize == "mean":
        # Released-code normalisation: mean 1 over the path (softmax times the path's size).
        path_size = torch.zeros(n_groups, dtype=torch.float64, device=device).index_add_(
            0, gidx, on_path.to(torch.float64)
        )
        weights = weights * path_size[gidx]
    return weights.to(out_dtype)


_SIGN = {"paper": 1.0, "reversed": -1.0, "uniform": 0.0}


def _ones(seq_logp: torch.Tensor, on_path: torch.Tensor) -> torch.Tensor:
    """Weight 1 on every row of the path, 0 elsewhere (direction "ones")."""
    out_dtype = torch.float64 if seq_logp.dtype == torch.float64 else torch.float32
    return on_path.to(out_dtype)


def student_weights(
    seq_logp: torch.Tensor,
    correct: torch.Tensor,
    group: torch.Tensor,
    tau: float = 1.0,
    direction: Direction = "paper",
    normalize: Normalize = "sum",
) -> torch.Tensor:
    """Eq. 4: student-guided weights on the correct path ``Omega_c``.

    seq_logp: (N,) float, the student's (``pi_old``) length-normalised sequence log-prob ``s_S``.
    correct: (N,) bool, the verifier's reward. group: (N,) int prompt ids.
    Returns (N,) float32 (float64 for float64 input): 0 on incorrect rows; on the correct rows of
    each prompt ``softmax(-s_S / tau)`` = ``PPL_S^(1/tau)`` normalised ("paper"), the opposite
    sign ``PPL_S^(-1/tau)`` ("reversed"), equal weights ("uniform"), or 1 per rollout whatever
    ``normalize`` says ("ones"). ``normalize="sum"``: each group's path sums to 1; ``"mean"``:
    averages 1.
    """
    _check_inputs(seq_logp, correct, group, tau, direction, normalize)
    if direction == "ones":
        return _ones(seq_logp, correct)
    # Eq. 4: low student likelihood (high perplexity) -> larger weight, hence the minus sign.
    sign = -_SIGN[direction]
    return _grouped_path_softmax(seq_logp, correct, group, sign, float(tau), normalize)


def teacher_weights(
    seq_logp: torch.Tensor,
    correct: torch.Tensor,
    group: torch.Tensor,
    tau: float = 1.0,
    direction: Direction = "paper",
    normalize: Normalize = "sum",
) -> torch.Tensor:
    """Eq. 5: teacher-guided weights on the incorrect path ``Omega_w``.

    seq_logp: (N,) float, the teacher's length-normalised log-prob ``s_T`` of each rollout; its
    values on correct rows are ignored (they may be NaN). correct: (N,) bool. group: (N,) int.
    Returns (N,) float32 (float64 for float64 input): 0 on correct rows; on the incorrect rows of
    each prompt ``softmax(s_T / tau)`` = ``PPL_T^(-1/tau)`` normalised ("paper"), the opposite
    sign ``PPL_T^(+1/tau)`` ("reversed"), equal weights ("uniform"), or 1 per rollout ("ones").
    ``normalize`` as in :func:`student_weights`.
    """
    _check_inputs(seq_logp, correct, group, tau, direction, normalize)
    if direction == "ones":
        return _ones(seq_logp, ~correct)
    # Eq. 5: rollouts the teacher finds likely (low PPL_T) are the recoverable ones -> larger weight.
    sign = _SIGN[direction]
    return _grouped_path_softmax(seq_logp, ~correct, group, sign, float(tau), normalize)


@dataclass(frozen=True)
class DPAW:
    """The DPAW settings, one object shared by weights, losses and methods (config: ``scope.*``).

    ``tau``: Eq. 5's softmax temperature, and Eq. 4's unless ``tau_student`` gives the student
    path its own (None: one temperature for both paths). ``student_direction`` (Eq. 4) and
    ``teacher_direction`` (Eq. 5): "paper", "reversed", "uniform" or "ones" (module docstring).
    ``normalize``: each group's path sums to 1 ("sum", the paper) or averages 1 ("mean").
    The defaults are the paper's. Invalid settings are a ValueError when the object is built.
    """

    tau: float = 1.0
    tau_student: float | None = None
    student_direction: Direction = "paper"
    teacher_direction: Direction = "paper"
    normalize: Normalize = "sum"

    def __post_init__(self):
        for tau in (self.tau, self.tau_student if self.tau_student is not None else self.tau):
            if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not math.isfinite(tau) or tau <= 0:
                raise ValueError(f"tau must be a positive finite number, got {tau!r}")
        for direction in (self.student_direction, self.teacher_direction):
            if direction not in DIRECTIONS:
                raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {self.normalize!r}")

    @classmethod
    def from_config(cls, scope) -> "DPAW":
        """The settings of a config's ``scope`` section (any object with these fields)."""
        return cls(**{f.name: getattr(scope, f.name) for f in fields(cls)})

    @property
    def student_tau(self) -> float:
        """Eq. 4's temperature: ``tau_student``, or ``tau`` when it is None."""
        return self.tau if self.tau_student is None else self.tau_student

    def student(self, seq_logp: torch.Tensor, correct: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        """Eq. 4 with these settings (:func:`student_weights`)."""
        return student_weights(seq_logp, correct, group, self.student_tau, self.student_direction, self.normalize)

    def teacher(self, seq_logp: torch.Tensor, correct: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        """Eq. 5 with these settings (:func:`teacher_weights`)."""
        return teacher_weights(seq_logp, correct, group, self.tau, self.teacher_direction, self.normalize)


def weight_stats(weights: torch.Tensor, path_mask: torch.Tensor, group: torch.Tensor) -> dict[str, float]:
    """Summary of one path's weights for logging (Fig. 3 / notebook 03).

    weights: (N,) from :func:`student_weights` / :func:`teacher_weights` (either normalisation).
    path_mask: (N,) bool, rows on the path. group: (N,) int prompt ids.
    Returns python floats:
      ``max``: largest weight on the path (0 if the path is empty);
      ``entropy``: mean over groups with >= 2 path members of the weight entropy divided by
      log(members) (1 = uniform); NaN if no such group;
      ``ess``: effective sample size ``(sum w)^2 / sum w^2`` per group, averaged over groups with
      members (NaN if none); ``ess_frac``: the same divided by the group's path size;
      ``n_groups``: number of groups with at least one member on the path.
    """
    if weights.dim() != 1 or path_mask.shape != weights.shape or group.shape != weights.shape:
        raise ValueError(
            "weights, path_mask and group must be 1-D of equal length, got "
            f"{tuple(weights.shape)}, {tuple(path_mask.shape)}, {tuple(group.shape)}"
        )
    on = path_mask.bool()
    w = torch.where(on, weights.detach().to(torch.float64), torch.zeros((), dtype=torch.float64))
    if not bool(on.any()):
        return {"max": 0.0, "entropy": math.nan, "ess": math.nan, "ess_frac": math.nan, "n_groups": 0.0}
    _, gidx = torch.unique(group, return_inverse=True)
    n_groups = int(gidx.max().item()) + 1
    zeros = torch.zeros(n_groups, dtype=torch.float64, device=w.device)
    size = zeros.index_add(0, gidx, on.to(torch.float64))
    total = zeros.index_add(0, gidx, w)
    sq = zeros.index_add(0, gidx, w * w)
    p = torch.where(on, w / total.clamp(min=1e-300)[gidx], torch.zeros_like(w))
    plogp = torch.where(p > 0, p * torch.log(p.clamp(min=1e-300)), torch.zeros_like(p))
    entropy = -zeros.index_add(0, gidx, plogp)

    has = size > 0
    multi = size > 1
    ess = total[has] ** 2 / sq[has].clamp(min=1e-300)
    norm_entropy = entropy[multi] / torch.log(size[multi])
    return {
        "max": float(w[on].max()),
        "entropy": float(norm_entropy.mean()) if bool(multi.any()) else math.nan,
        "ess": float(ess.mean()),
        "ess_frac": float((ess / size[has]).mean()),
        "n_groups": float(has.sum()),
    }


# ---------------------------------------------------------------------------------------------
# choosing the student path's own temperature (scope.tau_student) by the spread of its weights


def _log_ppl_groups(log_ppl_groups) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat float64 log-PPLs and group ids of the groups with >= 2 members; ValueError if none."""
    values, ids = [], []
    for index, members in enumerate(log_ppl_groups):
        row = torch.as_tensor(members, dtype=torch.float64).reshape(-1)
        if not bool(torch.isfinite(row).all()):
            raise ValueError(f"log_ppl_groups[{index}]: expected finite log-perplexities, got {row.tolist()}")
        if row.numel() >= 2:  # a lone correct rollout has ESS 1 at every tau: it says nothing
            values.append(row)
            ids.append(torch.full((row.numel(),), index, dtype=torch.long))
    if not values:
        raise ValueError("log_ppl_groups: no group with at least 2 correct rollouts")
    return torch.cat(values), torch.cat(ids)


def student_ess_frac(log_ppl_groups, tau_student: float) -> float:
    """Mean normalised effective sample size of the Eq. 4 weights at ``tau_student``.

    ``log_ppl_groups``: one 1-D array-like per prompt group, the student's log-perplexities
    ``-s_S`` of that group's *correct* rollouts (e.g. the ``log_ppl`` of the correct rows of
    ``preconditions.student_path_table`` grouped by ``group``, or ``log(ppl_student)`` of
    ``studies.dpaw.rollout_table``). Weights are :func:`student_weights` ("paper" direction, each
    group summing to 1); per group ``ESS / n = (sum w)^2 / sum w^2 / n`` (1: uniform, 1/n: one
    rollout holds all the weight), averaged over the groups with at least 2 correct rollouts,
    as ``preconditions.student_path_stats`` and ``weight_records.ess_table`` count it.
    """
    log_ppl, group = _log_ppl_groups(log_ppl_groups)
    w = student_weights(-log_ppl, torch.ones_like(group, dtype=torch.bool), group, tau_student)
    _, gidx = torch.unique(group, return_inverse=True)
    zeros = torch.zeros(int(gidx.max()) + 1, dtype=torch.float64)
    size = zeros.index_add(0, gidx, torch.ones_like(w))
    total, squares = zeros.index_add(0, gidx, w), zeros.index_add(0, gidx, w * w)
    return float((total ** 2 / squares / size).mean())


def tau_student_for_ess(log_ppl_groups, target: float, *, low: float = 1e-4, high: float = 1e4,
                        rtol: float = 1e-9, max_iter: int = 200) -> float:
    """The ``tau_student`` at which :func:`student_ess_frac` of ``log_ppl_groups`` is ``target``.

    The mean ESS fraction rises monotonically with tau (towards 1, uniform weights, as tau grows;
    towards the share of each group's top rollouts as tau falls), so it is found by bisection on
    ``log tau`` inside ``[low, high]``, until the bracket is narrower than a factor ``1 + rtol``.
    ValueError when ``target`` is outside ``(0, 1)`` or not reached inside the bracket (e.g. every
    group's correct rollouts have equal log-PPLs: the ESS is then 1 at every tau).
    """
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target < 1:
        raise ValueError(f"target: expected a mean ESS fraction in (0, 1), got {target!r}")
    if not (0 < low < high and math.isfinite(high)):
        raise ValueError(f"low, high: expected 0 < low < high < inf, got {low!r}, {high!r}")
    at_low, at_high = student_ess_frac(log_ppl_groups, low), student_ess_frac(log_ppl_groups, high)
    if not at_low <= target <= at_high:
        raise ValueError(f"target {target}: the mean ESS fraction runs from {at_low:.6g} (tau_student {low:g}) to "
                         f"{at_high:.6g} (tau_student {high:g}); widen low/high or pick a target inside")
    log_low, log_high = math.log(low), math.log(high)
    for _ in range(max_iter):
        if log_high - log_low <= math.log1p(rtol):
            break
        middle = 0.5 * (log_low + log_high)
        if student_ess_frac(log_ppl_groups, math.exp(middle)) < target:
            log_low = middle
        else:
            log_high = middle
    return math.exp(0.5 * (log_low + log_high))
