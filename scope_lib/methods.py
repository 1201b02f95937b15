"""The training methods as objects: SCOPE (Eq. 6), the Table 3 baselines OPD, GRPO and KD, and
the KDRL-style hybrid (GRPO's advantage plus OPD's teacher term, docs/DESIGN.md §2.9).

Each method declares what the trainer's one loop needs to know about it:

- ``needs_teacher``: whether the run loads (or connects to) the teacher;
- ``samples_rollouts``: False for KD, which trains offline on the teacher's verified solutions;
- :meth:`Method.teacher_rows`: which rollouts the teacher scores (SCOPE: the incorrect ones;
  OPD, hybrid: all; GRPO, KD: none);
- ``unit``: its normaliser, handed to :func:`scope_lib.losses.normaliser_count` (Eq. 6's ``E_x``
  over prompts for SCOPE, the mean over rows for the baselines);
- :meth:`Method.loss`: its loss on one micro-batch, a function of :mod:`scope_lib.losses` (every
  loss, the exact-KL row loss included, lives there), scaled to its share of the global batch.

The trainer (scope_lib/trainer.py) builds one with :func:`make_method` and never branches on
``cfg.method`` itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar

import torch

from scope_lib import losses
from scope_lib.config import TrainConfig


@dataclass
class MicroBatch:
    """What a method's loss reads from one micro-batch (rows of whole prompt groups).

    ``rows``: the batch's columns (input_ids, attention_mask, response_mask, group, correct,
    old_logp, teacher_logp and, for the exact KL, teacher_logits), trimmed to the micro-batch.
    ``logits`` / ``logp``: the student's forward pass (with grad). ``teacher_logits`` and
    ``reference_logp`` are called only by the methods that need them.
    """

    rows: dict[str, torch.Tensor]
    logits: torch.Tensor
    logp: torch.Tensor
    teacher_logits: Callable[[], torch.Tensor] = field(default=lambda: None)
    reference_logp: Callable[[], torch.Tensor | None] = field(default=lambda: None)

    @property
    def mask(self) -> torch.Tensor:
        return self.rows["response_mask"].float()


@dataclass
class LossResult:
    loss: torch.Tensor  # this micro-batch's share of the global batch's loss
    stats: dict[str, float]
    dpaw: losses.DPAWWeights | None = None  # the Eq. 4-5 weights the loss used (SCOPE only)


class Method:
    """One training objective; subclasses set the class attributes and :meth:`loss`."""

    name: ClassVar[str]
    needs_teacher: ClassVar[bool] = False
    samples_rollouts: ClassVar[bool] = True
    unit: ClassVar[losses.Unit] = "rows"

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg

    @property
    def exact_kl(self) -> bool:
        """Whether the incorrect path uses the exact full-vocabulary KL (``scope.kl_estimator: exact``)."""
        return self.needs_teacher and self.samples_rollouts and self.cfg.scope.kl_estimator == "exact"

    @property
    def needs_reference(self) -> bool:
        """Whether the loss reads a frozen reference policy's log-probs (GRPO's KL term)."""
        return False

    def teacher_rows(self, correct: torch.Tensor) -> torch.Tensor:
        """(k,) long indices of the rollouts the teacher scores, given the (B,) bool rewards."""
        return torch.zeros(0, dtype=torch.long)

    def normaliser(self, group: torch.Tensor) -> int:
        """The count the batch's loss is divided by (Eq. 6's prompts, or rows): see :func:`losses.normalise`."""
        return losses.normaliser_count(group, self.unit)

    def loss(self, batch: MicroBatch, n_global: int) -> LossResult:
        raise NotImplementedError

    def _incorrect_path_clip(self) -> float | None:
        s = self.cfg.scope
        return s.clip_eps if s.incorrect_path == "clipped_ppo" else None


class Scope(Method):
    """SCOPE, Eq. 6: DPAW-weighted Eq. 2 on correct rollouts, Eq. 3 (or the exact KL) on incorrect ones."""

    name = "scope"
    needs_teacher = True
    unit = "prompts"

    def teacher_rows(self, correct: torch.Tensor) -> torch.Tensor:
        return (~correct).nonzero().squeeze(-1)

    def loss(self, batch: MicroBatch, n_global: int) -> LossResult:
        s, rows, mask = self.cfg.scope, batch.rows, batch.mask
        exact_rows = losses.exact_kl_row_loss(batch.logits, batch.teacher_logits(), mask) if self.exact_kl else None
        # Eq. 4-5 weights computed once: the loss uses exactly these, and the step's record keeps them.
        # The micro-batch holds whole groups (the trainer checks), so its softmax sees each group entire.
        dpaw = losses.dpaw_weights(rows["old_logp"], rows["teacher_logp"], mask, rows["correct"], rows["group"],
                                   tau=s.tau, tau_student=s.tau_student, student_direction=s.student_direction,
                                   teacher_direction=s.teacher_direction, normalize=s.normalize)
        loss, stats = losses.scope_loss(
            batch.logp, rows["old_logp"], rows["teacher_logp"], mask, rows["correct"], rows["group"],
            tau=s.tau, tau_student=s.tau_student, student_direction=s.student_direction,
            teacher_direction=s.teacher_direction,
            normalize=s.normalize, incorrect_path=s.incorrect_path, clip_eps=s.clip_eps, opd_row_loss=exact_rows,
            path_weights=(dpaw.student, dpaw.teacher), n_global=n_global,
        )
        return LossResult(loss, stats, dpaw)


class OPD(Method):
    """OPD baseline (Table 3, G=1): Eq. 3 (or the exact KL) on every rollout."""

    name = "opd"
    needs_teacher = True

    def teacher_rows(self, correct: torch.Tensor) -> torch.Tensor:
        return torch.arange(len(correct))

    def loss(self, batch: MicroBatch, n_global: int) -> LossResult:
        rows, mask = batch.rows, batch.mask
        exact_rows = losses.exact_kl_row_loss(batch.logits, batch.teacher_logits(), mask) if self.exact_kl else None
        loss, stats = losses.opd_baseline_loss(batch.logp, rows["old_logp"], rows["teacher_logp"], mask,
                                               clip_eps=self._incorrect_path_clip(), row_loss=exact_rows,
                                               n_global=n_global)
        return LossResult(loss, stats)


class GRPO(Method):
    """GRPO baseline (Table 3): group-normalised advantages in a clipped surrogate, k3 KL to a reference."""

    name = "grpo"

    @property
    def needs_reference(self) -> bool:
        return self.cfg.grpo.beta > 0

    def loss(self, batch: MicroBatch, n_global: int) -> LossResult:
        rows, g = batch.rows, self.cfg.grpo
        loss, stats = losses.grpo_loss(batch.logp, rows["old_logp"], batch.reference_logp(), rows["correct"].float(),
                                       rows["group"], batch.mask, clip_eps=g.clip_eps, beta=g.beta, n_global=n_global)
        return LossResult(loss, stats)


class Hybrid(Method):
    """KDRL-style hybrid baseline, "Hybrid (GRPO + teacher KL)": GRPO with OPD's teacher term in every token's advantage.

    ``A_it = Â_i + beta * sg[log pi_T(y_it) - log pi_theta(y_it)]`` on every rollout, correct or
    not (``Â`` GRPO's group-normalised reward advantage, ``beta`` = ``hybrid.beta``), in GRPO's
    clipped surrogate with GRPO's token normalisation and k3 reference KL (``grpo.*``); the
    teacher term is OPD's per-token advantage under the same settings (``scope.incorrect_path``;
    with ``scope.kl_estimator: exact`` the exact reverse KL, as for OPD). The idea is KDRL's (Xu
    et al., 2025, "KDRL: Post-Training Reasoning LLMs via Unified Knowledge Distillation and
    Reinforcement Learning"); the equations: :func:`scope_lib.losses.hybrid_loss`, docs/DESIGN.md §2.9.
    """

    name = "hybrid"
    needs_teacher = True

    @property
    def needs_reference(self) -> bool:
        return self.cfg.grpo.beta > 0

    def teacher_rows(self, correct: torch.Tensor) -> torch.Tensor:
        return torch.arange(len(correct))

    def loss(self, batch: MicroBatch, n_global: int) -> LossResult:
        rows, g, beta = batch.rows, self.cfg.grpo, self.cfg.hybrid.beta
        exact_rows = (losses.exact_kl_row_loss(batch.logits, batch.teacher_logits(), batch.mask)
                      if self.exact_kl and beta != 0 else None)
        loss, stats = losses.hybrid_loss(
            batch.logp, rows["old_logp"], batch.reference_logp(), rows["teacher_logp"], rows["correct"].float(),
            rows["group"], batch.mask, hybrid_beta=beta, opd_form=self.cfg.scope.incorrect_path,
            teacher_row_loss=exact_rows, clip_eps=g.clip_eps, beta=g.beta, n_global=n_global)
        return LossResult(loss, stats)


class KD(Method):
    """KD baseline: NLL on the teacher's verified solutions, generated once (offline)."""

    name = "kd"
    needs_teacher = True
    samples_rollouts = False

    def loss(self, batch: MicroBatch, n_global: int) -> LossResult:
        return LossResult(losses.sft_loss(batch.logp, batch.mask, n_global=n_global), {})


METHODS: dict[str, type[Method]] = {m.name: m for m in (Scope, OPD, GRPO, KD, Hybrid)}


def make_method(cfg: TrainConfig) -> Method:
    """The method `cfg.method` names."""
    try:
        return METHODS[cfg.method](cfg)
    except KeyError:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {cfg.method!r}") from None
