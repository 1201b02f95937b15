"""Every input is checked where it enters: config values and their combinations at load,
gold answers and data rows when read (naming FILE:LINE), and the command line says what is
wrong in one line instead of a traceback."""

import json
import random
import shutil
import string

import pytest

from scope_lib import world as world_module
from scope_lib.worlds import benchmarks
from scope_lib.config import KNOWN_WORLDS, ConfigError, load_config
from scope_lib.train import main as train_cli
from scope_lib.verify import grade_batch, is_correct


def refused(overrides, fragment):
    with pytest.raises(ConfigError) as info:
        load_config("tiny", overrides=overrides)
    message = str(info.value)
    assert fragment in message and "\n" not in message, message
    return message


# --- config values and combinations


def test_known_worlds_are_the_ones_load_world_builds():
    assert set(world_module.TINY_NAMES) | {"smol"} == set(KNOWN_WORLDS)


def test_unknown_world_name_is_refused_at_load_listing_the_worlds():
    rng = random.Random(3)
    message = refused({"model.student": "tiny_rotues", "model.teacher": "tiny_rotues"}, "unknown world 'tiny_rotues'")
    assert "--model.student" in message and "'tiny_routes'" in message  # the valid names are listed
    garbage = "".join(rng.choice(string.ascii_lowercase) for _ in range(12))
    refused({"model.teacher": garbage}, f"unknown world {garbage!r}")
    # what stays accepted: the worlds, hub repo ids, local folders
    assert load_config("tiny", overrides={"model.student": "tiny_routes", "model.teacher": "tiny_routes"})
    assert load_config("tiny", overrides={"model.student": "Qwen/Qwen3-1.7B-Base"}).model.student == "Qwen/Qwen3-1.7B-Base"


@pytest.mark.parametrize("key,value,fragment", [
    ("eval.k", 10**30, "[1, 1024]"),  # before: a MemoryError naming no key
    ("rollout.group_size", 10**6, "[1, 1024]"),
    ("rollout.temperature", 1e-30, "greedy in effect"),
    ("eval.temperature", 1e-9, "0 means greedy"),
    ("kd.temperature", 0.001, "greedy in effect"),
    ("teacher.server_url", "http://[::1", "not a URL"),  # before: urlsplit's raw ValueError
    ("teacher.server_url", "http://127.0.0.1:99999", "not a URL"),
    ("output_dir", "runs/a\x00b", "NUL"),  # before: a raw "embedded null byte"
    ("data.train", "no/such/file.jsonl", "no such file"),
])
def test_bad_value_is_refused_at_load(key, value, fragment):
    message = refused({key: value}, fragment)
    assert f"--{key}" in message


def test_greedy_eval_and_ordinary_temperatures_stay_accepted():
    cfg = load_config("tiny", overrides={"eval.temperature": 0, "kd.temperature": 0, "rollout.temperature": 0.6})
    assert (cfg.eval.temperature, cfg.kd.temperature) == (0.0, 0.0)


def test_vllm_server_with_exact_kl_is_refused_at_load():
    refused({"teacher.backend": "vllm_server", "scope.kl_estimator": "exact"}, "'exact' needs the teacher's full logits")


def test_prompts_per_step_larger_than_the_training_pool_is_refused(tmp_path):
    rng = random.Random(8)
    rows = rng.randrange(2, 6)
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"question": f"{i} + 1 =", "answer": str(i + 1)}) + "\n" for i in range(rows)))
    cfg = load_config("tiny", overrides={"model.student": "tiny_smoke", "model.teacher": "tiny_smoke", "progress": False,
                                         "data.train": str(train), "optim.prompts_per_step": rows + 1,
                                         "optim.mini_batch_prompts": rows + 1, "output_dir": str(tmp_path / "run")})
    from scope_lib.trainer import Trainer

    with pytest.raises(ConfigError, match=rf"'optim.prompts_per_step' \({rows + 1}\) is larger than .*\({rows} problems\)"):
        Trainer(cfg)


# --- gold answers


@pytest.mark.parametrize("null", ["None", "nan", "null", " NaN ", "$None$"])
def test_null_like_gold_answers_are_refused(null):
    with pytest.raises(TypeError, match="missing value"):
        benchmarks.answer_text(null)
    with pytest.raises(ValueError, match="missing value"):  # before: True
        is_correct("\\boxed{None}", null)
    with pytest.raises(ValueError, match="missing value"):
        grade_batch(["\\boxed{nan}"], [null])


def test_gsm8k_none_answer_is_refused_naming_the_line(tmp_path):
    folder = tmp_path / "gsm8k"
    folder.mkdir()
    good = {"question": "1 + 1?", "answer": "one and one <<1+1=2>>\n#### 2"}
    (folder / "test.jsonl").write_text(json.dumps(good) + "\n" + json.dumps({**good, "answer": "so\n#### None"}) + "\n")
    with pytest.raises(ValueError, match=rf"{folder / 'test.jsonl'}:2.*missing value"):
        benchmarks.load_benchmark("gsm8k", tmp_path)


def test_ordinary_answers_still_grade():
    rng = random.Random(21)
    value = rng.randrange(10**6)
    assert is_correct(f"so \\boxed{{{value}}}", str(value)) and not is_correct(f"\\boxed{{{value + 1}}}", str(value))
    assert benchmarks.answer_text("Nonexistent") == "Nonexistent"  # only the whole text is a null


# --- data rows


def test_lone_surrogate_in_a_row_is_refused_naming_file_and_line(tmp_path):
    rng = random.Random(4)
    line = rng.randrange(2, 6)
    rows = [json.dumps({"question": f"q{i}", "answer": str(i)}) for i in range(line - 1)]
    rows.append('{"question": "what is \\ud800 plus 1?", "answer": "2"}')
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(ValueError, match=rf"{path}:{line}: a string holds a lone surrogate"):
        list(benchmarks.scan_json_lines(path))


def test_duplicate_json_key_is_refused_naming_file_and_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"question": "q", "answer": "1"}\n{"question": "q", "answer": "1", "answer": "2"}\n')
    with pytest.raises(ValueError, match=rf"{path}:2: key 'answer' appears twice"):
        list(benchmarks.scan_json_lines(path))


# --- the command line: one line, no traceback


def test_world_failing_its_hash_check_is_one_line_on_the_command_line(tmp_path, monkeypatch, capsys):
    rng = random.Random(9)
    shipped = tmp_path / "worlds"
    shutil.copytree(world_module.SHIPPED_DIR / "tiny_routes", shipped / "tiny_routes")
    weights = shipped / "tiny_routes" / "student" / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[rng.randrange(len(raw) // 2, len(raw))] ^= 0x10
    weights.write_bytes(bytes(raw))
    monkeypatch.setattr(world_module, "SHIPPED_DIR", shipped)
    monkeypatch.delenv("SCOPE_TRACEBACK", raising=False)
    code = train_cli(["--config", "tiny", "--model.student", "tiny_routes", "--model.teacher", "tiny_routes",
                      "--progress", "false", "--output_dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "failed its hash check" in err and "Traceback" not in err, err
    assert "student/model.safetensors" in err
