"""The schema of a training run: `TrainConfig` and its sections, one dataclass each, every field
with a one-line reason. Choices are `Literal[...]`. Loading, validation and the allowed ranges
are scope_lib/config.py, which is where callers import these names from.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal, Union

Method = Literal["scope", "opd", "grpo", "kd", "hybrid"]
Direction = Literal["paper", "reversed", "uniform", "ones"]  # scope_lib.weights.DIRECTIONS


@dataclass
class ModelConfig:
    student: str = "tiny"  # "tiny" (the project's tiny world), "smol", or a HF path/repo id
    teacher: str = "tiny"  # same forms; must share the student's vocabulary
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # CPU runs want float32
    finetune: Literal["full", "lora"] = "full"  # LoRA for large students, full for tiny ones
    lora_rank: int = 16  # LoRA r; only used when finetune == "lora"
    lora_alpha: int = 32  # LoRA scaling numerator (alpha / r)
    lora_dropout: float = 0.0  # on-policy ratios assume a deterministic forward
    lora_target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    merge_lora_on_save: bool = True  # final model loads in transformers/vLLM without peft


@dataclass
class DataConfig:
    train: str = "tiny"  # training prompt pool: "tiny" (synthetic) or a JSONL path
    eval_sets: list[str] = field(default_factory=lambda: ["tiny"])  # "tiny" = all tiny tiers, or benchmark names
    eval_problems_per_set: int = 100  # held-out problems per eval set (0 = all)
    benchmarks_dir: str | None = None  # folder with <name>/test.jsonl; None: env SCOPE_BENCHMARKS_DIR, else the hub


@dataclass
class RolloutConfig:
    engine: Literal["hf", "vllm"] = "hf"  # transformers generate on CPU; vLLM on GPUs
    group_size: int = 8  # G rollouts per prompt (Table 3: 8; OPD baseline uses 1)
    temperature: float = 1.0  # rollout sampling temperature (paper: 0.6)
    top_p: float = 1.0  # nucleus sampling for rollouts
    top_k: int = 0  # 0 disables top-k for rollouts
    max_new_tokens: int = 96  # completion budget (paper: 12288)
    max_prompt_tokens: int = 4096  # longer prompts are rejected, not silently cut (paper: 4096)
    repetition_penalty: float = 1.0  # 1.0 disables it
    batch_size: int = 256  # sequences per generate call
    vllm_gpu_memory_utilization: float = 0.4  # share of the GPU vLLM may take beside the actor
    # The temperature the student's training log-probs (pi_theta, pi_old, the reference, entropies)
    # divide logits by: "sampling" (rollout.temperature, as the authors' verl actor does) or a
    # number. 1.0 (the default) is what the trainer computed before this key existed.
    logprob_temperature: Union[Literal["sampling"], float] = 1.0
    vllm_enforce_eager: bool = False  # vLLM without torch.compile/graphs: starts in ~33 s, not 100-250 s (2 CPU cores)


@dataclass
class ScopeConfig:
    tau: float = 1.0  # DPAW softmax temperature (Fig. 6 studies 0.5, 1, 2); Eq. 5's, and Eq. 4's unless tau_student is set
    tau_student: float | None = None  # Eq. 4's temperature alone (student path); None: the same as tau
    student_direction: Direction = "paper"  # Eq. 4; "reversed" is the released code's sign
    teacher_direction: Direction = "paper"  # Eq. 5
    normalize: Literal["sum", "mean"] = "sum"  # paper: per-path sum 1; released code: mean 1
    incorrect_path: Literal["paper", "clipped_ppo"] = "paper"  # Eq. 3, or the released PPO-clip form
    clip_eps: float = 0.2  # PPO clip for the clipped incorrect path
    kl_estimator: Literal["sampled", "exact"] = "sampled"  # paper: sampled-token log-ratio; exact: full-vocab KL (tiny vocab only)


@dataclass
class GRPOConfig:
    clip_eps: float = 0.2  # Table 3
    beta: float = 1e-4  # k3 KL to the reference policy, Table 3


@dataclass
class HybridConfig:
    # method "hybrid" (KDRL-style, docs/DESIGN.md §2.9): per-token advantage = GRPO's group
    # advantage + beta * OPD's teacher-student advantage, on every rollout
    beta: float = 1.0  # weight of the teacher term; 0 is GRPO exactly


@dataclass
class OptimConfig:
    lr: float = 5e-5  # Table 3: constant 5e-5
    weight_decay: float = 0.01  # Table 3
    adam_eps: float = 1e-8  # raise (e.g. 1e-4) to stop Adam turning near-zero grads into lr-sized steps
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW moments
    warmup_steps: int = 0  # linear warm-up, then constant (Table 3 uses a constant lr)
    grad_clip: float = 1.0  # max global grad norm
    prompts_per_step: int = 16  # prompts per rollout batch (paper: 256)
    mini_batch_prompts: int = 16  # prompts per optimizer update (paper: 256, one update per batch)
    micro_batch_size: int = 64  # sequences per forward/backward (gradient accumulation)
    # pi_old's own no-grad pass before the update: "always" (verl's default; Table 8's
    # old_logprob) or "when_needed": with one update per rollout batch (mini_batch_prompts >=
    # prompts_per_step) pi_old is the current policy, so it is taken, detached, from the
    # update's forward pass: same loss and gradients up to float rounding, a forward pass fewer.
    old_logp_pass: Literal["always", "when_needed"] = "always"


@dataclass
class TeacherConfig:
    backend: Literal["local", "vllm_server"] = "local"  # in-process model, or an OpenAI-compatible server
    server_url: str = "http://127.0.0.1:8000"  # vllm_server backend: base URL
    server_model: str | None = None  # model name the server serves (default: model.teacher)
    request_batch_size: int = 32  # sequences per scoring request
    overlap: bool = False  # score each finished generation batch on a worker thread while generation goes on (same results)
    logprob_temperature: float = 1.0  # the teacher's log-probs divide logits by it (authors' code: 1, vLLM prompt_logprobs)


@dataclass
class KDConfig:
    samples_per_prompt: int = 1  # teacher solutions generated per training prompt, offline
    temperature: float = 0.6  # teacher sampling temperature for the KD corpus
    only_correct: bool = True  # keep only verified teacher solutions


@dataclass
class RewardConfig:
    # Which verifier gives the binary reward r_i and grades evaluation samples
    # (scope_lib.grading): "math" compares the last \boxed{} to the gold answer; "code" runs the
    # response's last ```python block in the sandbox against the problem's hidden tests.
    verifier: Literal["math", "code"] = "math"
    code_timeout_s: float = 0.0  # seconds per test case (HumanEval: per check); 0: each benchmark's own (3 s, 6 s)
    code_memory_mb: int = 1024  # address space of each sandboxed process (scope_lib.grading.sandbox.Limits)
    code_max_processes: int = 16  # processes and threads of one sandboxed program together
    # The program: "code_block" takes the fenced block that defines the problem's entry point
    # (the last such block), else the last block; "raw" takes the whole response.
    code_extract: Literal["code_block", "raw"] = "code_block"
    overlap: bool = False  # grade each finished generation batch on the pipeline's worker thread while generation goes on (same results)


@dataclass
class EvalConfig:
    k: int = 8  # samples per problem (paper: 32)
    temperature: float = 0.6  # Table 4
    top_p: float = 1.0  # Table 4: 0.95 at paper scale
    top_k: int = 0  # Table 4: 20 at paper scale
    max_new_tokens: int = 96  # Table 4: 32768 at paper scale
    repetition_penalty: float = 1.0  # Table 4: 1.08 for Qwen3-1.7B-Base, 1.0 otherwise
    batch_size: int = 256  # sequences per generate call
    every_steps: int = 0  # evaluate during training every N steps (0: only at the end)
    seed: int = 1234  # fixed so methods are compared on the same draws


@dataclass
class TrainConfig:
    method: Method = "scope"  # which objective: SCOPE (Eq. 6) or a Table 3 baseline
    seed: int = 0  # model init of LoRA, data order, sampling
    steps: int = 60  # optimizer-batch steps (one rollout batch each)
    output_dir: str = "runs/tiny"  # run directory: metrics.jsonl, checkpoints, final model
    checkpoint_every: int = 20  # steps between resumable checkpoints (0: never)
    keep_checkpoints: int = 1  # newest kept; older ones are deleted, but the trainer always keeps at least two
    device: str = "auto"  # "auto": cuda if available, else cpu
    progress: bool = True  # tqdm progress bar
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    scope: ScopeConfig = field(default_factory=ScopeConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    hybrid: HybridConfig = field(default_factory=HybridConfig)
    kd: KDConfig = field(default_factory=KDConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self, exclude: tuple[str, ...] = (
            "output_dir", "progress", "checkpoint_every", "keep_checkpoints", "eval",
            "data.benchmarks_dir",  # where eval files live: evaluation only
            "teacher.overlap",  # when the teacher scores, not what: the same model
            "reward.overlap",  # when rollouts are graded, not how: the same rewards
            "rollout.vllm_enforce_eager",  # how vLLM runs the same model (compiled or eager), not what it samples
    )) -> str:
        """Hash of every setting that changes the trained model: the run registry's key.

        `exclude` names keys, dotted for nested ones, that do not: evaluation settings are
        left out because evaluations are cached separately (scope_lib.experiments.registry), so one trained run
        serves every eval protocol. A key of `ADDED_FIELDS` is left out while it holds the value
        that reproduces the code before it existed, so the runs trained then keep their keys.
        """
        data = without_neutral_additions(self.to_dict())
        for key in exclude:
            *parents, leaf = key.split(".")
            node = data
            for parent in parents:
                node = node.get(parent, {})
            node.pop(leaf, None)
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


# Settings added after runs were registered, each with the value that trains exactly what the
# code did before the setting existed. At that value a setting is left out of the fingerprint
# (and of runs.config_differences), so adding it changed no run key; any other value counts.
NEUTRAL_WHEN_ABSENT: dict[str, Any] = {
    "scope.tau_student": None,  # None: Eq. 4 uses scope.tau, as it always did
    "hybrid.beta": 1.0,  # read by method "hybrid" only, which is newer than the setting
    "rollout.logprob_temperature": 1.0,  # the student's training log-probs at temperature 1, as before
    "teacher.logprob_temperature": 1.0,  # the teacher's, likewise
}
# The same settings under the name the resume check reads them by (scope_lib.experiments.registry.config_differences):
# a config.yaml written before a setting existed lacks it, and the missing key reads as its neutral value.
ADDED_FIELDS = NEUTRAL_WHEN_ABSENT


def without_neutral_additions(data: dict[str, Any]) -> dict[str, Any]:
    """`data` (a `TrainConfig.to_dict()`, or a saved config.yaml) without the `NEUTRAL_WHEN_ABSENT`
    settings that hold their neutral value, and without a section that this leaves empty. A copy."""
    data = copy.deepcopy(data)
    for dotted, neutral in NEUTRAL_WHEN_ABSENT.items():
        *parents, leaf = dotted.split(".")
        path = [data]  # the sections from the top down to the one holding `leaf`
        for parent in parents:
            path.append(path[-1].get(parent) if isinstance(path[-1], dict) else None)
        if not isinstance(path[-1], dict) or leaf not in path[-1] or path[-1][leaf] != neutral:
            continue
        del path[-1][leaf]
        for depth in range(len(parents), 0, -1):  # drop the sections this emptied, innermost first
            if path[depth]:
                break
            del path[depth - 1][parents[depth - 1]]
    return data


def logprob_temperatures(cfg: TrainConfig) -> tuple[float, float]:
    """(student, teacher): the temperatures the trainer's log-probs divide logits by."""
    student = cfg.rollout.logprob_temperature
    return float(cfg.rollout.temperature if student == "sampling" else student), float(cfg.teacher.logprob_temperature)

