"""One typed configuration for every training run, loaded from YAML presets in `configs/`.

Every field carries a one-line reason. Choices are `Literal[...]`, so a typo fails at start
with the key named instead of silently falling back to a default. Presets: `tiny` (CPU
default), `smol`, `paper_distill_1p5b`, `paper_qwen3_1p7b` (docs/DESIGN.md §6, Tables 3-4).

Validation happens at load, before anything is built: every number has an allowed range
(`RANGES`), floats must be finite, a bool is never a number, strings are non-empty, the
device must exist on this machine, and a few relations between fields hold. Errors are one
line naming the file (or `--key` override), the key and what is allowed. YAML is read with
a SafeLoader (no `!!python/...` tags), at most `MAX_CONFIG_BYTES` of UTF-8 and at most
`MAX_CONFIG_VALUES` values after alias expansion; duplicate keys are refused.

    cfg = load_config("configs/tiny.yaml", overrides={"method": "opd", "optim.lr": 1e-4})
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import re
import types
import typing
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

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
    code_memory_mb: int = 1024  # address space of each sandboxed process (scope_lib.sandbox.Limits)
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
        left out because evaluations are cached separately (scope_lib.runs), so one trained run
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
# The same settings under the name the resume check reads them by (scope_lib.runs.config_differences):
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


# --- allowed values -----------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """An allowed range of a number; printed the way errors state it (">= 1", "(0, 1]")."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        def text(x: float) -> str:  # 4294967295, not 4.29497e+09; 0.5, not 0.5000
            return str(int(x)) if float(x).is_integer() else repr(x)

        if self.high == math.inf:
            return f"{'>' if self.low_open else '>='} {text(self.low)}"
        return f"{'(' if self.low_open else '['}{text(self.low)}, {text(self.high)}{')' if self.high_open else ']'}"


def _at_least(n: int) -> Interval:
    return Interval(low=n)


_POSITIVE = Interval(low=0, low_open=True)
_NON_NEGATIVE = Interval(low=0)
_PROBABILITY_MASS = Interval(0, 1, low_open=True)  # top_p, a share of GPU memory: 0 keeps nothing
_OPEN_UNIT = Interval(0, 1, low_open=True, high_open=True)  # PPO clip: 0 freezes, >= 1 lets rho reach 0
_SEED = Interval(0, 2**32 - 1)  # numpy takes 32-bit seeds; step seeds are derived by multiplying it

