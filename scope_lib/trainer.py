"""The on-policy trainer: SCOPE and its baselines (OPD, GRPO, KD, the hybrid) in one loop.

One step, top to bottom in this file (docs/DESIGN.md §4):

    Trainer.collect   prompts -> G rollouts each (student) -> rewards (`Trainer.grade`, the one
                      grading dispatcher) -> teacher log-probs (SCOPE: incorrect rollouts only;
                      OPD, hybrid: all; GRPO: none) -> pi_old's log-probs and entropies
    Trainer.update    mini-batches of prompts -> micro-batches of whole groups (scope_lib/batching.py)
                      -> the method's loss (`_micro_loss`; SCOPE: Eq. 4-5 weights, then Eq. 6) ->
                      backward -> all-reduce -> clip -> AdamW step

The method is an object (scope_lib/methods.py: Scope, OPD, GRPO, KD, Hybrid) that declares
whether it needs the teacher, where its batch comes from (`Method.batch`: `collect` above, or
KD's offline corpus of verified teacher solutions), which rollouts the teacher scores, its
normaliser, its loss and its per-rollout record; the loop is the same for all of them. Every
loss lives in scope_lib/losses.py, the batch normalisation (Eq. 6's E_x, the baselines' row
mean, a micro-batch's share of the global batch) in `losses.normalise`. Process bookkeeping
(rank, shares, all-reduce, gathers) is scope_lib/distributed.py; the run directory's files
(atomic writes, history, checkpoints, the lock) are scope_lib/common/storage.py.

Rollouts, rewards and teacher scores come from the project's one rollout pipeline
(`scope_lib.pipeline.score_rollouts`), which the studies, notebooks and the tiny gate use too.
`teacher.overlap: true` has it score each finished generation batch (`rollout.batch_size` rows)
on a worker thread while the next one is generated (pipeline.OverlappedScorer); rewards, teacher
log-probs and gradients equal the synchronous path's (tests/test_overlap.py). `reward.overlap:
true` has the same worker grade each batch first (the code world's sandbox runs beside generation), and
starts the update's first forward pass while the worker grades the rows that ended last
(`batching.early_forward`; same gradients bit for bit, tests/test_reward_overlap.py). It gains time only
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

import copy
import inspect
import json
import math
import os
import random
import time
from collections import Counter, defaultdict
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from scope_lib import batching, grading, logprobs, weight_records
from scope_lib.common import integrity, storage
from scope_lib.config import (ConfigError, TrainConfig, logprob_temperatures, require_rollout_engine, save_config,
                              without_neutral_additions)
from scope_lib.distributed import Processes
from scope_lib.methods import ROW_RECORD_KEYS, MicroBatch, make_method
from scope_lib.pipeline import score_rollouts
from scope_lib.common.progress import bar as progress_bar
from scope_lib.rollout import Sampling
from scope_lib.common.storage import RunDirError
from scope_lib.teacher import LocalTeacher, ServerTeacher
from scope_lib.weights import sequence_logp
from scope_lib.world import World, WorldSpec, load_world

TIMERS = ("generation", "reward", "teacher_scoring", "old_logprob", "actor_update", "step")  # Table 8 names
# With `teacher.overlap`: the scoring worker's busy seconds, logged as `time/teacher_worker`. Not in
# TIMERS: the worker runs beside generation, so it is not a part of the step that adds up to it.
WORKER_TIMER = "teacher_worker"


# --- small utilities -------------------------------------------------------------------------


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


class Timer:
    """Wall-clock seconds per named component of one step (the paper's Table 8).

    `workers`: log name -> key of `seconds` measured on the pipeline's worker thread (beside the
    step, not a part of it), logged after TIMERS."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.workers: dict[str, str] = {}

    @contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        yield
        self.seconds[name] += time.perf_counter() - start


