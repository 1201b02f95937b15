"""Config validation: every field has a range, bad values fail at load naming the
file or override, the key and what is allowed, and YAML is read safely and boundedly."""

from __future__ import annotations

import dataclasses
import resource
import subprocess
import sys
import types
import typing
from pathlib import Path

import pytest

from scope_lib import config as config_module
from scope_lib.config import TrainConfig, config_from_dict, load_config

ROOT = Path(__file__).resolve().parents[1]


def _numeric_keys(cls=TrainConfig, prefix=""):
    """Dotted names of every int, float and tuple-of-float field, walked from the dataclasses."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        annotation = hints[f.name]
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(options) == 1:
            annotation = options[0]  # an optional number (scope.tau_student) has a range too
        if dataclasses.is_dataclass(annotation):
            yield from _numeric_keys(annotation, f"{prefix}{f.name}.")
        elif annotation in (int, float) or typing.get_origin(annotation) is tuple:
            yield prefix + f.name


def test_every_numeric_field_has_a_range():
    keys = set(_numeric_keys())
    assert len(keys) > 35
    assert keys == set(config_module.RANGES), (keys ^ set(config_module.RANGES))


# --- reproductions of bad values, as CLI-style overrides on the tiny preset ----------------
# (key, value, a fragment the error must hold); values are what `yaml.safe_load` makes of the
# command-line text, as scope_lib.train parses overrides.
BAD_OVERRIDES = [
    ("optim.warmup_steps", -10, ">= 0"),  # negative lr: gradient ascent
    ("optim.lr", True, "got true (a boolean)"),  # became lr 1.0
    ("optim.lr", float("inf"), "finite"),  # NaN checkpoint, then a crash
    ("optim.lr", float("nan"), "finite"),
    ("optim.lr", "nan", "finite"),  # numeric strings are accepted, but not non-finite ones
    ("optim.lr", 10.0, "(0, 1]"),
    ("scope.tau", float("inf"), "finite"),
    ("device", "tpu0", "device"),
    ("device", "cuda:x", "device"),
    ("eval.temperature", -1, ">= 0"),
    ("rollout.top_k", -5, ">= 0"),
    ("eval.top_k", -5, ">= 0"),
    ("optim.adam_eps", 0, "(0, 1]"),
    ("model.lora_rank", 0, ">= 1"),
    ("model.lora_alpha", 0, ">= 1"),
    ("model.lora_dropout", 1.0, "[0, 1)"),
    ("model.lora_dropout", -0.1, "[0, 1)"),
    ("seed", -1, "[0, 4294967295]"),
    ("eval.seed", 2**40, "[0, 4294967295]"),
    ("checkpoint_every", -1, ">= 0"),
    ("keep_checkpoints", 0, ">= 1"),
    ("data.eval_problems_per_set", -1, ">= 0"),
    ("rollout.top_p", 0.0, "(0, 1]"),
    ("rollout.top_p", 1.5, "(0, 1]"),
    ("eval.top_p", 0.0, "(0, 1]"),
    ("rollout.max_new_tokens", 0, ">= 1"),
    ("rollout.max_prompt_tokens", 0, ">= 1"),
    ("rollout.repetition_penalty", 0.0, "> 0"),
    ("eval.repetition_penalty", -1.0, "> 0"),
    ("rollout.vllm_gpu_memory_utilization", 1.5, "(0, 1]"),
    ("scope.clip_eps", 0.0, "(0, 1)"),
    ("scope.clip_eps", 1.0, "(0, 1)"),
    ("grpo.clip_eps", -0.2, "(0, 1)"),
    ("grpo.beta", -1e-4, ">= 0"),
    ("optim.weight_decay", -0.01, ">= 0"),
    ("optim.betas", [0.9, 1.0], "[0, 1)"),
    ("optim.betas", [-0.1, 0.999], "[0, 1)"),
    ("optim.grad_clip", -1.0, ">= 0"),
    ("optim.micro_batch_size", 0, ">= 1"),
    ("teacher.request_batch_size", 0, ">= 1"),
    ("kd.samples_per_prompt", 0, ">= 1"),
    ("kd.temperature", -0.6, ">= 0"),
    ("eval.k", True, "got true (a boolean)"),  # a bool is an int in Python, not in a config
    ("eval.max_new_tokens", 0, ">= 1"),
    ("eval.batch_size", 0, ">= 1"),
    ("eval.every_steps", -1, ">= 0"),
    ("output_dir", "", "non-empty"),  # Path("") is the working directory
    ("model.student", "  ", "non-empty"),
    ("teacher.server_url", "127.0.0.1:8000", "http"),
    ("teacher.server_model", "", "non-empty"),
    ("data.eval_sets", ["aime24", "aime24"], "twice"),
    ("data.eval_sets", ["aime2024"], "aime24"),
    ("model.lora_target_modules", [], "LoRA"),
    ("reward.verifier", "python", "['math', 'code']"),
    ("reward.code_timeout_s", -1, "[0, 600]"),
    ("reward.code_timeout_s", 3600, "[0, 600]"),
    ("reward.code_memory_mb", 16, ">= 64"),  # the sandboxed interpreter does not start in 16 MB
    ("reward.code_max_processes", 0, ">= 1"),
    ("reward.code_extract", "last_block", "['code_block', 'raw']"),
    ("data.eval_sets", ["humaneval"], "'reward.verifier'"),  # a code set under the math verifier
    ("data.train", "BAAI/TACO", "'reward.verifier'"),  # TACO is a code corpus
]


@pytest.mark.parametrize("key,value,allowed", BAD_OVERRIDES, ids=[f"{k}={v!r}" for k, v, _ in BAD_OVERRIDES])
def test_bad_override_fails_at_load_naming_key_range_and_source(key, value, allowed):
    overrides = {key: value}
    if key == "model.lora_target_modules":
        overrides["model.finetune"] = "lora"
    with pytest.raises(ValueError) as info:
        load_config("tiny", overrides=overrides)
    message = str(info.value)
    assert f"'{key}" in message, message  # the key (or one of its items, 'optim.betas[1]')
    assert allowed in message, message
    assert f"--{key}" in message, message  # it came from an override, not from the file
    assert "\n" not in message


def test_weight_decay_times_lr_must_stay_below_one():
    # AdamW multiplies each weight by 1 - lr * weight_decay per step: at >= 1 it zeroes or flips them.
    with pytest.raises(ValueError, match=r"'optim\.weight_decay'.*lr \* weight_decay"):
        load_config("tiny", overrides={"optim.lr": 1.0, "optim.weight_decay": 1.0})
    assert load_config("tiny", overrides={"optim.lr": 0.5, "optim.weight_decay": 1.0}).optim.weight_decay == 1.0


def test_boundary_values_are_accepted():
    cfg = load_config("tiny", overrides={
        "optim.warmup_steps": 0, "eval.temperature": 0, "kd.temperature": 0.0, "rollout.top_k": 0,
        "optim.grad_clip": 0, "checkpoint_every": 0, "optim.lr": 1, "rollout.top_p": 1, "seed": 2**32 - 1,
        "optim.betas": [0, 0.999], "model.lora_dropout": 0, "device": "cpu", "data.eval_sets": ["tiny", "math500"],
    })
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert cfg.eval.temperature == 0.0 and cfg.optim.betas == (0.0, 0.999)
    assert load_config("tiny", overrides={"optim.lr": "2e-4"}).optim.lr == 2e-4  # YAML 1.1 reads 2e-4 as text


def test_device_must_exist_here():
    import torch

    assert load_config("tiny", overrides={"device": "auto"}).device == "auto"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"'device'.*CUDA is not available"):
            load_config("tiny", overrides={"device": "cuda"})
    else:
        with pytest.raises(ValueError, match=r"'device'.*cuda:\d+ GPU"):
            load_config("tiny", overrides={"device": f"cuda:{torch.cuda.device_count()}"})


def test_errors_in_a_file_name_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  lr: .inf\n")
    with pytest.raises(ValueError) as info:
        load_config(path)
    assert str(path) in str(info.value) and "'optim.lr'" in str(info.value) and "finite" in str(info.value)
    path.write_text("scope:\n  tau: .inf\n")
    with pytest.raises(ValueError, match=r"bad\.yaml.*'scope\.tau'.*finite"):
        load_config(path)


def test_non_string_and_non_plain_keys_and_values_are_named(tmp_path):
    path = tmp_path / "odd.yaml"
    path.write_text("1: 2\nmethod: scope\n")  # sorting int and str keys raised TypeError
    with pytest.raises(ValueError, match=r"odd\.yaml.*key 1"):
        load_config(path)
    path.write_text("output_dir: 2024-01-01\n")  # YAML reads a date; json.dumps raised TypeError
    with pytest.raises(ValueError, match=r"odd\.yaml.*'output_dir'.*date"):
        load_config(path)


def test_duplicate_yaml_keys_are_refused(tmp_path):
    # PyYAML keeps the last of two equal keys silently; a config that says lr twice is a mistake.
    path = tmp_path / "dup.yaml"
    path.write_text("optim:\n  lr: 1.0e-4\n  lr: 1.0e-3\n")
    with pytest.raises(ValueError, match=r"dup\.yaml', line 3: key 'lr' appears twice"):
        load_config(path)


# --- reading the file -----------------------------------------------------------------------


def test_python_object_tag_is_refused_in_one_line(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("method: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ValueError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "python/object" in message and "line 1" in message


def test_python_object_tag_through_the_cli_prints_one_line(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("method: !!python/object/apply:os.system ['echo pwned']\n")
    run = subprocess.run([sys.executable, "-m", "scope_lib.train", "--config", str(path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert "pwned" not in run.stdout
    assert run.stderr.strip().count("\n") == 0, run.stderr  # was a 41-line traceback
    assert str(path) in run.stderr


def test_non_utf8_config_names_the_file(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("output_dir: r\xe9sum\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.yaml.*UTF-8"):
        load_config(path)


def test_directory_as_config_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"is a directory"):
        load_config(tmp_path)


def test_missing_file_and_presets(tmp_path):
    with pytest.raises(ValueError, match=r"not found"):
        load_config(tmp_path / "nope.yaml")
    assert load_config("tiny").method in ("scope", "opd", "grpo", "kd")


def test_oversized_config_is_refused_before_parsing(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("# " + "x" * config_module.MAX_CONFIG_BYTES + "\nmethod: scope\n")
    with pytest.raises(ValueError, match=r"big\.yaml.*bytes"):
        load_config(path)


def _alias_bomb(levels: int = 9, width: int = 9) -> str:
    """The billion-laughs YAML: ~1 KB that expands to width**levels values."""
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    lines.append(f"method: *a{levels - 1}")
    return "\n".join(lines) + "\n"


def _merge_bomb(levels: int = 40) -> str:
    """Merge keys copy the merged mapping's entries: each level doubles them."""
    lines = ["m0: &m0 {k0: 0}"]
    for i in range(1, levels):
        lines.append(f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}], k{i}: 0}}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("text", [_alias_bomb(), _merge_bomb()], ids=["alias", "merge"])