# The allowed values of every numeric field (every float is also finite). One table, so that a
# test can check that no field is missed; the reason for each bound is beside it.
RANGES: dict[str, Interval] = {
    "seed": _SEED,
    "steps": _at_least(1),
    "checkpoint_every": _at_least(0),  # 0: never
    "keep_checkpoints": _at_least(1),  # the checkpoint being resumed from must survive
    "model.lora_rank": _at_least(1),
    "model.lora_alpha": _at_least(1),
    "model.lora_dropout": Interval(0, 1, high_open=True),  # a probability; 1 drops everything
    "data.eval_problems_per_set": _at_least(0),  # 0: all
    "rollout.group_size": Interval(1, 1024),  # rows per prompt; each one is generated and kept in memory
    "rollout.temperature": _POSITIVE,  # log-probs divide by it; greedy rollouts are not samples of the policy
    "rollout.top_p": _PROBABILITY_MASS,
    "rollout.top_k": _at_least(0),  # 0: off
    "rollout.max_new_tokens": _at_least(1),
    "rollout.max_prompt_tokens": _at_least(1),
    "rollout.repetition_penalty": _POSITIVE,  # logits are divided or multiplied by it
    "rollout.batch_size": _at_least(1),
    "rollout.vllm_gpu_memory_utilization": _PROBABILITY_MASS,
    "scope.tau": _POSITIVE,
    "scope.tau_student": _POSITIVE,  # or None (the same as scope.tau); 0 would divide by zero
    "scope.clip_eps": _OPEN_UNIT,
    "grpo.clip_eps": _OPEN_UNIT,
    "grpo.beta": _NON_NEGATIVE,  # a negative KL coefficient rewards leaving the reference
    "hybrid.beta": _NON_NEGATIVE,  # a negative one pushes the student away from the teacher
    "kd.samples_per_prompt": _at_least(1),
    "kd.temperature": _NON_NEGATIVE,  # 0: greedy teacher solutions
    "optim.lr": Interval(0, 1, low_open=True),  # Adam moves each weight by about lr per step
    "optim.weight_decay": _NON_NEGATIVE,  # with lr: see the lr * weight_decay check below
    "optim.adam_eps": Interval(0, 1, low_open=True),  # 0 divides by zero on a parameter without gradient
    "optim.betas": Interval(0, 1, high_open=True),  # each; 1 never forgets the first moments
    "optim.warmup_steps": _at_least(0),  # a negative one gives a negative lr: gradient ascent
    "optim.grad_clip": _NON_NEGATIVE,  # 0: no clipping
    "optim.prompts_per_step": _at_least(1),
    "optim.mini_batch_prompts": _at_least(1),
    "optim.micro_batch_size": _at_least(1),
    "teacher.request_batch_size": _at_least(1),
    "teacher.logprob_temperature": _POSITIVE,  # logits are divided by it
    "eval.k": Interval(1, 1024),  # samples per problem, each kept with its text (paper: 32); 10**30 was a MemoryError
    "eval.temperature": _NON_NEGATIVE,  # 0: greedy decoding
    "eval.top_p": _PROBABILITY_MASS,
    "eval.top_k": _at_least(0),
    "eval.max_new_tokens": _at_least(1),
    "eval.repetition_penalty": _POSITIVE,
    "eval.batch_size": _at_least(1),
    "eval.every_steps": _at_least(0),  # 0: only at the end
    "eval.seed": _SEED,
    "reward.code_timeout_s": Interval(0, 600),  # 0: each benchmark's own; a 10-minute case would stall a step
    "reward.code_memory_mb": _at_least(64),  # the sandboxed interpreter needs ~24 MB to start (measured)
    "reward.code_max_processes": _at_least(1),
}

# Devices the trainer knows how to place a model on; "auto" picks cuda when there is one.
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")

# Bounds on what a config file may make the loader do. Presets are ~2 KB and ~90 values; a
# YAML alias bomb is ~1 KB that expands to 10**9 values, so the expanded count is what is bounded.
MAX_CONFIG_BYTES = 128 * 1024
MAX_CONFIG_VALUES = 10_000
_MAX_DEPTH = 64


class ConfigError(ValueError):
    """A config that must not be trained: the message names where (file or override), the key
    and what is allowed. A ValueError, so callers that catch those keep working."""


class _Invalid(Exception):
    """A bad value found while checking `key`; config_from_dict adds where it came from."""

    def __init__(self, key: str, detail: str):
        super().__init__(key, detail)
        self.key, self.detail = key, detail


# --- plain values -------------------------------------------------------------------------


