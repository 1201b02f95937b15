"""The on-policy trainer: SCOPE and its baselines (OPD, GRPO, KD) in one loop.

One step, top to bottom (docs/DESIGN.md §4):

    prompts -> G rollouts each (student, pi_old) -> verifier rewards
            -> teacher scoring (SCOPE: incorrect rollouts only; OPD: all; GRPO, KD: none)
            -> old log-probs and entropies -> DPAW weights -> loss
            -> optimizer updates over mini-batches, gradient accumulation over micro-batches

The method is an object (scope_lib/methods.py: Scope, OPD, GRPO, KD) that declares whether it
needs the teacher, which rollouts the teacher scores, its normaliser and its loss; the loop is
the same for all of them. Every loss lives in scope_lib/losses.py, the batch normalisation
(Eq. 6's E_x, the baselines' row mean, a micro-batch's share of the global batch) in
`losses.normalise`.

KD is offline: the teacher's verified solutions to the training prompts are generated once
(cached in the run directory) and the student is trained on them with NLL.

Rollouts, rewards and teacher scores come from the project's one rollout pipeline
(`scope_lib.pipeline.score_rollouts`), which the studies, notebooks and the tiny gate use too.
`teacher.overlap: true` has it score each finished generation batch (`rollout.batch_size` rows)
on a worker thread while the next one is generated (pipeline.OverlappedScorer); rewards, teacher
log-probs and gradients equal the synchronous path's (tests/test_overlap.py). `reward.overlap:
true` has the same worker grade each batch first (the code world's sandbox runs beside generation). It gains time only
where a core is free for the worker (one torch thread per side on a 2-core machine).

Every method that samples rollouts records, per step and rollout, its group, reward, pi_old's
and the teacher's log-PPL, the DPAW weights the loss used and its text, as Parquet parts in
`<run_dir>/weight_records/` (scope_lib/weight_records.py), written before each checkpoint and
at the end, and cut to the resumed step on resume as metrics.jsonl is.

Where this departs from the paper, and why:
- one update epoch per rollout batch (Table 3), so pi_old equals the current policy at the
  start of each update and the importance ratios of Eq. 1 are 1 for the first mini-batch;
  with one mini-batch per rollout batch and `optim.old_logp_pass: when_needed` (the `tiny`
  preset) pi_old is read, detached, off the update's own forward pass instead of a separate
  one (verl's `always`), with the same loss and gradients up to float rounding;
- micro-batches hold whole prompt groups, so the per-group softmax of Eq. 4/5 never sees a
  partial group;
- `scope.kl_estimator: exact` replaces the sampled-token log-ratio of Eq. 3 with the exact
  full-vocabulary reverse KL (a named option for the tiny world's small vocabulary); the
  teacher's full distributions from the scoring pass are kept for the update;
- distributed runs (`accelerate launch`) split each step's prompts across processes and sum
  gradients with an explicit all-reduce, so the update equals one process on the global batch.

Run: `python -m scope_lib.train --config configs/tiny.yaml --method scope`.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import shutil
import time
import warnings
from collections import Counter, defaultdict
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from scope_lib import integrity, logprobs, losses, runs, weight_records
from scope_lib.config import TrainConfig, logprob_temperatures, require_rollout_engine, save_config
from scope_lib.methods import MicroBatch, make_method
from scope_lib.pipeline import OverlappedScorer, Sampling, score_rollouts  # noqa: F401  (OverlappedScorer: re-exported)
from scope_lib.teacher import LocalTeacher, ServerTeacher
from scope_lib.verify import grade_batch
from scope_lib.weights import sequence_logp
from scope_lib.world import World, load_world

TIMERS = ("generation", "reward", "teacher_scoring", "old_logprob", "actor_update", "step")  # Table 8 names
# With `teacher.overlap`: the scoring worker's busy seconds, logged as `time/teacher_worker`. Not in
# TIMERS: the worker runs beside generation, so it is not a part of the step that adds up to it.
WORKER_TIMER = "teacher_worker"
_CHECKPOINT_NAME = re.compile(r"step_(\d+)")  # checkpoints/step_000020 (not the .tmp of a save cut short)
_CHECKPOINT_KEYS = {"model", "optimizer", "scheduler", "rng", "step", "fingerprint"}


# --- small utilities -------------------------------------------------------------------------


def _rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _init_distributed() -> None:
    """Join the process group `accelerate launch` (or torchrun) describes in the environment."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        from accelerate import PartialState

        PartialState()  # initialises torch.distributed (gloo on CPU, nccl on GPU)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


def _rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