def _early_forward(trainer: "Trainer", rollouts, *, step: int, timer: "Timer") -> None:
    """reward.overlap: the update's first forward pass on `rollouts`, while the last rows are graded."""
    with timer("actor_update"):
        trainer.early = batching.early_forward(
            trainer.student, rollouts.input_ids, rollouts.attention_mask, rollouts.group.long() + trainer.procs.group_offset(step),
            per_mini=trainer.cfg.optim.mini_batch_prompts // trainer.procs.size,
            rows_per_micro=trainer.cfg.optim.micro_batch_size, device=trainer.device)


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


def _prepare_student(model: torch.nn.Module, m) -> torch.nn.Module:
    """The student in training mode, with LoRA adapters when `m` (config `model`) asks for them."""
    if m.finetune == "lora":
        from peft import LoraConfig, get_peft_model  # optional dependency: LoRA runs only

        present = {name.split(".")[-1] for name, _ in model.named_modules()}
        targets = [t for t in m.lora_target_modules if t in present]
        if not targets:
            raise ValueError(f"model.lora_target_modules {m.lora_target_modules} match no module of the student")
        model = get_peft_model(model, LoraConfig(r=m.lora_rank, lora_alpha=m.lora_alpha, lora_dropout=m.lora_dropout,
                                                 target_modules=targets, task_type="CAUSAL_LM"))
    model.train()
    return model


def _make_teacher(cfg: TrainConfig, world: World, device: torch.device, temperature: float):
    """The teacher that scores rollouts: in-process (`LocalTeacher`) or a vLLM server's."""
    if cfg.teacher.backend == "vllm_server":
        teacher = ServerTeacher(cfg.teacher.server_url, cfg.teacher.server_model or cfg.model.teacher,
                                request_batch_size=cfg.teacher.request_batch_size, temperature=temperature)
    else:
        teacher = LocalTeacher(world.teacher.to(device), micro_batch_size=cfg.optim.micro_batch_size,
                               temperature=temperature)
    if cfg.scope.kl_estimator == "exact" and not isinstance(teacher, LocalTeacher):
        raise ValueError("scope.kl_estimator 'exact' needs teacher.backend 'local' (full logits)")
    return teacher


def _make_engine(cfg: TrainConfig, student: torch.nn.Module, tokenizer, rank: int):
    """A vLLM engine that samples the rollouts (`rollout.engine: vllm`); weights are pushed after every update."""
    from scope_lib.vllm_engine import VLLMEngine, save_plain_model  # optional dependency (GPU only)

    # plain, dequantized, LoRA-merged weights; each process: its own colocated engine
    init = save_plain_model(student, tokenizer, Path(cfg.output_dir) / "vllm_init" / f"rank{rank}")
    return VLLMEngine(init, tokenizer, seed=cfg.seed + rank, gpu_memory_utilization=cfg.rollout.vllm_gpu_memory_utilization,
                      dtype=cfg.model.dtype, enforce_eager=cfg.rollout.vllm_enforce_eager)


def _rollout_stats(batch: dict[str, torch.Tensor], teacher_rows: torch.Tensor) -> dict[str, float]:
    """collect()'s logged counts: accuracy, response length and the teacher's PPL of the rows it scored."""
    correct, mask, stats = batch["correct"], batch["response_mask"].float(), {}
    if len(teacher_rows):
        t_seq = sequence_logp(batch["teacher_logp"][teacher_rows].nan_to_num(0.0), mask[teacher_rows])
        stats["teacher_ppl"] = float(torch.exp(-t_seq).mean())
    stats.update({"accuracy": float(correct.float().mean()), "response_length": float(mask.sum(1).mean()),
                  "n_correct": float(correct.sum()), "n_incorrect": float((~correct).sum())})
    return stats


def _record_part(batch: dict[str, torch.Tensor], row_records: dict[str, torch.Tensor], texts: list[str],
                 questions: list[str]) -> dict:
    """One process's rows of a step's weight record (scope_lib/weight_records.py `add_step`)."""
    return {"group": batch["group"].cpu().numpy(), "correct": batch["correct"].cpu().numpy(),
            "length": batch["response_mask"].sum(1).cpu().numpy(),
            **{key: value.numpy() for key, value in row_records.items()}, "texts": texts, "questions": questions}