def _plain_copy(value: Any, key: str, budget: list[int], depth: int = 0) -> Any:
    """A deep copy of plain YAML/JSON values, refusing anything else, cycles and huge expansions.

    The copy expands shared references (YAML aliases), so `budget` (a one-item countdown of
    values left) bounds the work before it is done, not after.
    """
    budget[0] -= 1
    if budget[0] < 0:
        raise _Invalid(key.split("[")[0] or "<top level>", f"expands to more than {MAX_CONFIG_VALUES} values (a YAML alias bomb?); "
                            "a config holds a few hundred at most")
    if depth > _MAX_DEPTH:
        raise _Invalid(key, f"nested more than {_MAX_DEPTH} levels deep (recursive YAML aliases?)")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise _Invalid(key or "<top level>", f"key {k!r} is not a string")
            out[k] = _plain_copy(v, f"{key}.{k}" if key else k, budget, depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [_plain_copy(v, f"{key}[{i}]", budget, depth + 1) for i, v in enumerate(value)]
    # YAML turns 2024-01-01 into a date and !!binary into bytes: neither is a config value.
    raise _Invalid(key, f"unsupported value {value!r} of type {type(value).__name__} (YAML reads some bare "
                        "text as dates; quote it)")


# --- types --------------------------------------------------------------------------------


def _describe(value: Any) -> str:
    return f"{str(value).lower()} (a boolean)" if isinstance(value, bool) else repr(value)


def _check_value(key: str, value: Any, annotation: Any) -> Any:
    """Coerce `value` to `annotation` or raise _Invalid naming `key`."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        # `True in ["a", 1]`-style equality tricks are not a concern: every Literal here is of strings.
        if not isinstance(value, str) or value not in args:
            raise _Invalid(key, f"expected one of {list(args)}, got {_describe(value)}")
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) > 1:  # e.g. Literal["sampling"] | float: the first option that takes the value
            for option in inner:
                try:
                    return _check_value(key, value, option)
                except _Invalid:
                    pass
            choices = " or ".join(repr(a) if typing.get_origin(a) is not Literal else
                                  " or ".join(repr(x) for x in typing.get_args(a)) for a in inner)
            raise _Invalid(key, f"expected {choices.replace(repr(float), 'a number')}, got {_describe(value)}")
        return _check_value(key, value, inner[0])
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise _Invalid(key, f"expected a mapping (a config section), got {_describe(value)}")
        return _from_dict(annotation, value, prefix=f"{key}.")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise _Invalid(key, f"expected a list, got {_describe(value)}")
        return [_check_value(f"{key}[{i}]", v, args[0]) for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise _Invalid(key, f"expected a list of {len(args)} values, got {_describe(value)}")
        return tuple(_check_value(f"{key}[{i}]", v, a) for i, (v, a) in enumerate(zip(value, args)))
    if annotation is bool:
        if not isinstance(value, bool):
            raise _Invalid(key, f"expected true/false, got {_describe(value)}")
        return value
    if annotation is int:
        # bool is an int in Python, not in a config: `--eval.k true` must not mean k = 1.
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(key, f"expected an integer, got {_describe(value)}")
        return value
    if annotation is float:
        if isinstance(value, bool):  # `--optim.lr true` became lr 1.0
            raise _Invalid(key, f"expected a number, got {_describe(value)}")
        try:
            # YAML 1.1 reads 5e-5 (no dot) as a string, so numeric strings are accepted.
            number = float(value) if isinstance(value, (int, float, str)) else None
        except (ValueError, OverflowError):
            number = None
        if number is None:
            raise _Invalid(key, f"expected a number, got {_describe(value)}")
        if not math.isfinite(number):
            raise _Invalid(key, f"expected a finite number, got {_describe(value)}")
        return number
    if annotation is str:
        if not isinstance(value, str):
            raise _Invalid(key, f"expected a string, got {_describe(value)}")
        if not value.strip():
            # output_dir "" would be the working directory; an empty model name loads nothing.
            raise _Invalid(key, f"expected a non-empty string, got {value!r}")
        if "\x00" in value or any("\ud800" <= c <= "\udfff" for c in value):
            # a NUL ends a path at the OS; a lone surrogate cannot be encoded to a file name or UTF-8
            raise _Invalid(key, f"contains a NUL or a lone surrogate character: {value!r}")
        return value
    raise TypeError(f"config key {key!r}: no check for type {annotation!r}")  # a new field type: add it here


def _from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise _Invalid(prefix + unknown[0], f"unknown key (unknown here: {[prefix + k for k in unknown]}); "
                                           f"valid keys: {sorted(prefix + n for n in names)}")
    kwargs = {k: _check_value(prefix + k, v, hints[k]) for k, v in data.items()}
    return cls(**kwargs)


# --- ranges and relations between fields -------------------------------------------------


def _get(cfg: TrainConfig, dotted: str) -> Any:
    value: Any = cfg
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def _check_device(device: str) -> None:
    if not _DEVICE.fullmatch(device):
        raise _Invalid("device", f"expected 'auto', 'cpu', 'mps', 'cuda' or 'cuda:N', got {device!r}")
    if device.startswith("cuda"):
        import torch  # only here: loading a config should not need torch otherwise

        if not torch.cuda.is_available():
            raise _Invalid("device", f"{device!r} was asked for but CUDA is not available on this machine "
                                     "(use 'auto' or 'cpu')")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise _Invalid("device", f"{device!r}: this machine has {torch.cuda.device_count()} cuda:N GPU(s), "
                                     f"numbered from 0")
    elif device == "mps":
        import torch

        if not torch.backends.mps.is_available():
            raise _Invalid("device", "'mps' was asked for but is not available on this machine (use 'auto' or 'cpu')")


def _validate(cfg: TrainConfig) -> None:
    for key, allowed in RANGES.items():
        value = _get(cfg, key)
        if value is None:  # an optional setting left unset (scope.tau_student)
            continue
        for index, item in enumerate(value) if isinstance(value, tuple) else [(None, value)]:
            if item not in allowed:
                name = key if index is None else f"{key}[{index}]"
                raise _Invalid(name, f"must be {allowed}, got {item!r}")
    _check_device(cfg.device)
    student_t = cfg.rollout.logprob_temperature
    if student_t != "sampling" and not (isinstance(student_t, float) and math.isfinite(student_t) and student_t > 0):
        raise _Invalid("rollout.logprob_temperature", f"must be 'sampling' or a positive finite number, got {student_t!r}")
    if cfg.scope.kl_estimator == "exact" and logprob_temperatures(cfg) != (1.0, 1.0):
        raise _Invalid("scope.kl_estimator", "'exact' computes the full-vocabulary KL at temperature 1: it needs "
                                             "rollout.logprob_temperature and teacher.logprob_temperature to come to 1 "
                                             f"(they come to {logprob_temperatures(cfg)})")
    if cfg.teacher.backend == "vllm_server" and cfg.teacher.logprob_temperature != 1.0:
        raise _Invalid("teacher.logprob_temperature", "a vLLM server's prompt log-probs are of the raw logits "
                                                      "(temperature 1); other values need teacher.backend 'local'")
    if cfg.reward.overlap and cfg.rollout.engine != "hf":
        raise _Invalid("reward.overlap", f"needs rollout.engine 'hf' (grading overlaps the trainer's own generation "
                                         f"batches), got {cfg.rollout.engine!r}")
    optim = cfg.optim
    if optim.lr * optim.weight_decay >= 1:
        raise _Invalid("optim.weight_decay", f"lr * weight_decay must be < 1, got {optim.lr} * {optim.weight_decay} "
                                             "(AdamW multiplies each weight by 1 - lr * weight_decay per step)")
    for key in ("rollout.temperature", "eval.temperature", "kd.temperature"):
        value = _get(cfg, key)
        if 0 < value < MIN_SAMPLING_TEMPERATURE:
            greedy = "" if key == "rollout.temperature" else " (0 means greedy decoding)"
            raise _Invalid(key, f"{value!r} is greedy in effect (logits divided by it overflow the sampler); "
                                f"use >= {MIN_SAMPLING_TEMPERATURE}{greedy}")
    rows = optim.prompts_per_step * cfg.rollout.group_size
    if rows > MAX_ROWS_PER_STEP:
        raise _Invalid("optim.prompts_per_step", f"{optim.prompts_per_step} prompts x rollout.group_size "
                                                 f"{cfg.rollout.group_size} = {rows} rollouts a step, over {MAX_ROWS_PER_STEP}")
    for key in ("model.student", "model.teacher"):
        _check_world_name(key, _get(cfg, key))
    if cfg.teacher.backend == "vllm_server" and cfg.scope.kl_estimator == "exact":
        raise _Invalid("teacher.backend", "'vllm_server' returns sampled-token log-probs only; scope.kl_estimator "
                                          "'exact' needs the teacher's full logits: use teacher.backend 'local'")
    if cfg.teacher.backend == "vllm_server" and cfg.method == "kd":
        raise _Invalid("teacher.backend", "method 'kd' generates its corpus with the in-process teacher: use 'local'")
    train = cfg.data.train
    if train.endswith(".jsonl") and not Path(train).is_file():
        raise _Invalid("data.train", f"{train!r}: no such file (a .jsonl of question/answer rows)")
    if optim.prompts_per_step % optim.mini_batch_prompts:
        raise _Invalid("optim.mini_batch_prompts", f"({optim.mini_batch_prompts}) must divide "
                                                   f"'optim.prompts_per_step' ({optim.prompts_per_step})")
    if cfg.method in ("grpo", "hybrid") and cfg.rollout.group_size < 2:
        raise _Invalid("rollout.group_size", f"must be >= 2 for method {cfg.method!r} (group-normalised advantages)")
    if cfg.model.finetune == "lora" and not cfg.model.lora_target_modules:
        raise _Invalid("model.lora_target_modules", "must name at least one module for LoRA (model.finetune is 'lora')")
    if cfg.teacher.overlap and cfg.rollout.engine != "hf":
        raise _Invalid("teacher.overlap", f"needs rollout.engine 'hf' (scoring overlaps the trainer's own generation "
                                          f"batches), got {cfg.rollout.engine!r}")
    try:
        url = urllib.parse.urlsplit(cfg.teacher.server_url)
        url.port  # noqa: B018 - raises ValueError for a port that is not a number in 0-65535
    except ValueError as error:
        raise _Invalid("teacher.server_url", f"not a URL ({error}): expected http://HOST:PORT, got "
                                             f"{cfg.teacher.server_url!r}") from None
    if url.scheme not in ("http", "https") or not url.hostname:
        raise _Invalid("teacher.server_url", f"expected an http:// or https:// URL with a host, got "
                                             f"{cfg.teacher.server_url!r}")
    _check_eval_sets(cfg.data.eval_sets)
    _check_verifier(cfg)


def require_rollout_engine(cfg: TrainConfig) -> None:
    """ConfigError unless this environment can run `cfg.rollout.engine` (vLLM installed for 'vllm').

    Not part of loading: a paper preset (engine 'vllm') still loads anywhere to be read or
    fingerprinted. The training command and the Trainer call it before building anything.
    """
    if cfg.rollout.engine == "vllm":
        from scope_lib.vllm_engine import VLLM_INSTALL, vllm_installed  # finds vLLM without importing it

        if not vllm_installed():
            raise ConfigError(f"config key 'rollout.engine': 'vllm' needs vLLM, which is not installed in this "
                              f"environment: run {VLLM_INSTALL} (or pip install -e .[vllm] on a GPU machine)")


def _check_eval_sets(names: list[str]) -> None:
    from scope_lib.benchmarks import BENCHMARKS  # a light import: no models, no hub

    from scope_lib.code_benchmarks import CODE_BENCHMARKS

    allowed = ("tiny", "tiny_validation", *BENCHMARKS, *CODE_BENCHMARKS)  # tiny_validation: the lr-selection split
    for index, name in enumerate(names):
        if name not in allowed:
            raise _Invalid(f"data.eval_sets[{index}]", f"expected one of {list(allowed)}, got {name!r}")
        if name in names[:index]:
            raise _Invalid(f"data.eval_sets[{index}]", f"{name!r} is listed twice")


TINY_CODE_NAMES = ("tiny_code", "tiny_code_smoke")  # tiny worlds on the code task (scope_lib.code_task)
# The worlds scope_lib.world.load_world builds by name; any other model name is a local model
# folder or a hub repo id "owner/name".
KNOWN_WORLDS = ("tiny", "tiny_smoke", "tiny_routes", "tiny_routes_smoke", *TINY_CODE_NAMES, "smol")
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")

# Sampling below this temperature is greedy in effect; 0 (eval, kd) means greedy on purpose.
MIN_SAMPLING_TEMPERATURE = 0.05
MAX_ROWS_PER_STEP = 1 << 16  # rollouts a step (prompts x group size): each is generated and held in memory


def _check_world_name(key: str, name: str) -> None:
    if name in KNOWN_WORLDS or _REPO_ID.fullmatch(name) or Path(name).is_dir():
        return
    raise _Invalid(key, f"unknown world {name!r}: expected one of {list(KNOWN_WORLDS)}, a local model folder "
                        "or a hub repo id 'owner/name'")


def _check_verifier(cfg: TrainConfig) -> None:
    """The verifier fits the data: code eval sets, TACO and the tiny code world need "code", math
    sets and the other tiny worlds "math"."""
    from scope_lib.code_benchmarks import CODE_BENCHMARKS, HUB

    verifier, taco = cfg.reward.verifier, HUB["taco"][0]
    tiny_code = cfg.model.student in TINY_CODE_NAMES  # the tiny code world: its "tiny" sets are code problems
    for index, name in enumerate(cfg.data.eval_sets):
        needed = "code" if name in CODE_BENCHMARKS or (tiny_code and name.startswith("tiny")) else "math"
        if needed != verifier:
            raise _Invalid(f"data.eval_sets[{index}]", f"{name!r} is a {needed} set, but 'reward.verifier' is "
                                                       f"{verifier!r}; one verifier grades a run (set it to {needed!r})")
    train = cfg.data.train
    if tiny_code and train == "tiny":
        if verifier != "code":
            raise _Invalid("reward.verifier", f"model.student {cfg.model.student!r} writes programs: set it to 'code'")
        return
    if verifier == "code" and train != taco and not train.endswith(".jsonl"):
        raise _Invalid("data.train", f"'reward.verifier' 'code' trains on {taco!r} or a .jsonl file of TACO-style rows "
                                     f"(scope_lib.code_benchmarks.load_taco_train), got {train!r}")
    if verifier == "math" and train == taco:
        raise _Invalid("data.train", f"{taco!r} is a code corpus; set 'reward.verifier' to 'code'")


# --- loading ------------------------------------------------------------------------------


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    *parents, last = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise _Invalid(dotted, f"{part!r} is not a section")
    node[last] = value


def _from_override(key: str, overrides: dict[str, Any]) -> str | None:
    """The override that set `key` (or a section or list holding it), if one did."""
    for dotted in overrides:
        if key == dotted or key.startswith((dotted + ".", dotted + "[")):
            return dotted
    return None


def config_from_dict(data: dict[str, Any], overrides: dict[str, Any] | None = None, *,
                     source: str | None = None) -> TrainConfig:
    """Build and validate a TrainConfig from nested dicts plus dotted-key overrides.

    `source` names where `data` came from (a file) in errors; a value set by an override is
    named as `--key`. Raises ConfigError.
    """
    overrides = overrides or {}
    budget = [MAX_CONFIG_VALUES]
    try:
        try:
            # A plain deep copy (never the caller's dicts), bounded: shared references expand here.
            plain = _plain_copy(data or {}, "", budget)
            if not isinstance(plain, dict):
                raise _Invalid("<top level>", f"expected a mapping, got {_describe(plain)}")
            for dotted, value in overrides.items():
                if not isinstance(dotted, str) or not dotted:
                    raise _Invalid(str(dotted), "override keys must be dotted key names such as 'optim.lr'")
                _set_dotted(plain, dotted, _plain_copy(value, dotted, budget))
            cfg = _from_dict(TrainConfig, plain)
            _validate(cfg)
        except RecursionError:
            raise _Invalid("<top level>", "nested too deeply") from None
    except _Invalid as bad:
        override = _from_override(bad.key, overrides)
        where = f"override --{override}" if override else (f"config file {source}" if source else "config")
        raise ConfigError(f"{where}: config key {bad.key!r}: {bad.detail}") from None
    return cfg


class _BoundedSafeLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses duplicate keys and bounds alias expansion before constructing.

    Construction shares aliased values, but merge keys (`<<: [*a, *a]`) copy entries, so a
    small file can still expand exponentially there: the composed node graph is measured first.
    """

    def get_single_node(self):
        node = super().get_single_node()
        if node is not None:
            _count_nodes(node, {}, set())
        return node

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: set = set()
            for key_node, _ in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                    if key_node.value in seen:
                        raise _YamlRefused(f"line {key_node.start_mark.line + 1}: key {key_node.value!r} appears twice")
                    seen.add(key_node.value)
        return super().construct_mapping(node, deep)


class _YamlRefused(Exception):
    pass


def _count_nodes(node, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """Values `node` expands to, aliases counted at each use; memoised, so linear in the file."""
    if id(node) in sizes:
        return sizes[id(node)]
    if id(node) in open_nodes:
        raise _YamlRefused(f"line {node.start_mark.line + 1}: a recursive alias (a value that contains itself)")
    if len(open_nodes) > _MAX_DEPTH:
        raise _YamlRefused(f"line {node.start_mark.line + 1}: values nested more than {_MAX_DEPTH} levels deep")
    open_nodes.add(id(node))
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_count_nodes(child, sizes, open_nodes) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_count_nodes(k, sizes, open_nodes) + _count_nodes(v, sizes, open_nodes) for k, v in node.value)
    open_nodes.discard(id(node))
    if size > MAX_CONFIG_VALUES:
        raise _YamlRefused(f"line {node.start_mark.line + 1}: expands to more than {MAX_CONFIG_VALUES} values "
                           "(a YAML alias bomb?); a config holds a few hundred at most")
    sizes[id(node)] = size
    return size


def _safe_yaml(text: str) -> Any:
    """Parse YAML text into plain values; raises _YamlRefused with a one-line reason."""
    try:
        return yaml.load(text, Loader=_BoundedSafeLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.constructor.ConstructorError as error:
        # !!python/object and friends: SafeLoader refuses them; say so in one line.
        line = error.problem_mark.line + 1 if error.problem_mark else "?"
        raise _YamlRefused(f"line {line}: {error.problem} (configs hold plain values only)") from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}: " if mark else ""
        raise _YamlRefused(f"{where}invalid YAML: {error.problem or error.context}") from None
    except yaml.YAMLError as error:
        raise _YamlRefused(f"invalid YAML: {str(error).splitlines()[0]}") from None
    except RecursionError:
        raise _YamlRefused("values nested too deeply") from None


def parse_override(text: str, key: str = "value") -> Any:
    """A `--key value` command-line value, read as YAML the way a config file is (bounded, safe)."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"override --{key}: longer than {MAX_CONFIG_BYTES} characters")
    try:
        return _safe_yaml(text)
    except _YamlRefused as error:
        raise ConfigError(f"override --{key}: {error}") from None


def _read_config_file(path: Path) -> dict[str, Any]:
    if path.is_dir():
        raise ConfigError(f"config file {str(path)!r} is a directory; expected a YAML file such as configs/tiny.yaml")
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)  # bounded even for /dev/zero
    except OSError as error:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {error.strerror or error}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {str(path)!r} is larger than {MAX_CONFIG_BYTES} bytes; a config is a few KB of YAML")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise ConfigError(f"config file {str(path)!r}, line {line}: not UTF-8 text (byte {raw[error.start]:#04x} at "
                          f"offset {error.start}); save it as UTF-8") from None
    try:
        data = _safe_yaml(text)
    except _YamlRefused as error:
        raise ConfigError(f"config file {str(path)!r}, {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping at top level, got {type(data).__name__}")
    return data


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Load a YAML preset; `overrides` maps dotted keys ("optim.lr") to values.

    `path` is a file, or the name of a preset in configs/ ("tiny"). Raises ConfigError (a
    ValueError) naming the file or override, the key and the allowed values.
    """
    path = Path(path)
    if not path.is_file():
        preset = Path(__file__).resolve().parents[1] / "configs" / f"{path}.yaml"
        if preset.is_file() and path.name == str(path) and not path.suffix:
            path = preset
        elif not path.exists():
            raise ConfigError(f"config file {str(path)!r} not found (nor a preset of that name in configs/)")
    data = _read_config_file(path)
    return config_from_dict(data, overrides, source=repr(str(path)))


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(json.loads(json.dumps(cfg.to_dict())), sort_keys=False))