class Timer:
    """Wall-clock seconds per named component of one step (the paper's Table 8)."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        yield
        self.seconds[name] += time.perf_counter() - start


def _micro_batches(group: torch.Tensor, rows_per_micro: int) -> list[torch.Tensor]:
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


def _check_whole_groups(micro_group: torch.Tensor, group_sizes: Counter) -> None:
    """RuntimeError unless a micro-batch holds every row of each prompt group it touches.

    The Eq. 4-5 softmax (and GRPO's group advantage) is computed per micro-batch; a group cut in
    two would be normalised twice, and its record would not be the weights of docs/DESIGN.md §2.6-2.7.
    """
    for group, count in Counter(micro_group.tolist()).items():
        if count != group_sizes[group]:
            raise RuntimeError(f"a micro-batch holds {count} of the {group_sizes[group]} rows of prompt group {group}: "
                               "the rows of a group must be adjacent in the batch")


def _trim(batch: dict[str, torch.Tensor], rows: torch.Tensor) -> dict[str, torch.Tensor]:
    """Select rows and drop the columns (dim 1) that are padding in every selected row."""
    sub = {k: v[rows] for k, v in batch.items()}
    used = sub["attention_mask"].bool().any(0).nonzero().squeeze(-1)
    first, last = int(used[0]), int(used[-1]) + 1
    return {k: (v[:, first:last] if v.dim() >= 2 else v) for k, v in sub.items()}


def _stat_sums(logp: torch.Tensor, entropy: torch.Tensor, teacher_logp: torch.Tensor | None,
               mask: torch.Tensor) -> dict[str, float]:
    """Token sums behind the logged `entropy` and `kl_to_teacher` (teacher_logp: NaN where unscored)."""
    sums = {"sum/entropy": float((entropy * mask).sum()), "sum/tokens": float(mask.sum())}
    if teacher_logp is not None:
        scored = torch.isfinite(teacher_logp) & (mask > 0)
        sums.update({"sum/kl": float((logp - teacher_logp.nan_to_num(0.0))[scored].sum()), "sum/kl_tokens": float(scored.sum())})
    return sums


def _stat_means(sums: dict[str, float]) -> dict[str, float]:
    """Token means of `_stat_sums` (summed over micro-batches): entropy and KL to the teacher."""
    out = {}
    if sums.get("sum/tokens"):
        out["entropy"] = sums["sum/entropy"] / sums["sum/tokens"]
    if sums.get("sum/kl_tokens"):
        out["kl_to_teacher"] = sums["sum/kl"] / sums["sum/kl_tokens"]
    return out


ROW_RECORD_KEYS = ("student_log_ppl", "teacher_log_ppl", "student_weight", "teacher_weight")


def _row_record(micro: dict[str, torch.Tensor], dpaw: losses.DPAWWeights | None = None) -> dict[str, torch.Tensor]:
    """A micro-batch's per-row values for the step's weight record: (b,) float32 CPU tensors.

    Log-PPLs are ``-sequence_logp`` (docs/DESIGN.md §2.5): pi_old's on every row, the teacher's on
    the rows it scored (NaN elsewhere). The weights are the ones the SCOPE loss used (`dpaw`), on
    their own path only (NaN off it), and NaN for methods without weights.
    """
    on = micro["response_mask"] != 0
    correct = micro["correct"]
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


def _tensorboard_writer(run_dir: Path, first_step: int):
    """A TensorBoard writer into `<run_dir>/tensorboard` when the tensorboard package is installed.

    Events of an earlier attempt from `first_step` on are purged, as metrics.jsonl's rows are.
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # optional: metrics.jsonl is the record of truth
        return None
    return SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=first_step)


# --- the trainer -------------------------------------------------------------------------------


@dataclass
class TrainResult:
    run_dir: Path
    history: list[dict]  # one metrics dict per step, as in metrics.jsonl
    model: torch.nn.Module  # the trained student (LoRA merged if configured)