def test_yaml_bombs_fail_fast_and_small(tmp_path, text):
    assert len(text) < 2048
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    # In a child with a 1 GiB address-space cap: the old loader took over 3 GB on the alias bomb.
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "from scope_lib.config import load_config\n"
        "try:\n"
        f"    load_config({str(path)!r})\n"
        "except ValueError as e:\n"
        "    print(e); sys.exit(3)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 3, (run.returncode, run.stdout, run.stderr[-2000:])
    assert "bomb.yaml" in run.stdout and "values" in run.stdout


def test_recursive_alias_is_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("data:\n  eval_sets: &x [*x]\n")
    with pytest.raises(ValueError, match=r"loop\.yaml.*recursive"):
        load_config(path)


def test_deep_nesting_is_refused(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("method: " + "[" * 1500 + "]" * 1500 + "\n")  # past the parser's recursion limit, not only past 64
    with pytest.raises(ValueError, match=r"deep\.yaml.*nest"):
        load_config(path)


def test_bomb_in_overrides_is_bounded():
    value = ["lol"] * 10
    for _ in range(8):
        value = [value] * 10  # 10**9 leaves after copying; the old deep copy tried to build them
    with pytest.raises(ValueError, match=r"'data\.eval_sets'.*values"):
        config_from_dict({}, overrides={"data.eval_sets": value})


def test_parse_override_reads_cli_text_safely():
    assert config_module.parse_override("1e-4") == "1e-4"  # YAML 1.1; the float field accepts it
    assert config_module.parse_override("[a, b]") == ["a", "b"]
    with pytest.raises(ValueError, match="python/object"):
        config_module.parse_override("!!python/object/apply:os.system ['true']", key="optim.lr")


# --- the code setting: which verifier grades, and what it grades --------------------


def test_paper_code_preset_names_the_code_verifier_and_table2_sets():
    cfg = load_config("paper_code")
    assert cfg.reward.verifier == "code" and cfg.data.eval_sets == ["humaneval", "codeforces", "livecodebench"]
    assert (cfg.reward.code_timeout_s, cfg.reward.code_memory_mb, cfg.reward.code_extract) == (0.0, 1024, "code_block")
    for preset in ("tiny", "smol", "paper_distill_1p5b", "paper_qwen3_1p7b"):
        assert load_config(preset).reward.verifier == "math", preset


def test_verifier_must_fit_the_eval_sets_and_the_training_data(tmp_path):
    taco = tmp_path / "train.jsonl"
    taco.touch()  # data.train files must exist at load
    # a math set under the code verifier, named by its index
    with pytest.raises(ValueError, match=r"--data\.eval_sets.*'data\.eval_sets\[1\]': 'aime24' is a math set.*'code'"):
        load_config("paper_code", overrides={"data.eval_sets": ["humaneval", "aime24"]})
    # switching the tiny preset to code leaves its tiny eval set and tiny training data behind
    with pytest.raises(ValueError, match=r"'data\.eval_sets\[0\]': 'tiny' is a math set"):
        load_config("tiny", overrides={"reward.verifier": "code"})
    with pytest.raises(ValueError, match=r"'data\.train'.*'BAAI/TACO' or a \.jsonl.*got 'tiny'"):
        load_config("tiny", overrides={"reward.verifier": "code", "data.eval_sets": ["humaneval"]})
    with pytest.raises(ValueError, match=r"'data\.train'.*got 'zwhe99/DeepMath-103K'"):
        load_config("paper_code", overrides={"data.train": "zwhe99/DeepMath-103K"})
    cfg = load_config("tiny", overrides={"reward.verifier": "code", "data.eval_sets": ["humaneval", "codeforces"],
                                         "data.train": str(taco)})
    assert cfg.data.train == str(taco) and cfg.reward.verifier == "code"
    assert load_config("tiny", overrides={"reward.verifier": "code", "data.eval_sets": [],
                                          "data.train": "BAAI/TACO"}).data.eval_sets == []


def test_reward_settings_change_the_fingerprint(tmp_path):
    # one .jsonl of training rows and no eval sets suit both verifiers: only the verifier differs
    (tmp_path / "train.jsonl").touch()  # data.train files must exist at load
    data = {"data.train": str(tmp_path / "train.jsonl"), "data.eval_sets": []}
    base = load_config("paper_code", overrides=data)
    assert load_config("paper_code", overrides={**data, "reward.verifier": "math"}).fingerprint() != base.fingerprint()
    for key, value in (("reward.code_timeout_s", 2.0), ("reward.code_memory_mb", 2048),
                       ("reward.code_max_processes", 4), ("reward.code_extract", "raw")):
        assert load_config("paper_code", overrides={**data, key: value}).fingerprint() != base.fingerprint(), key
    assert load_config("paper_code", overrides=data).fingerprint() == base.fingerprint()
