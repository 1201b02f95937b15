"""The training methods as objects: SCOPE (Eq. 6), the Table 3 baselines OPD, GRPO and KD, and
the KDRL-style hybrid (GRPO's advantage plus OPD's teacher term, docs/DESIGN.md §2.9).

Each method declares what the trainer's one loop needs to know about it:

- ``needs_teacher``: whether the run loads (or connects to) the teacher;
- :meth:`Method.start` and :meth:`Method.batch`: where a step's batch comes from: on-policy
  rollouts (``Trainer.collect``: generate, grade, score with the teacher, pi_old's pass) for
  every method but KD, which trains offline on the teacher's verified solutions (its corpus,
  built once by :meth:`KD.start`);
- :meth:`Method.teacher_rows`: which rollouts the teacher scores (SCOPE: the incorrect ones;
  OPD, hybrid: all; GRPO, KD: none);
- ``old_logp_from_update``: whether pi_old is read off the update's own forward pass;
- ``unit``: its normaliser, handed to :func:`scope_lib.losses.normaliser_count` (Eq. 6's ``E_x``
  over prompts for SCOPE, the mean over rows for the baselines);
- :meth:`Method.loss`: its loss on one micro-batch, a function of :mod:`scope_lib.losses` (every
  loss, the exact-KL row loss included, lives there), scaled to its share of the global batch;
- :meth:`Method.row_record`: the per-rollout values of the step's weight record (None for KD).

The trainer (scope_lib/trainer.py) builds one with :func:`make_method` and never branches on
``cfg.method`` or on where a method's data comes from.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import torch

from scope_lib import losses
from scope_lib.common import storage
from scope_lib.config import TrainConfig
from scope_lib.pipeline import score_rollouts
from scope_lib.rollout import Sampling, encode_pairs
from scope_lib.weights import DPAW, sequence_logp

ROW_RECORD_KEYS = ("student_log_ppl", "teacher_log_ppl", "student_weight", "teacher_weight")


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

    @property
    def old_logp_from_update(self) -> bool:
        """pi_old read, detached, off the update's own forward pass instead of a separate one:
        with one update per rollout batch and ``optim.old_logp_pass: when_needed``."""
        o = self.cfg.optim
        return o.old_logp_pass == "when_needed" and o.mini_batch_prompts >= o.prompts_per_step

    def start(self, run) -> None:
        """Prepare the method's data before the first step (nothing to prepare for rollouts).

        ``run`` is the trainer (scope_lib/trainer.py ``Trainer``): its world, student, run
        directory, data order and processes."""

    def batch(self, run, step: int, timer) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """This process's batch for `step` and its logged statistics: on-policy rollouts."""
        return run.collect(step, timer)

    def teacher_rows(self, correct: torch.Tensor) -> torch.Tensor:
        """(k,) long indices of the rollouts the teacher scores, given the (B,) bool rewards."""
        return torch.zeros(0, dtype=torch.long)

    def row_record(self, micro: dict[str, torch.Tensor], result: LossResult) -> dict[str, torch.Tensor] | None:
        """A micro-batch's per-row values for the step's weight record: (b,) float32 CPU tensors.

        Log-PPLs are ``-sequence_logp`` (docs/DESIGN.md §2.5): pi_old's on every row, the teacher's
        on the rows it scored (NaN elsewhere). The weights are the ones the SCOPE loss used
        (``result.dpaw``), on their own path only (NaN off it), and NaN for methods without weights.
        """
        on = micro["response_mask"] != 0
        correct, dpaw = micro["correct"], result.dpaw
        nan = torch.full(correct.shape, float("nan"), device=correct.device)
        if dpaw is not None:
            student_s = dpaw.student_seq_logp.float()
            teacher_s = torch.where(~correct, dpaw.teacher_seq_logp.float(), nan)
            w_student = torch.where(correct, dpaw.student.float(), nan)
            w_teacher = torch.where(~correct, dpaw.teacher.float(), nan)
        else:
            student_s = sequence_logp(micro["old_logp"].detach(), on)
            teacher, teacher_s = micro.get("teacher_logp"), nan
            if teacher is not None:  # unscored rows hold NaN tokens
                teacher_s = torch.where((torch.isfinite(teacher) & on).any(1), sequence_logp(teacher, on), nan)
            w_student = w_teacher = nan
        values = (-student_s, -teacher_s, w_student, w_teacher)
        return {key: value.detach().float().cpu() for key, value in zip(ROW_RECORD_KEYS, values)}

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

    def __init__(self, cfg: TrainConfig):
        super().__init__(cfg)
        self.dpaw = DPAW.from_config(cfg.scope)  # tau, tau_student, the two directions, normalisation

    def teacher_rows(self, correct: torch.Tensor) -> torch.Tensor:
        return (~correct).nonzero().squeeze(-1)

    def loss(self, batch: MicroBatch, n_global: int) -> LossResult:
        rows, mask = batch.rows, batch.mask
        exact_rows = losses.exact_kl_row_loss(batch.logits, batch.teacher_logits(), mask) if self.exact_kl else None
        # Eq. 4-5 weights computed once: the loss uses exactly these, and the step's record keeps them.
        # The micro-batch holds whole groups (the trainer checks), so its softmax sees each group entire.
        dpaw = losses.dpaw_weights(rows["old_logp"], rows["teacher_logp"], mask, rows["correct"], rows["group"], self.dpaw)
        loss, stats = losses.scope_loss(batch.logp, rows["old_logp"], rows["teacher_logp"], mask, rows["correct"],
                                        rows["group"], weights=dpaw, clip_eps=self._incorrect_path_clip(),
                                        opd_row_loss=exact_rows, n_global=n_global)
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
    old_logp_from_update = False  # no pi_old: the loss reads only the student's log-probs

    def __init__(self, cfg: TrainConfig):
        super().__init__(cfg)
        if cfg.teacher.backend != "local":
            raise ValueError("method 'kd' generates its corpus with the in-process teacher: set teacher.backend 'local'")
        self.corpus: list[tuple[str, str]] | None = None

    def start(self, run) -> None:
        """The offline data: verified teacher solutions for the training pool, cached in the run dir."""
        path = run.run_dir / "kd_corpus.jsonl"
        if path.exists():
            try:
                self.corpus = [tuple(json.loads(line)) for line in path.read_text().splitlines()]
                return
            except ValueError as error:  # cut short by a kill under older code: it is rebuilt the same
                warnings.warn(f"{path} does not parse ({error}); building the KD corpus again", RuntimeWarning)
        cfg, problems = self.cfg, run.world.train_problems
        needed = min(len(problems), cfg.steps * cfg.optim.prompts_per_step)
        chosen = [problems[i] for i in run.order[:needed]]
        sampling = Sampling(temperature=cfg.kd.temperature, max_new_tokens=cfg.rollout.max_new_tokens,
                            top_p=cfg.rollout.top_p, top_k=cfg.rollout.top_k, batch_size=cfg.rollout.batch_size)
        # the teacher is the policy here: its rollouts, graded, no teacher scoring
        scored = score_rollouts(run.world.teacher.to(run.device), run.tokenizer, chosen,
                                format_prompt=run.world.format_prompt, grade=run.grade,
                                group_size=cfg.kd.samples_per_prompt, sampling=sampling, seed=cfg.seed + 10_000)
        batch, prompts = scored.rollouts, scored.prompts
        corpus = [(prompts[int(g)], text) for g, text, good in zip(batch.group, batch.texts, scored.correct.tolist())
                  if good or not cfg.kd.only_correct]
        if not corpus:
            raise RuntimeError(
                f"KD corpus is empty: the teacher solved none of {len(chosen)} training prompts "
                f"(x{cfg.kd.samples_per_prompt} samples); set kd.only_correct: false to keep unverified solutions"
            )
        if run.procs.is_main:
            run.run_dir.mkdir(parents=True, exist_ok=True)
            storage.write_atomic(path, "".join(json.dumps(pair) + "\n" for pair in corpus))
        self.corpus = corpus

    def batch(self, run, step: int, timer) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """The corpus walked in order, one pair per "group"; nothing is logged for it."""
        per_step, n = self.cfg.optim.prompts_per_step, len(self.corpus)
        pairs = run.procs.share([self.corpus[(step * per_step + i) % n] for i in range(per_step)])
        batch = encode_pairs(run.tokenizer, pairs)
        batch["group"] = torch.arange(len(pairs)) + run.procs.group_offset(step)  # one row per "group"
        return batch, {}

    def row_record(self, micro: dict[str, torch.Tensor], result: LossResult) -> None:
        return None  # no rollouts, no weight record

    def loss(self, batch: MicroBatch, n_global: int) -> LossResult:
        return LossResult(losses.sft_loss(batch.logp, batch.mask, n_global=n_global), {})


METHODS: dict[str, type[Method]] = {m.name: m for m in (Scope, OPD, GRPO, KD, Hybrid)}


def make_method(cfg: TrainConfig) -> Method:
    """The method `cfg.method` names."""
    try:
        return METHODS[cfg.method](cfg)
    except KeyError:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {cfg.method!r}") from None