class Trainer:
    """Holds the run's state; `train()` runs the loop, `update()` one optimizer batch."""

    def __init__(self, cfg: TrainConfig, world: World | None = None):
        require_rollout_engine(cfg)  # before anything is built: one line naming the install command
        _init_distributed()
        self.cfg = cfg
        self.rank, self.world_size = _rank_and_world()
        for key in ("prompts_per_step", "mini_batch_prompts"):
            if getattr(cfg.optim, key) % self.world_size:
                raise ValueError(f"config key 'optim.{key}' ({getattr(cfg.optim, key)}) must be divisible by the {self.world_size} processes")
        # pi_old from the update's own pass only when there is one update per rollout batch
        self.old_logp_from_update = (cfg.optim.old_logp_pass == "when_needed"
                                     and cfg.optim.mini_batch_prompts >= cfg.optim.prompts_per_step)
        self.run_dir = Path(cfg.output_dir)
        self.device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available() else
                                   ("cpu" if cfg.device == "auto" else cfg.device))
        _seed_everything(cfg.seed)
        self.method = make_method(cfg)  # what the loop needs to know of SCOPE, OPD, GRPO or KD
        # The temperatures log-probs divide logits by (config: rollout/teacher.logprob_temperature):
        # the student's (pi_theta, pi_old, the reference, entropies) and the teacher's.
        self.logp_temperature, self.teacher_temperature = logprob_temperatures(cfg)
        needs_teacher = self.method.needs_teacher
        self.world = world or load_world(cfg, need_teacher=needs_teacher)
        self.tokenizer = self.world.tokenizer
        self.student = self._prepare_student(self.world.student).to(self.device)
        self.teacher = None
        if needs_teacher:
            if cfg.teacher.backend == "vllm_server":
                self.teacher = ServerTeacher(cfg.teacher.server_url, cfg.teacher.server_model or cfg.model.teacher,
                                             request_batch_size=cfg.teacher.request_batch_size,
                                             temperature=self.teacher_temperature)
            else:
                self.teacher = LocalTeacher(self.world.teacher.to(self.device), micro_batch_size=cfg.optim.micro_batch_size,
                                            temperature=self.teacher_temperature)
            if cfg.scope.kl_estimator == "exact" and not isinstance(self.teacher, LocalTeacher):
                raise ValueError("scope.kl_estimator 'exact' needs teacher.backend 'local' (full logits)")
            if not self.method.samples_rollouts and not isinstance(self.teacher, LocalTeacher):
                raise ValueError("method 'kd' generates its corpus with the in-process teacher: set teacher.backend 'local'")
        self.reference = None
        if self.method.needs_reference and cfg.model.finetune == "full":
            import copy

            self.reference = copy.deepcopy(self.student).eval().requires_grad_(False)
        params = [p for p in self.student.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.optim.lr, betas=cfg.optim.betas, eps=cfg.optim.adam_eps,
                                           weight_decay=cfg.optim.weight_decay)
        warmup = cfg.optim.warmup_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0)
        self.step = 0
        self.history: list[dict] = []
        pool = len(self.world.train_problems)
        if cfg.optim.prompts_per_step > pool:
            from scope_lib.config import ConfigError

            raise ConfigError(f"config key 'optim.prompts_per_step' ({cfg.optim.prompts_per_step}) is larger than the "
                              f"training pool of data.train {cfg.data.train!r} ({pool} problems): a step would hold a "
                              "prompt twice")
        # Data order: one seeded permutation of the training pool, walked in order (resumable by step).
        order = torch.randperm(len(self.world.train_problems), generator=torch.Generator().manual_seed(cfg.seed))
        self.order = order.tolist()
        self.kd_corpus: list[tuple[str, str]] | None = None
        # Per-step weight records (scope_lib/weight_records.py): every method that samples rollouts.
        self.weight_recorder = (weight_records.WeightRecorder(self.run_dir)
                                if self.method.samples_rollouts and self.rank == 0 else None)
        self.rollout_texts: tuple[list[str], list[str]] | None = None  # (responses, questions) of the last collect()
        self.row_records: dict[str, torch.Tensor] | None = None  # per-row values of the last update()
        self.engine = None
        if cfg.rollout.engine == "vllm":  # sample with vLLM, push weights after every update
            from scope_lib.vllm_engine import VLLMEngine, save_plain_model

            # plain, dequantized, LoRA-merged weights; each process: its own colocated engine
            init = save_plain_model(self.student, self.tokenizer, self.run_dir / "vllm_init" / f"rank{self.rank}")
            self.engine = VLLMEngine(init, self.tokenizer, seed=cfg.seed + self.rank,
                                     gpu_memory_utilization=cfg.rollout.vllm_gpu_memory_utilization, dtype=cfg.model.dtype,
                                     enforce_eager=cfg.rollout.vllm_enforce_eager)

    # --- models

    def _prepare_student(self, model: torch.nn.Module) -> torch.nn.Module:
        if self.cfg.model.finetune == "lora":
            from peft import LoraConfig, get_peft_model

            present = {name.split(".")[-1] for name, _ in model.named_modules()}
            targets = [m for m in self.cfg.model.lora_target_modules if m in present]
            if not targets:
                raise ValueError(f"model.lora_target_modules {self.cfg.model.lora_target_modules} match no module of the student")
            lora = LoraConfig(r=self.cfg.model.lora_rank, lora_alpha=self.cfg.model.lora_alpha,
                              lora_dropout=self.cfg.model.lora_dropout, target_modules=targets, task_type="CAUSAL_LM")
            model = get_peft_model(model, lora)
        model.train()
        return model

    def _reference_logp(self, input_ids, attention_mask) -> torch.Tensor | None:
        if not self.method.needs_reference:
            return None
        if self.reference is not None:
            return logprobs.token_logprobs(self.reference, input_ids, attention_mask, temperature=self.logp_temperature)
        with self.student.disable_adapter():  # LoRA: the base model is the reference policy
            return logprobs.token_logprobs(self.student, input_ids, attention_mask, temperature=self.logp_temperature)

    # --- data

    def _step_problems(self, step: int) -> list:
        """This process's share of the prompts of `step` (the global batch is split by rank)."""
        per_step = self.cfg.optim.prompts_per_step
        n = len(self.order)
        ids = [self.order[(step * per_step + i) % n] for i in range(per_step)]
        share = per_step // self.world_size
        mine = ids[self.rank * share : (self.rank + 1) * share]
        return [self.world.train_problems[i] for i in mine]

    def _grade(self, texts: list[str], problems: list) -> list[bool]:
        """The binary reward of each text against its problem, by `reward.verifier`: math answers
        through `verify.grade_batch`, programs through the execution sandbox (`scope_lib.grading`)."""
        if self.cfg.reward.verifier == "math":
            return grade_batch(list(texts), [p.answer for p in problems])
        from scope_lib import grading

        return grading.grade_config(self.cfg, list(texts), list(problems))

    def _build_kd_corpus(self) -> list[tuple[str, str]]:
        """KD's offline data: verified teacher solutions for the training pool, cached in the run dir."""
        path = self.run_dir / "kd_corpus.jsonl"
        if path.exists():
            try:
                return [tuple(json.loads(line)) for line in path.read_text().splitlines()]
            except ValueError as error:  # cut short by a kill under older code: it is rebuilt the same
                warnings.warn(f"{path} does not parse ({error}); building the KD corpus again", RuntimeWarning)
        cfg, problems = self.cfg, self.world.train_problems
        needed = min(len(problems), cfg.steps * cfg.optim.prompts_per_step)
        chosen = [problems[i] for i in self.order[:needed]]
        sampling = Sampling(temperature=cfg.kd.temperature, max_new_tokens=cfg.rollout.max_new_tokens,
                            top_p=cfg.rollout.top_p, top_k=cfg.rollout.top_k, batch_size=cfg.rollout.batch_size)
        # the teacher is the policy here: its rollouts, graded, no teacher scoring
        scored = score_rollouts(self.world.teacher.to(self.device), self.tokenizer, chosen,
                                format_prompt=self.world.format_prompt, grade=self._grade,
                                group_size=cfg.kd.samples_per_prompt, sampling=sampling, seed=cfg.seed + 10_000)
        batch, prompts = scored.rollouts, scored.prompts
        corpus = [(prompts[int(g)], text) for g, text, good in zip(batch.group, batch.texts, scored.correct.tolist())
                  if good or not cfg.kd.only_correct]
        if not corpus:
            raise RuntimeError(
                f"KD corpus is empty: the teacher solved none of {len(chosen)} training prompts "
                f"(x{cfg.kd.samples_per_prompt} samples); set kd.only_correct: false to keep unverified solutions"
            )
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            runs.write_atomic(path, "".join(json.dumps(pair) + "\n" for pair in corpus))
        return corpus

    def _kd_batch(self, step: int) -> dict[str, torch.Tensor]:
        from scope_lib.rollout import encode_pairs

        corpus = self.kd_corpus
        per_step = self.cfg.optim.prompts_per_step
        share = per_step // self.world_size
        pairs = [corpus[(step * per_step + self.rank * share + i) % len(corpus)] for i in range(share)]
        batch = encode_pairs(self.tokenizer, pairs)
        batch["group"] = torch.arange(len(pairs)) + step * 1_000_000 + self.rank * 10_000  # one row per "group"
        return batch

    # --- one step

    def collect(self, step: int, timer: Timer) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """Rollouts, rewards, teacher scores and old log-probs for this process's prompts.

        Rollouts, rewards and the teacher's scores of the rows the method distils on come from
        the one rollout pipeline (`pipeline.score_rollouts`); with `teacher.overlap` the teacher
        scores each finished generation batch while the next one is generated (same batch).
        """
        cfg = self.cfg
        problems = self._step_problems(step)
        needs_teacher = self.method.needs_teacher
        self.student.eval()
        try:
            scored = score_rollouts(
                self.student, self.tokenizer, problems, format_prompt=self.world.format_prompt, grade=self._grade,
                group_size=cfg.rollout.group_size, sampling=Sampling.from_config(cfg.rollout),
                seed=cfg.seed * 1_000_003 + step * 1009 + self.rank,
                teacher=self.teacher if needs_teacher else None,
                teacher_rows=self.method.teacher_rows if needs_teacher else None, exact=self.method.exact_kl,
                overlap=self._overlap, generate=self.engine.generate if self.engine is not None else None, timer=timer,
                overlap_reward=self._overlap_reward,
            )
        finally:
            self.student.train()
        if self._overlap or self._overlap_reward:
            timer.seconds["teacher_scoring_worker"] += scored.teacher_busy_s
        if self._overlap_reward:
            timer.seconds["reward_worker"] += scored.reward_busy_s
        rollouts = scored.rollouts
        self.rollout_texts = (list(rollouts.texts), [p.question for p in scored.row_problems])
        batch = {
            "input_ids": rollouts.input_ids, "attention_mask": rollouts.attention_mask,
            "response_mask": rollouts.response_mask, "group": rollouts.group.long() + step * 1_000_000 + self.rank * 10_000,
            "correct": scored.correct, "teacher_logp": scored.teacher_logp,
        }
        if scored.teacher_logits is not None:  # exact KL: one teacher pass serves the update too
            batch["teacher_logits"] = scored.teacher_logits
        return batch, self._finish_collect(batch, scored.teacher_rows, {}, timer)

    @property
    def _overlap(self) -> bool:
        return self.cfg.teacher.overlap and self.method.needs_teacher and self.engine is None

    @property
    def _overlap_reward(self) -> bool:
        """`reward.overlap`: rollouts graded on the pipeline's worker while generation goes on."""
        return self.cfg.reward.overlap and self.engine is None

    def _finish_collect(self, batch: dict[str, torch.Tensor], rows: torch.Tensor, stats: dict[str, float],
                        timer: Timer) -> dict[str, float]:
        """collect()'s logged statistics and (unless the update's pass gives it) pi_old's pass."""
        correct, teacher_logp = batch["correct"], batch["teacher_logp"]
        mask = batch["response_mask"].float()
        if len(rows):
            t_seq = sequence_logp(teacher_logp[rows].nan_to_num(0.0), mask[rows])
            stats["teacher_ppl"] = float(torch.exp(-t_seq).mean())
        stats.update({
            "accuracy": float(correct.float().mean()), "response_length": float(mask.sum(1).mean()),
            "n_correct": float(correct.sum()), "n_incorrect": float((~correct).sum()),
        })
        if not self.old_logp_from_update:  # else pi_old, entropy and KL come from the update's forward pass
            with timer("old_logprob"):
                batch["old_logp"], entropy = self._old_logp_pass(batch)
            stats.update(_stat_means(_stat_sums(batch["old_logp"], entropy, teacher_logp, mask)))
        return stats

    @torch.no_grad()
    def _old_logp_pass(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """pi_old's token log-probs and entropies (B, T), a no-grad pass in micro-batches of groups."""
        old, ent = [], []
        for rows in _micro_batches(batch["group"], self.cfg.optim.micro_batch_size):
            ids, att = batch["input_ids"][rows].to(self.device), batch["attention_mask"][rows].to(self.device)
            logp, entropy = logprobs.token_logprobs(self.student, ids, att, temperature=self.logp_temperature,
                                                    with_entropy=True)
            old.append(logp.cpu())
            ent.append(entropy.cpu())
        return torch.cat(old), torch.cat(ent)

    def _micro_loss(self, micro: dict[str, torch.Tensor], n_global: int
                    ) -> tuple[torch.Tensor, dict[str, float], dict[str, torch.Tensor] | None]:
        """Loss of one micro-batch, scaled so micro-batch losses sum to the global batch loss.

        The loss is the method's (scope_lib.methods); the trainer only runs the student's forward
        pass and supplies what the method asks for. Also returns the micro-batch's per-row record
        (`_row_record`; None for a method without rollouts): log-PPLs and the DPAW weights this
        very loss used.
        """
        ids, att = micro["input_ids"], micro["attention_mask"]
        position_ids = logprobs.position_ids_from_mask(att)
        logits = self.student(input_ids=ids, attention_mask=att, position_ids=position_ids).logits
        logp = logprobs.token_logprobs_from_logits(logits, ids, temperature=self.logp_temperature)
        sums: dict[str, float] = {}
        if self.method.samples_rollouts and "old_logp" not in micro:
            # old_logp_pass "when_needed": pi_old is this very policy (one update per batch)
            micro = {**micro, "old_logp": logp.detach()}
            with torch.no_grad():
                _, entropy = logprobs.token_logprobs_from_logits(logits.detach(), ids, temperature=self.logp_temperature,
                                                                 with_entropy=True)
            sums = _stat_sums(logp.detach(), entropy, micro.get("teacher_logp"), micro["response_mask"].float())
        batch = MicroBatch(
            micro, logits, logp,
            teacher_logits=lambda: micro["teacher_logits"] if "teacher_logits" in micro else self.teacher.logits(ids, att),
            reference_logp=lambda: self._reference_logp(ids, att),
        )
        result = self.method.loss(batch, n_global)
        if not self.method.samples_rollouts:
            return result.loss, result.stats, None
        return result.loss, {**result.stats, **sums}, _row_record(micro, result.dpaw)

    def update(self, batch: dict[str, torch.Tensor], timer: Timer | None = None) -> dict[str, float]:
        """Optimizer update(s) on one rollout batch: mini-batches of prompts, micro-batches of groups."""
        cfg = self.cfg
        timer = timer or Timer()
        stats_sum: dict[str, list[float]] = defaultdict(list)
        groups = batch["group"]
        unique_groups = list(dict.fromkeys(groups.tolist()))
        group_sizes = Counter(groups.tolist())
        records = {key: torch.full((len(groups),), float("nan")) for key in ROW_RECORD_KEYS}
        recorded = torch.zeros(len(groups), dtype=torch.bool)
        per_mini = cfg.optim.mini_batch_prompts // self.world_size
        with timer("actor_update"):
            for start in range(0, len(unique_groups), per_mini):
                chosen = set(unique_groups[start : start + per_mini])
                rows = torch.tensor([i for i, g in enumerate(groups.tolist()) if g in chosen])
                n_global = self.method.normaliser(groups[rows]) * self.world_size  # Eq. 6's prompts, or rows
                self.optimizer.zero_grad(set_to_none=True)
                for micro_rows in _micro_batches(groups[rows], cfg.optim.micro_batch_size):
                    _check_whole_groups(groups[rows][micro_rows], group_sizes)
                    micro = _trim({k: v[rows] for k, v in batch.items()}, micro_rows)
                    micro = {k: v.to(self.device) for k, v in micro.items()}
                    loss, stats, row_record = self._micro_loss(micro, n_global)
                    loss.backward()
                    if row_record is not None:
                        for key, value in row_record.items():
                            records[key][rows[micro_rows]] = value
                        recorded[rows[micro_rows]] = True
                    for k, v in stats.items():
                        if isinstance(v, float) and math.isfinite(v):
                            stats_sum[k].append(v)
                if self.world_size > 1:  # sum, not mean: each process's loss is already scaled by the global size
                    for p in self.student.parameters():
                        if p.requires_grad:
                            if p.grad is None:
                                p.grad = torch.zeros_like(p)
                            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                params = [p for p in self.student.parameters() if p.requires_grad]
                grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf"))
                stats_sum["grad_norm"].append(float(grad_norm))
                self.optimizer.step()
        if self.engine is not None:
            with timer("weight_sync"):
                self.engine.push_weights(self.student)
        self.row_records = records if bool(recorded.all()) else None
        totals = {k: float(np.sum(stats_sum.pop(k))) for k in [k for k in stats_sum if k.startswith("sum/")]}
        out = {k: float(np.mean(v)) for k, v in stats_sum.items()}
        out.update(_stat_means(totals))  # token-weighted over the whole batch, as collect() computes them
        out["lr"] = self.scheduler.get_last_lr()[0]
        self.scheduler.step()
        return out

    # --- checkpoints

    def _checkpoint_dirs(self) -> list[Path]:
        """Checkpoint directories, oldest first."""
        found = [(int(m.group(1)), p) for p in (self.run_dir / "checkpoints").glob("step_*")
                 if (m := _CHECKPOINT_NAME.fullmatch(p.name)) and p.is_dir()]
        return [p for _, p in sorted(found)]

    def save_checkpoint(self) -> None:
        if self.rank != 0:
            return
        final = self.run_dir / "checkpoints" / f"step_{self.step:06d}"
        tmp = final.with_name(final.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        with open(tmp / "state.pt", "wb") as handle:
            torch.save({
                "model": self.student.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "rng": _rng_state(), "step": self.step,
                "fingerprint": self.cfg.fingerprint(),
            }, handle)
            handle.flush()
            os.fsync(handle.fileno())  # on disk before its name says it is whole
        integrity.write_sums(tmp)  # checked on resume: an altered state.pt is never loaded
        shutil.rmtree(final, ignore_errors=True)  # a checkpoint of this step that did not load on resume
        tmp.rename(final)  # a checkpoint either exists whole or not at all (SIGKILL-safe)
        # At least two: when the newest turns out damaged, resume falls back to the one before.
        for old in self._checkpoint_dirs()[: -max(2, self.cfg.keep_checkpoints)]:
            shutil.rmtree(old, ignore_errors=True)

    def _load_checkpoint(self, checkpoint: Path) -> dict | None:
        """The state saved in `checkpoint`, or None (with a warning naming the file) when it does not load."""
        path = checkpoint / "state.pt"
        try:
            integrity.verify_folder(checkpoint)  # False for a checkpoint of older code: loaded unchecked
            state = torch.load(path, weights_only=False)
        except Exception as error:  # empty or truncated: EOFError, RuntimeError, UnpicklingError, ...
            warnings.warn(f"skipping checkpoint {path}: it does not load ({type(error).__name__}: {error})",
                          RuntimeWarning, stacklevel=3)
            return None
        if not isinstance(state, dict) or not _CHECKPOINT_KEYS <= state.keys():
            warnings.warn(f"skipping checkpoint {path}: expected a dict with keys {sorted(_CHECKPOINT_KEYS)}",
                          RuntimeWarning, stacklevel=3)
            return None
        if state["fingerprint"] != self.cfg.fingerprint():
            raise runs.RunDirError(f"checkpoint {path} was written by a different config; use a fresh output_dir")
        return state

    def maybe_resume(self) -> bool:
        """Resume from the newest checkpoint that loads; the history is cut to the step resumed from.

        The history (metrics.jsonl) and the weight records then hold exactly the steps 1..step,
        also when no checkpoint loads and the run starts again from step 0. A checkpoint newer than the
        history's last whole step is passed over: its steps' records are lost.
        Returns whether a checkpoint was loaded.
        """
        metrics = self.run_dir / "metrics.jsonl"
        by_step = {}
        for row in runs.read_history(metrics):
            by_step[row["step"]] = row  # older code re-appended restarted steps: the latest attempt wins
        recorded = 0
        while recorded + 1 in by_step:
            recorded += 1
        state = None
        for checkpoint in reversed(self._checkpoint_dirs()):
            step = int(_CHECKPOINT_NAME.fullmatch(checkpoint.name).group(1))
            if step > recorded:
                warnings.warn(f"skipping checkpoint {checkpoint}: {metrics} records steps 1..{recorded} only",
                              RuntimeWarning, stacklevel=2)
                continue
            state = self._load_checkpoint(checkpoint)
            if state is not None:
                break
        if state is not None:
            self.student.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            _set_rng_state(state["rng"])
            self.step = state["step"]
        self.history = [by_step[step] for step in range(1, self.step + 1)]
        if self.rank == 0:
            if metrics.exists() or self.history:
                runs.write_history(metrics, self.history)
            weight_records.truncate_records(self.run_dir, self.step)  # the records hold the history's steps only
            if self.weight_recorder is not None:
                self.weight_recorder = weight_records.WeightRecorder(self.run_dir)
            # Newer checkpoints (damaged, or past the history) and saves cut short belong to an
            # abandoned attempt; left in place they would count among the ones kept.
            for stale in (self.run_dir / "checkpoints").glob("step_*"):
                match = _CHECKPOINT_NAME.fullmatch(stale.name)
                if match is None or int(match.group(1)) > self.step:
                    shutil.rmtree(stale, ignore_errors=True)
        return state is not None

    def _remove_stale_temporaries(self) -> None:
        """Temporary files of a write that a kill cut short (`.metrics.jsonl.<pid>.tmp`, ...): this
        process holds the run directory's lock, so no live writer owns them."""
        for folder in (self.run_dir, self.run_dir / "final"):
            for stale in folder.glob(".*.tmp"):
                if stale.is_file():
                    warnings.warn(f"removing {stale}: a temporary file left by a write that was cut short",
                                  RuntimeWarning, stacklevel=3)
                    stale.unlink(missing_ok=True)

    # --- the loop

    def train(self) -> TrainResult:
        """Train to `cfg.steps`, resuming from the run directory; it must hold no other config's run."""
        # One process trains a run directory (rank 0 holds it for all ranks), and it is checked
        # to hold no other config's run before anything in it is written.
        with runs.claim_run_dir(self.run_dir) if self.rank == 0 else nullcontext():
            runs.check_run_dir(self.run_dir, self.cfg)
            finished = self._finished()
            if finished is not None:
                return finished
            return self._train()

    def _finished(self) -> TrainResult | None:
        """The run as it stands when `done.json` says it is finished for this config (nothing is
        trained again); None otherwise. A final model that fails its checksums is RunDirError."""
        if not (self.run_dir / "done.json").exists():
            return None
        done = runs.check_done(self.run_dir, self.cfg)
        if done.get("steps") != self.cfg.steps:
            return None
        model = runs.load_final_model(self.run_dir)
        if self.rank == 0:
            print(f"run {self.run_dir} is done ({done['steps']} steps): nothing to train", flush=True)
        return TrainResult(self.run_dir, runs.read_history(self.run_dir / "metrics.jsonl"), model.eval())

    def _train(self) -> TrainResult:
        cfg = self.cfg
        if self.rank == 0:
            tmp = self.run_dir / f".config.yaml.{os.getpid()}.tmp"
            save_config(cfg, tmp)
            os.replace(tmp, self.run_dir / "config.yaml")
            (self.run_dir / "done.json").unlink(missing_ok=True)  # not done until save_final says so again
            self._remove_stale_temporaries()
        if self.maybe_resume() and self.engine is not None:
            self.engine.push_weights(self.student)  # the engine started from the initial weights
        if not self.method.samples_rollouts:
            self.kd_corpus = self._build_kd_corpus()
        from scope_lib.progress import bar as progress_bar  # tqdm, or a line drawn by run_grid's parent process

        bar = progress_bar(total=cfg.steps, initial=self.step, desc=f"{cfg.method} {self.world.description}",
                           disable=not cfg.progress or self.rank != 0, dynamic_ncols=True)
        metrics_file = self.run_dir / "metrics.jsonl"
        tensorboard = _tensorboard_writer(self.run_dir, self.step + 1) if self.rank == 0 else None
        while self.step < cfg.steps:
            timer = Timer()
            with timer("step"):
                if not self.method.samples_rollouts:
                    batch = {k: v for k, v in self._kd_batch(self.step).items()}
                    stats = {}
                else:
                    batch, stats = self.collect(self.step, timer)
                for key, value in self.update(batch, timer).items():
                    stats.setdefault(key, value)  # the rollout-level counts win over per-micro-batch ones
            self.step += 1
            if self.method.samples_rollouts:
                self._record_weights(batch)
            record = {"step": self.step, **stats, **{f"time/{k}": timer.seconds.get(k, 0.0) for k in TIMERS}}
            if self.method.samples_rollouts and (self._overlap or (self._overlap_reward and self.method.needs_teacher)):
                record[f"time/{WORKER_TIMER}"] = timer.seconds.get("teacher_scoring_worker", 0.0)
            if self.method.samples_rollouts and self._overlap_reward:  # the worker's grading time, likewise
                record["time/reward_worker"] = timer.seconds.get("reward_worker", 0.0)
            self.history.append(record)
            if self.rank == 0:  # the whole file is replaced, never appended to: no torn line
                runs.write_history(metrics_file, self.history)
                if tensorboard is not None:
                    for key, value in record.items():
                        if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                            tensorboard.add_scalar(key, value, self.step)
            bar.update(1)
            bar.set_postfix({k: f"{record[k]:.3g}" for k in ("accuracy", "entropy", "kl_to_teacher", "grad_norm") if k in record})
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and self.step < cfg.steps:
                self._flush_weight_records()  # before the checkpoint: a resume from it finds its steps' records
                self.save_checkpoint()
            elif self.weight_recorder is not None and self.weight_recorder.should_flush():
                self._flush_weight_records()
        bar.close()
        if tensorboard is not None:
            tensorboard.close()
        self._flush_weight_records()
        model = self.save_final()
        return TrainResult(self.run_dir, self.history, model)

    def _record_weights(self, batch: dict[str, torch.Tensor]) -> None:
        """Buffer the step's per-rollout record (every process's rollouts, in rank order) on rank 0."""
        if self.row_records is None or self.rollout_texts is None:
            raise RuntimeError(f"step {self.step}: update() did not record every rollout of the batch collect() returned")
        texts, questions = self.rollout_texts
        part = {"group": batch["group"].cpu().numpy(), "correct": batch["correct"].cpu().numpy(),
                "length": batch["response_mask"].sum(1).cpu().numpy(),
                **{key: value.numpy() for key, value in self.row_records.items()}, "texts": texts, "questions": questions}
        if self.world_size > 1:
            gathered: list = [None] * self.world_size
            dist.all_gather_object(gathered, part)
            part = {key: [x for g in gathered for x in g[key]] if key in ("texts", "questions")
                    else np.concatenate([g[key] for g in gathered]) for key in part}
        if self.weight_recorder is not None:
            self.weight_recorder.add_step(self.step, **part)

    def _flush_weight_records(self) -> None:
        if self.weight_recorder is not None:
            self.weight_recorder.flush()

    def save_final(self) -> torch.nn.Module:
        model = self.student
        if self.cfg.model.finetune == "lora" and self.cfg.model.merge_lora_on_save:
            model = model.merge_and_unload()
        if self.rank == 0:
            model.save_pretrained(self.run_dir / "final")
            self.tokenizer.save_pretrained(self.run_dir / "final")
            sums = integrity.write_sums(self.run_dir / "final")  # checked whenever the final model is loaded
            runs.write_atomic(self.run_dir / "done.json", json.dumps({"steps": self.step, "fingerprint": self.cfg.fingerprint(),
                                                                      "final_sums": sums}))
        return model.eval()


def train(cfg: TrainConfig, world: World | None = None) -> TrainResult:
    """Train (or resume) the run `cfg` describes; returns its history and trained student."""
    return Trainer(cfg, world).train()