def _log_scalars(tensorboard, record: dict) -> None:
    """A step's finite numbers to TensorBoard (when the writer exists)."""
    if tensorboard is not None:
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                tensorboard.add_scalar(key, value, record["step"])


def _reference_logp(student, reference, input_ids, attention_mask, temperature: float) -> torch.Tensor:
    """GRPO's KL reference: the frozen copy of the initial student, or (LoRA) the base model."""
    if reference is not None:
        return logprobs.token_logprobs(reference, input_ids, attention_mask, temperature=temperature)
    with student.disable_adapter():  # LoRA: the base model is the reference policy
        return logprobs.token_logprobs(student, input_ids, attention_mask, temperature=temperature)


def _tensorboard_writer(run_dir: Path, first_step: int):
    """A TensorBoard writer into `<run_dir>/tensorboard` when the tensorboard package is installed.

    Events of an earlier attempt from `first_step` on are purged, as metrics.jsonl's rows are.
    """
    try:
        from torch.utils.tensorboard import SummaryWriter  # optional: metrics.jsonl is the record of truth
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=first_step)


# --- which config owns a run directory -----------------------------------------------------------

# Keys that do not change the trained model (output_dir, progress, checkpointing, eval):
# a run may be resumed with other values of these.
_NOT_FINGERPRINTED: tuple[str, ...] = inspect.signature(TrainConfig.fingerprint).parameters["exclude"].default


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix[:-1]: data}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        flat.update(_flatten(value, f"{prefix}{key}."))
    return flat


def _not_fingerprinted(key: str) -> bool:
    parts = key.split(".")
    return any(".".join(parts[:n]) in _NOT_FINGERPRINTED for n in range(1, len(parts) + 1))


def config_differences(saved: dict, cfg: TrainConfig) -> list[str]:
    """`key: saved -> requested` for each setting of `saved` (a config.yaml) that `cfg` changes.

    Only settings that change the trained model count (those `TrainConfig.fingerprint` hashes).
    A key that `saved` lacks (written before the field existed) reads as the field's default:
    fields added later default to what the code computed before them (config.ADDED_FIELDS), so
    an absent key and a requested default are the same run; another requested value differs.
    """
    # Settings added later at their neutral value count as absent on both sides, as in the fingerprint.
    wanted = _flatten(json.loads(json.dumps(without_neutral_additions(cfg.to_dict()))))  # tuples as lists, as config.yaml holds them
    held = _flatten(json.loads(json.dumps(without_neutral_additions(saved), default=str)))
    defaults = _flatten(json.loads(json.dumps(TrainConfig().to_dict())))
    missing = object()
    differences = []
    for key in sorted(set(wanted) | set(held)):
        if _not_fingerprinted(key):
            continue
        old, new = held.get(key, missing), wanted.get(key, missing)
        if old is missing and key in defaults and new is not missing and json.dumps(new) == json.dumps(defaults[key]):
            continue
        if old is missing or new is missing or json.dumps(old) != json.dumps(new):  # as the fingerprint sees them (NaN == NaN)
            describe = lambda v: "(absent)" if v is missing else repr(v)  # noqa: E731
            differences.append(f"{key}: {describe(old)} -> {describe(new)}")
    return differences


