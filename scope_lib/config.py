"""One typed configuration for every training run, loaded from YAML presets in `configs/`.

The schema (`TrainConfig` and its sections) is scope_lib/config_schema.py, imported from here:
every field carries a one-line reason. Choices are `Literal[...]`, so a typo fails at start
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

import dataclasses
import json
import math
import re
import types
import typing
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from scope_lib.config_schema import ADDED_FIELDS, TrainConfig, logprob_temperatures, without_neutral_additions
from scope_lib.common.paths import CONFIGS_DIR

# The schema's names that callers import from here, beside the loader's own.
__all__ = ["TrainConfig", "ADDED_FIELDS", "logprob_temperatures", "without_neutral_additions", "RANGES", "Interval",
           "ConfigError", "MAX_CONFIG_BYTES", "MAX_CONFIG_VALUES", "KNOWN_WORLDS", "TINY_CODE_NAMES", "config_from_dict",
           "load_config", "save_config", "parse_override", "require_rollout_engine"]


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


# --- the one bound on expansion (YAML alias bombs) ---------------------------------------


class _TooLarge(Exception):
    """A value graph past the bounds of `_expanded_size`; `node` is where it was found."""

    def __init__(self, node: Any, reason: str):
        super().__init__(reason)
        self.node, self.reason = node, reason


def _expanded_size(root: Any, children, limit: int = MAX_CONFIG_VALUES) -> int:
    """How many values `root` expands to, a shared child counted at each of its uses.

    YAML aliases share nodes and merge keys (`<<: [*a, *a]`) copy entries, so ~1 KB of YAML can
    stand for 10**9 values; a Python list repeated inside another can too. The count is
    memoised on identity, so it is linear in the distinct values, and it is taken before
    anything is expanded: on the composed YAML node graph (`_BoundedSafeLoader`) and on the
    values handed to `config_from_dict`. `children(node)` lists a node's direct children.
    Raises _TooLarge at a value that contains itself, below `_MAX_DEPTH` levels of nesting, or
    past `limit` values.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def walk(node: Any) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in open_nodes:
            raise _TooLarge(node, "a recursive alias (a value that contains itself)")
        if len(open_nodes) > _MAX_DEPTH:
            raise _TooLarge(node, f"values nested more than {_MAX_DEPTH} levels deep")
        open_nodes.add(id(node))
        size = 1
        for child in children(node):
            size += walk(child)
            if size > limit:
                raise _TooLarge(node, f"expands to more than {MAX_CONFIG_VALUES} values (a YAML alias bomb?); "
                                      "a config holds a few hundred at most")
        open_nodes.discard(id(node))
        sizes[id(node)] = size
        return size

    return walk(root)


def _value_children(value: Any):
    if isinstance(value, dict):
        return value.values()
    return value if isinstance(value, (list, tuple)) else ()


def _yaml_children(node: Any):
    if isinstance(node, yaml.SequenceNode):
        return node.value
    return [part for pair in node.value for part in pair] if isinstance(node, yaml.MappingNode) else ()


def _bounded(value: Any, key: str, used: int) -> int:
    """`used` plus the values `value` expands to; raises _Invalid naming `key` past the bound."""
    try:
        return used + _expanded_size(value, _value_children, MAX_CONFIG_VALUES - used)
    except _TooLarge as error:
        raise _Invalid(key or "<top level>", error.reason) from None


# --- plain values -------------------------------------------------------------------------


def _plain_copy(value: Any, key: str) -> Any:
    """A deep copy of plain YAML/JSON values, refusing anything else. Bounded by `_bounded` first:
    the copy expands shared references."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise _Invalid(key or "<top level>", f"key {k!r} is not a string")
            out[k] = _plain_copy(v, f"{key}.{k}" if key else k)
        return out
    if isinstance(value, (list, tuple)):
        return [_plain_copy(v, f"{key}[{i}]") for i, v in enumerate(value)]
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
        import torch  # as above: only here

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
    # Here, not at the top: the two benchmark modules (and the code verifier below them) take
    # about as long to import as this module, which every run and notebook loads.
    from scope_lib.worlds.benchmarks import BENCHMARKS
    from scope_lib.worlds.code_benchmarks import CODE_BENCHMARKS

    allowed = ("tiny", "tiny_validation", *BENCHMARKS, *CODE_BENCHMARKS)  # tiny_validation: the lr-selection split
    for index, name in enumerate(names):
        if name not in allowed:
            raise _Invalid(f"data.eval_sets[{index}]", f"expected one of {list(allowed)}, got {name!r}")
        if name in names[:index]:
            raise _Invalid(f"data.eval_sets[{index}]", f"{name!r} is listed twice")


TINY_CODE_NAMES = ("tiny_code", "tiny_code_smoke")  # tiny worlds on the code task (scope_lib.worlds.code)
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
    from scope_lib.worlds.code_benchmarks import CODE_BENCHMARKS, HUB  # here: see _check_eval_sets

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
                                     f"(scope_lib.worlds.code_benchmarks.load_taco_train), got {train!r}")
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
    try:
        try:
            # A plain deep copy (never the caller's dicts), measured first: shared references expand here.
            data = data or {}
            if isinstance(data, dict):
                used = 1
                for key, value in data.items():
                    used = _bounded(value, str(key), used)
            else:
                used = _bounded(data, "", 0)
            plain = _plain_copy(data, "")
            if not isinstance(plain, dict):
                raise _Invalid("<top level>", f"expected a mapping, got {_describe(plain)}")
            for dotted, value in overrides.items():
                if not isinstance(dotted, str) or not dotted:
                    raise _Invalid(str(dotted), "override keys must be dotted key names such as 'optim.lr'")
                used = _bounded(value, dotted, used)
                _set_dotted(plain, dotted, _plain_copy(value, dotted))
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
            try:
                _expanded_size(node, _yaml_children)
            except _TooLarge as error:
                raise _YamlRefused(f"line {error.node.start_mark.line + 1}: {error.reason}") from None
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
        preset = CONFIGS_DIR / f"{path}.yaml"
        if preset.is_file() and path.name == str(path) and not path.suffix:
            path = preset
        elif not path.exists():
            raise ConfigError(f"config file {str(path)!r} not found (nor a preset of that name in configs/)")
    data = _read_config_file(path)
    return config_from_dict(data, overrides, source=repr(str(path)))


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(json.loads(json.dumps(cfg.to_dict())), sort_keys=False))
