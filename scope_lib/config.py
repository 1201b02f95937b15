"""One typed configuration for every training run, loaded from YAML presets in `configs/`.

Every field carries a one-line reason. Choices are `Literal[...]`, so a typo fails at start
with the key named instead of silently falling back to a default. Presets: `tiny` (CPU
default), `smol`, `paper_distill_1p5b`, `paper_qwen3_1p7b` (DESIGN section 2, Tables 3-4).

    cfg = load_config("configs/tiny.yaml", overrides={"method": "opd", "optim.lr": 1e-4})
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

Method = Literal["scope", "opd", "grpo", "kd"]
Direction = Literal["paper", "reversed", "uniform"]


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
    benchmarks_dir: str | None = None  # local folder with <name>/test.jsonl; None: env or hub


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


@dataclass
class ScopeConfig:
    tau: float = 1.0  # DPAW softmax temperature (Fig. 6 studies 0.5, 1, 2)
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


@dataclass
class KDConfig:
    samples_per_prompt: int = 1  # teacher solutions generated per training prompt, offline
    temperature: float = 0.6  # teacher sampling temperature for the KD corpus
    only_correct: bool = True  # keep only verified teacher solutions


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
    keep_checkpoints: int = 1  # older checkpoints are deleted
    device: str = "auto"  # "auto": cuda if available, else cpu
    progress: bool = True  # tqdm progress bar
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    scope: ScopeConfig = field(default_factory=ScopeConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    kd: KDConfig = field(default_factory=KDConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self, exclude: tuple[str, ...] = ("output_dir", "progress", "checkpoint_every", "keep_checkpoints", "eval")) -> str:
        """Hash of every setting that changes the trained model: the run registry's key.

        Evaluation settings are left out: evaluations are cached separately (scope_lib.runs),
        so one trained run serves every eval protocol.
        """
        data = {k: v for k, v in self.to_dict().items() if k not in exclude}
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


# --- loading and validation ---------------------------------------------------------------


def _check_value(key: str, value: Any, annotation: Any) -> Any:
    """Coerce `value` to `annotation` or raise ValueError naming `key`."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        if value not in args:
            raise ValueError(f"config key {key!r}: {value!r} is not one of {list(args)}")
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check_value(key, value, inner[0])
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ValueError(f"config key {key!r}: expected a mapping, got {value!r}")
        return _from_dict(annotation, value, prefix=f"{key}.")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"config key {key!r}: expected a list, got {value!r}")
        return [_check_value(f"{key}[{i}]", v, args[0]) for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ValueError(f"config key {key!r}: expected {len(args)} values, got {value!r}")
        return tuple(_check_value(f"{key}[{i}]", v, a) for i, (v, a) in enumerate(zip(value, args)))
    if annotation is bool:
        if not isinstance(value, bool):
            raise ValueError(f"config key {key!r}: expected true/false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"config key {key!r}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            # YAML reads 5e-5 as a string; accept numeric strings.
            try:
                return float(value)
            except (TypeError, ValueError):
                raise ValueError(f"config key {key!r}: expected a number, got {value!r}") from None
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ValueError(f"config key {key!r}: expected a string, got {value!r}")
        return value
    return value


def _from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown config key(s) {[prefix + k for k in unknown]}; valid keys: {sorted(prefix + n for n in names)}")
    kwargs = {k: _check_value(prefix + k, v, hints[k]) for k, v in data.items()}
    return cls(**kwargs)


def _validate(cfg: TrainConfig) -> None:
    positive = {
        "steps": cfg.steps, "rollout.group_size": cfg.rollout.group_size, "rollout.max_new_tokens": cfg.rollout.max_new_tokens,
        "optim.prompts_per_step": cfg.optim.prompts_per_step, "optim.mini_batch_prompts": cfg.optim.mini_batch_prompts,
        "optim.micro_batch_size": cfg.optim.micro_batch_size, "eval.k": cfg.eval.k, "rollout.batch_size": cfg.rollout.batch_size,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ValueError(f"config key {key!r} must be > 0, got {value}")
    for key, value in {"optim.lr": cfg.optim.lr, "scope.tau": cfg.scope.tau, "rollout.temperature": cfg.rollout.temperature}.items():
        if not value > 0:
            raise ValueError(f"config key {key!r} must be > 0, got {value}")
    if cfg.optim.prompts_per_step % cfg.optim.mini_batch_prompts:
        raise ValueError(
            f"config key 'optim.mini_batch_prompts' ({cfg.optim.mini_batch_prompts}) must divide "
            f"'optim.prompts_per_step' ({cfg.optim.prompts_per_step})"
        )
    if cfg.method == "grpo" and cfg.rollout.group_size < 2:
        raise ValueError("config key 'rollout.group_size' must be >= 2 for method 'grpo' (group-normalised advantages)")


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    *parents, last = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"config key {dotted!r}: {part!r} is not a section")
    node[last] = value


def config_from_dict(data: dict[str, Any], overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Build and validate a TrainConfig from nested dicts plus dotted-key overrides."""
    data = json.loads(json.dumps(data or {}))  # deep copy, plain types
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value)
    cfg = _from_dict(TrainConfig, data)
    _validate(cfg)
    return cfg


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Load a YAML preset; `overrides` maps dotted keys ("optim.lr") to values."""
    path = Path(path)
    if not path.exists():
        presets = Path(__file__).resolve().parents[1] / "configs" / f"{path}.yaml"
        if presets.exists():
            path = presets
        else:
            raise ValueError(f"config file {str(path)!r} not found (nor a preset of that name in configs/)")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {str(path)!r} must hold a mapping at top level")
    return config_from_dict(data, overrides)


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(json.loads(json.dumps(cfg.to_dict())), sort_keys=False))