def check_run_dir(run_dir: Path, cfg: TrainConfig) -> None:
    """RunDirError when `run_dir` holds a run of a config other than `cfg`; reads, never writes.

    The run's config is its `config.yaml`; a directory left by code that wrote none is judged
    by the fingerprint in its `done.json`.
    """
    run_dir = Path(run_dir)
    saved_path, done_path = run_dir / "config.yaml", run_dir / "done.json"
    if saved_path.exists():
        try:
            saved = yaml.safe_load(saved_path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            raise RunDirError(f"{saved_path} does not parse ({error}); it cannot say which config owns "
                              f"{run_dir}: use a fresh output_dir or delete this one") from None
        if not isinstance(saved, dict):
            raise RunDirError(f"{saved_path} holds {type(saved).__name__}, expected a config mapping; "
                              f"use a fresh output_dir or delete {run_dir}")
        differences = config_differences(saved, cfg)
    elif done_path.exists():
        done = json.loads(done_path.read_text())
        differences = [] if done.get("fingerprint") == cfg.fingerprint() else [
            f"fingerprint: {done.get('fingerprint')!r} -> {cfg.fingerprint()!r}"]
    else:
        return
    if differences:
        raise RunDirError(
            f"output_dir {run_dir} holds a run of another config, which training this one would overwrite; "
            f"it differs in {len(differences)} key(s): " + "; ".join(differences)
            + ". Use a fresh output_dir (or delete this one)."
        )


def check_done(run_dir: Path, cfg: TrainConfig) -> dict:
    """RunDirError, naming the file, unless `run_dir` holds the finished run of `cfg`.

    Its `done.json` must carry `cfg`'s fingerprint, its `config.yaml` (when there is one) must be
    `cfg` in every setting that changes the model, and the final model's SHA256SUMS must be the
    one `done.json` recorded (scope_lib/common/integrity.py). Returns the parsed `done.json`.
    """
    run_dir = Path(run_dir)
    done = storage.read_done(run_dir)
    if done.get("fingerprint") != cfg.fingerprint():
        raise RunDirError(f"{run_dir / 'done.json'} records the run of config {done.get('fingerprint')!r}, not of the "
                          f"requested {cfg.fingerprint()!r} (a moved or swapped run directory?); delete {run_dir}")
    check_run_dir(run_dir, cfg)
    recorded = done.get("final_sums")
    if recorded is not None and integrity.sums_digest(run_dir / "final") != recorded:
        raise RunDirError(f"{run_dir / 'final' / integrity.SUMS_NAME} is not the one {run_dir / 'done.json'} recorded "
                          f"(the final model was replaced or its checksums lost); delete {run_dir} to train again")
    return done


# --- the trainer -------------------------------------------------------------------------------


@dataclass
class TrainResult:
    run_dir: Path
    history: list[dict]  # one metrics dict per step, as in metrics.jsonl
    model: torch.nn.Module  # the trained student (LoRA merged if configured)


def _finished_run(run_dir: Path, cfg: TrainConfig, *, announce: bool) -> TrainResult | None:
    """The run as it stands when `done.json` says it is finished for this config (nothing is
    trained again); None otherwise. A final model that fails its checksums is RunDirError."""
    if not (run_dir / "done.json").exists():
        return None
    done = check_done(run_dir, cfg)
    if done.get("steps") != cfg.steps:
        return None
    model = storage.load_final_model(run_dir)
    if announce:
        print(f"run {run_dir} is done ({done['steps']} steps): nothing to train", flush=True)
    return TrainResult(run_dir, storage.read_history(run_dir / "metrics.jsonl"), model.eval())


class Trainer:
    """Holds the run's state; `train()` runs the loop, `collect()` and `update()` one step."""

    def __init__(self, cfg: TrainConfig, world: World | None = None):
        require_rollout_engine(cfg)  # before anything is built: one line naming the install command
        self.procs = Processes.current()  # rank and number of processes (scope_lib/distributed.py)
        self.procs.check_divisible(prompts_per_step=cfg.optim.prompts_per_step,
                                   mini_batch_prompts=cfg.optim.mini_batch_prompts)
        self.cfg, self.run_dir = cfg, Path(cfg.output_dir)
        self.device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available() else
                                   ("cpu" if cfg.device == "auto" else cfg.device))
        _seed_everything(cfg.seed)
        self.method = make_method(cfg)  # what the loop needs to know of SCOPE, OPD, GRPO, KD or the hybrid
        # The temperatures log-probs divide logits by (config: rollout/teacher.logprob_temperature):
        # the student's (pi_theta, pi_old, the reference, entropies) and the teacher's.
        self.logp_temperature, self.teacher_temperature = logprob_temperatures(cfg)
        self.world = world or load_world(WorldSpec.from_config(cfg), need_teacher=self.method.needs_teacher,
                                         train_seed=cfg.seed, progress=cfg.progress)
        self.tokenizer = self.world.tokenizer
        self.student = _prepare_student(self.world.student, cfg.model).to(self.device)
        self.teacher = (_make_teacher(cfg, self.world, self.device, self.teacher_temperature)
                        if self.method.needs_teacher else None)
        self.reference = None  # GRPO's KL reference; with LoRA, the student with its adapter off
        if self.method.needs_reference and cfg.model.finetune == "full":
            self.reference = copy.deepcopy(self.student).eval().requires_grad_(False)
        o = cfg.optim
        self.optimizer = torch.optim.AdamW([p for p in self.student.parameters() if p.requires_grad], lr=o.lr,
                                           betas=o.betas, eps=o.adam_eps, weight_decay=o.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: min(1.0, (s + 1) / o.warmup_steps) if o.warmup_steps else 1.0)
        self.step, self.history = 0, []
        pool = len(self.world.train_problems)
        if o.prompts_per_step > pool:
            raise ConfigError(f"config key 'optim.prompts_per_step' ({o.prompts_per_step}) is larger than the "
                              f"training pool of data.train {cfg.data.train!r} ({pool} problems): a step would hold a "
                              "prompt twice")
        # Data order: one seeded permutation of the training pool, walked in order (resumable by step).
        self.order = torch.randperm(pool, generator=torch.Generator().manual_seed(cfg.seed)).tolist()
        # Per-step weight records of the rollouts (scope_lib/weight_records.py), written by rank 0.
        self.weight_recorder = weight_records.WeightRecorder(self.run_dir) if self.procs.is_main else None
        self.rollout_texts: tuple[list[str], list[str]] | None = None  # (responses, questions) of the last collect()
        self.row_records: dict[str, torch.Tensor] | None = None  # per-row values of the last update()
        self.engine = _make_engine(cfg, self.student, self.tokenizer, self.procs.rank) if cfg.rollout.engine == "vllm" else None
        # The pipeline's worker thread (not beside vLLM) scores (`teacher.overlap`) or grades each generation batch.
        self.overlap = cfg.teacher.overlap and self.method.needs_teacher and self.engine is None
        self.overlap_reward = cfg.reward.overlap and self.engine is None
        self.early: batching.EarlyForward | None = None  # reward.overlap: the update's first forward, run in collect()

    def grade(self, texts: list[str], problems: list) -> list[bool]:
        """Each text's binary reward by `reward.verifier`, through the one dispatcher (scope_lib/grading.py)."""
        return grading.grade_config(self.cfg, list(texts), list(problems))

    # --- one step: collect (rollouts -> rewards -> teacher scores -> pi_old), then update

    def _step_problems(self, step: int) -> list:
        """This process's share of the prompts of `step`: the seeded order, walked in order."""
        per_step = self.cfg.optim.prompts_per_step
        ids = [self.order[(step * per_step + i) % len(self.order)] for i in range(per_step)]
        return [self.world.train_problems[i] for i in self.procs.share(ids)]

    def collect(self, step: int, timer: Timer) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """Rollouts, rewards, teacher scores and pi_old's log-probs for this process's prompts.

        Generation, grading (`self.grade`) and the teacher's scores of the rows the method distils
        on come from the one rollout pipeline (`pipeline.score_rollouts`); with `teacher.overlap`
        the teacher scores each finished generation batch while the next one is generated.
        """
        cfg, problems = self.cfg, self._step_problems(step)
        teacher = self.teacher if self.method.needs_teacher else None
        self.student.eval()
        try:
            scored = score_rollouts(
                self.student, self.tokenizer, problems, format_prompt=self.world.format_prompt, grade=self.grade,
                group_size=cfg.rollout.group_size, sampling=Sampling.from_config(cfg.rollout),
                seed=cfg.seed * 1_000_003 + step * 1009 + self.procs.rank, teacher=teacher,
                teacher_rows=self.method.teacher_rows if teacher is not None else None, exact=self.method.exact_kl,
                overlap=self.overlap, generate=self.engine.generate if self.engine is not None else None, timer=timer,
                overlap_reward=self.overlap_reward,
                while_grading=partial(_early_forward, self, step=step, timer=timer) if self.overlap_reward else None)
        finally:
            self.student.train()
        if self.overlap or self.overlap_reward:
            timer.seconds["teacher_scoring_worker"] += scored.teacher_busy_s
            if self.overlap or self.method.needs_teacher:
                timer.workers[WORKER_TIMER] = "teacher_scoring_worker"
        if self.overlap_reward:  # the worker's grading time, likewise
            timer.seconds["reward_worker"] += scored.reward_busy_s
            timer.workers["reward_worker"] = "reward_worker"
        rollouts = scored.rollouts
        self.rollout_texts = (list(rollouts.texts), [p.question for p in scored.row_problems])
        batch = {"input_ids": rollouts.input_ids, "attention_mask": rollouts.attention_mask,
                 "response_mask": rollouts.response_mask, "group": rollouts.group.long() + self.procs.group_offset(step),
                 "correct": scored.correct, "teacher_logp": scored.teacher_logp}
        if scored.teacher_logits is not None:  # exact KL: one teacher pass serves the update too
            batch["teacher_logits"] = scored.teacher_logits
        stats = _rollout_stats(batch, scored.teacher_rows)
        if not self.method.old_logp_from_update:  # else pi_old, entropy and KL come from the update's forward pass
            with timer("old_logprob"):
                batch["old_logp"], entropy = self._old_logp_pass(batch)
            mask = batch["response_mask"].float()
            stats.update(_stat_means(_stat_sums(batch["old_logp"], entropy, batch["teacher_logp"], mask)))
        return batch, stats

    @torch.no_grad()
    def _old_logp_pass(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """pi_old's token log-probs and entropies (B, T), a no-grad pass in micro-batches of groups."""
        old, ent = [], []
        for rows in batching.micro_batches(batch["group"], self.cfg.optim.micro_batch_size):
            ids, att = batch["input_ids"][rows].to(self.device), batch["attention_mask"][rows].to(self.device)
            logp, entropy = logprobs.token_logprobs(self.student, ids, att, temperature=self.logp_temperature,
                                                    with_entropy=True)
            old.append(logp.cpu())
            ent.append(entropy.cpu())
        return torch.cat(old), torch.cat(ent)

    def update(self, batch: dict[str, torch.Tensor], timer: Timer | None = None) -> dict[str, float]:
        """Optimizer update(s) on one batch: mini-batches of prompts, micro-batches of whole groups."""
        cfg, timer = self.cfg, timer or Timer()
        stats_sum: dict[str, list[float]] = defaultdict(list)
        groups, group_sizes = batch["group"], Counter(batch["group"].tolist())
        records = {key: torch.full((len(groups),), float("nan")) for key in ROW_RECORD_KEYS}
        recorded = torch.zeros(len(groups), dtype=torch.bool)
        params = [p for p in self.student.parameters() if p.requires_grad]
        per_mini = cfg.optim.mini_batch_prompts // self.procs.size
        with timer("actor_update"):
            for rows, micro_batches in batching.update_plan(groups, per_mini, cfg.optim.micro_batch_size):
                n_global = self.method.normaliser(groups[rows]) * self.procs.size  # Eq. 6's prompts, or rows
                self.optimizer.zero_grad(set_to_none=True)
                for micro_rows in micro_batches:
                    batching.check_whole_groups(groups[rows][micro_rows], group_sizes)
                    micro = batching.trim({k: v[rows] for k, v in batch.items()}, micro_rows)
                    loss, stats, row_record = self._micro_loss({k: v.to(self.device) for k, v in micro.items()}, n_global)
                    loss.backward()
                    if row_record is not None:
                        for key, value in row_record.items():
                            records[key][rows[micro_rows]] = value
                        recorded[rows[micro_rows]] = True
                    for k, v in stats.items():
                        if isinstance(v, float) and math.isfinite(v):
                            stats_sum[k].append(v)
                self.procs.sum_gradients(params)  # each process's loss is already scaled by the global size
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

    def _micro_loss(self, micro: dict[str, torch.Tensor], n_global: int
                    ) -> tuple[torch.Tensor, dict[str, float], dict[str, torch.Tensor] | None]:
        """Loss of one micro-batch, scaled so micro-batch losses sum to the global batch loss.

        The loss is the method's (scope_lib.methods); the trainer runs the student's forward pass
        and supplies what the method asks for. Also returns the micro-batch's per-row record
        (`Method.row_record`: log-PPLs and the DPAW weights this very loss used; None for KD).
        """
        ids, att = micro["input_ids"], micro["attention_mask"]
        early, self.early = self.early, None  # started in collect() (reward.overlap), for these inputs and weights
        logits = (early.logits if early is not None and early.matches(self.student, ids, att)
                  else batching.student_logits(self.student, ids, att))
        logp = logprobs.token_logprobs_from_logits(logits, ids, temperature=self.logp_temperature)
        sums: dict[str, float] = {}
        if self.method.old_logp_from_update:  # pi_old is this very policy (one update per batch)
            micro = {**micro, "old_logp": logp.detach()}
            with torch.no_grad():
                _, entropy = logprobs.token_logprobs_from_logits(logits.detach(), ids, temperature=self.logp_temperature,
                                                                 with_entropy=True)
            sums = _stat_sums(logp.detach(), entropy, micro.get("teacher_logp"), micro["response_mask"].float())
        batch = MicroBatch(
            micro, logits, logp,
            teacher_logits=lambda: micro["teacher_logits"] if "teacher_logits" in micro else self.teacher.logits(ids, att),
            reference_logp=lambda: (_reference_logp(self.student, self.reference, ids, att, self.logp_temperature)
                                    if self.method.needs_reference else None),
        )
        result = self.method.loss(batch, n_global)
        return result.loss, {**result.stats, **sums}, self.method.row_record(micro, result)

    # --- the loop

    def train(self) -> TrainResult:
        """Train to `cfg.steps`, resuming from the run directory; it must hold no other config's run."""
        # One process trains a run directory (rank 0 holds it for all ranks), and it is checked
        # to hold no other config's run before anything in it is written.
        with storage.claim_run_dir(self.run_dir) if self.procs.is_main else nullcontext():
            check_run_dir(self.run_dir, self.cfg)
            finished = _finished_run(self.run_dir, self.cfg, announce=self.procs.is_main)
            return finished if finished is not None else self._train()

    def _train(self) -> TrainResult:
        cfg = self.cfg
        if self.procs.is_main:
            tmp = self.run_dir / f".config.yaml.{os.getpid()}.tmp"
            save_config(cfg, tmp)
            os.replace(tmp, self.run_dir / "config.yaml")
            (self.run_dir / "done.json").unlink(missing_ok=True)  # not done until save_final says so again
            storage.remove_stale_temporaries(self.run_dir)  # this process holds the directory
        if self.maybe_resume() and self.engine is not None:
            self.engine.push_weights(self.student)  # the engine started from the initial weights
        self.method.start(self)  # KD: its offline corpus
        bar = progress_bar(total=cfg.steps, initial=self.step, desc=f"{cfg.method} {self.world.description}",
                           disable=not cfg.progress or not self.procs.is_main, dynamic_ncols=True)
        tensorboard = _tensorboard_writer(self.run_dir, self.step + 1) if self.procs.is_main else None
        while self.step < cfg.steps:
            timer = Timer()
            with timer("step"):
                batch, stats = self.method.batch(self, self.step, timer)  # rollouts, or KD's offline pairs
                for key, value in self.update(batch, timer).items():
                    stats.setdefault(key, value)  # the rollout-level counts win over per-micro-batch ones
            self.step += 1
            self._record_weights(batch)
            record = {"step": self.step, **stats, **{f"time/{k}": timer.seconds.get(k, 0.0) for k in TIMERS},
                      **{f"time/{name}": timer.seconds.get(key, 0.0) for name, key in timer.workers.items()}}
            self.history.append(record)
            if self.procs.is_main:  # the whole file is replaced, never appended to: no torn line
                storage.write_history(self.run_dir / "metrics.jsonl", self.history)
                _log_scalars(tensorboard, record)
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
        return TrainResult(self.run_dir, self.history, self.save_final())

    def _record_weights(self, batch: dict[str, torch.Tensor]) -> None:
        """Buffer the step's per-rollout record (every process's rollouts, in rank order) on rank 0."""
        if self.rollout_texts is None:
            return  # offline data (KD): no rollouts to record
        if self.row_records is None:
            raise RuntimeError(f"step {self.step}: update() did not record every rollout of the batch collect() returned")
        part = self.procs.gather_rows(_record_part(batch, self.row_records, *self.rollout_texts),
                                      list_keys=("texts", "questions"))
        if self.weight_recorder is not None:
            self.weight_recorder.add_step(self.step, **part)

    def _flush_weight_records(self) -> None:
        if self.weight_recorder is not None:
            self.weight_recorder.flush()

    # --- the run directory: resume, checkpoints, the final model

    def maybe_resume(self) -> bool:
        """Resume from the newest checkpoint that loads (`storage.resume_point`); the history is cut
        to the step resumed from, and so are the weight records. Returns whether one was loaded."""
        state, history = storage.resume_point(self.run_dir, self.cfg.fingerprint())
        if state is not None:
            self.student.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            storage.set_rng_state(state["rng"])
            self.step = state["step"]
        self.history = history
        if self.procs.is_main:
            metrics = self.run_dir / "metrics.jsonl"
            if metrics.exists() or self.history:
                storage.write_history(metrics, self.history)
            weight_records.truncate_records(self.run_dir, self.step)  # the records hold the history's steps only
            self.weight_recorder = weight_records.WeightRecorder(self.run_dir)
            storage.remove_checkpoints_after(self.run_dir, self.step)  # an abandoned attempt's
        return state is not None

    def save_checkpoint(self) -> None:
        if self.procs.is_main:
            storage.save_checkpoint(self.run_dir, {
                "model": self.student.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "rng": storage.rng_state(), "step": self.step,
                "fingerprint": self.cfg.fingerprint(),
            }, self.cfg.keep_checkpoints)

    def save_final(self) -> torch.nn.Module:
        model = self.student
        if self.cfg.model.finetune == "lora" and self.cfg.model.merge_lora_on_save:
            model = model.merge_and_unload()
        if self.procs.is_main:
            model.save_pretrained(self.run_dir / "final")
            self.tokenizer.save_pretrained(self.run_dir / "final")
            sums = integrity.write_sums(self.run_dir / "final")  # checked whenever the final model is loaded
            storage.write_atomic(self.run_dir / "done.json", json.dumps({"steps": self.step, "fingerprint": self.cfg.fingerprint(),
                                                                         "final_sums": sums}))
        return model.eval()


def train(cfg: TrainConfig, world: World | None = None) -> TrainResult:
    """Train (or resume) the run `cfg` describes; returns its history and trained student."""
    return Trainer(cfg, world).train()
