"""Registry keys across config fields added later, evaluation keys that cover the grader, and
resume across new fields."""

import dataclasses
from pathlib import Path

import pytest
import yaml

from scope_lib.experiments import registry as runs
from scope_lib.config import ADDED_FIELDS, TrainConfig, load_config, save_config
from scope_lib.problem import Problem

MATH = {"tiny": [Problem(id=f"t{i}", question="q", answer="1", source="tiny") for i in range(3)]}
CODE = {"tiny": [Problem(id=f"c{i}", question="q", answer="{}", source="tiny_code") for i in range(3)]}

# Keys of the code before the new fields (commit 6b5a2d4), computed with it: the run registry of the
# committed tables is keyed by the run keys, so these must not move.
BEFORE = {
    "tiny/scope": "scope-seed0-cc744fe27c88a0e0", "tiny/opd": "opd-seed0-d1c4f23724b156ce",
    "tiny/grpo": "grpo-seed0-e83a79a5506ac255", "tiny/kd": "kd-seed0-169d8235152b6f08",
    "tiny_code/scope": "scope-seed0-1a3ce7b05d5ca28d",
    "eval/tiny/base=True": "base-fb61da10f931-eval-408feda5057954d8.json",
    "eval/tiny/base=False": "scope-seed0-cc744fe27c88a0e0/eval-408feda5057954d8.json",
    "eval/tiny_code/base=False": "scope-seed0-1a3ce7b05d5ca28d/eval-3ed87e927e01c082.json",
}

# The code world's preset before its budget was cut for the 90-minute main job (commit 5253b21): a
# new budget is a new experiment and gets new keys; what must not move is the key of the same settings.
CODE_BEFORE = {"steps": 40, "optim.prompts_per_step": 16, "optim.mini_batch_prompts": 16, "optim.warmup_steps": 10}


def _keys():
    out = {}
    for method in ("scope", "opd", "grpo", "kd"):
        overrides = {"method": method, **({"rollout.group_size": 1} if method == "opd" else {})}
        # the chain world's preset: `tiny` until the route world became the default (same settings)
        out[f"tiny/{method}"] = runs.run_key(load_config("tiny_chain", overrides=overrides))
    out["tiny_code/scope"] = runs.run_key(load_config("tiny_code", overrides=CODE_BEFORE))
    for preset, sets in (("tiny", MATH), ("tiny_code", CODE)):
        for base in (True, False):
            cfg = load_config("tiny_chain") if preset == "tiny" else load_config(preset, overrides=CODE_BEFORE)
            path = runs.evaluation_path(cfg, sets, base=base,
                                        root=Path("/r"))
            out[f"eval/{preset}/base={base}"] = str(path.relative_to("/r"))
    return out


def test_tiny_run_and_evaluation_keys_are_those_before_the_new_fields():
    keys = _keys()
    for name, before in BEFORE.items():
        assert keys[name] == before, name
    # the base evaluation of the code world now covers its grader (it did not): a new key
    assert keys["eval/tiny_code/base=True"] != "base-89505d8dfdfd-eval-3ed87e927e01c082.json"


def test_a_new_field_away_from_its_old_value_changes_the_run_key():
    base = load_config("paper_code")
    for key, before in ADDED_FIELDS.items():
        section, leaf = key.split(".")
        assert getattr(getattr(TrainConfig(), section), leaf) == before  # its default is the old behaviour
    at_one = dataclasses.replace(base, rollout=dataclasses.replace(base.rollout, logprob_temperature=1.0))
    assert at_one.fingerprint() != base.fingerprint()


def _changed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value * 2 + 1
    if isinstance(value, str):
        return value + "_x"
    if isinstance(value, (list, tuple)):
        return type(value)([*value, "x"])
    if value is None:
        return "/some/folder"
    raise TypeError(value)


# Fields an evaluation does not read, with the reason; every other field of eval, reward and
# data changes the key of the base evaluation and of a trained run's evaluation.
NOT_READ = {
    "reward.overlap": "when rollouts are graded during training, not how: no evaluation reads it",
}
NOT_READ_MATH = {  # math sets: the math verifier reads no reward field
    f"reward.{f.name}": "the math verifier reads no reward field" for f in dataclasses.fields(TrainConfig().reward)
}


@pytest.mark.parametrize("sets, preset", [(CODE, "tiny_code"), (MATH, "tiny")], ids=["code", "math"])
@pytest.mark.parametrize("base", [True, False], ids=["base", "trained"])
def test_every_field_an_evaluation_reads_changes_its_key(sets, preset, base):
    cfg = load_config(preset)
    before = runs.evaluation_path(cfg, sets, base=base, root=Path("/r"))
    unchanged = []
    for section in ("eval", "reward", "data"):
        part = getattr(cfg, section)
        for field in dataclasses.fields(part):
            value = _changed(getattr(part, field.name))
            other = dataclasses.replace(cfg, **{section: dataclasses.replace(part, **{field.name: value})})
            if runs.evaluation_path(other, sets, base=base, root=Path("/r")) == before:
                unchanged.append(f"{section}.{field.name}")
    exempt = {**NOT_READ, **(NOT_READ_MATH if sets is MATH and base else {})}
    assert set(unchanged) == set(exempt), unchanged
    # the extraction and the sandbox limits above all (a stale grade went unnoticed before they were keyed)
    for key, value in (("code_extract", "raw"), ("code_timeout_s", 2.0), ("code_memory_mb", 2048)):
        if sets is CODE:
            other = dataclasses.replace(cfg, reward=dataclasses.replace(cfg.reward, **{key: value}))
            if getattr(cfg.reward, key) != value:
                assert runs.evaluation_path(other, sets, base=base, root=Path("/r")) != before, key


def _saved_without(cfg, tmp_path, *drop):
    save_config(cfg, tmp_path / "config.yaml")
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    for dotted in drop:
        section, leaf = dotted.split(".")
        del saved[section][leaf]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    return saved


def test_resume_reads_an_absent_new_field_as_its_default(tmp_path):
    cfg = load_config("tiny", overrides={"output_dir": str(tmp_path)})
    saved = _saved_without(cfg, tmp_path, "rollout.logprob_temperature", "teacher.logprob_temperature", "reward.overlap")
    assert runs.config_differences(saved, cfg) == []
    runs.check_run_dir(tmp_path, cfg)  # not refused
    # a requested value other than the default is still refused, naming the key
    hot = load_config("tiny", overrides={"output_dir": str(tmp_path), "rollout.logprob_temperature": "sampling"})
    assert runs.config_differences(saved, hot) == ["rollout.logprob_temperature: (absent) -> 'sampling'"]
    with pytest.raises(runs.RunDirError, match=r"rollout\.logprob_temperature: \(absent\) -> 'sampling'"):
        runs.check_run_dir(tmp_path, hot)
    # a field the saved run holds and the request changes is refused as before
    other = load_config("tiny", overrides={"output_dir": str(tmp_path), "optim.lr": 5e-4})
    assert any(d.startswith("optim.lr:") for d in runs.config_differences(saved, other))
    # settings that do not change the trained model, nested ones too, never count
    moved = load_config("tiny", overrides={"output_dir": str(tmp_path), "teacher.overlap": True, "reward.overlap": True,
                                           "data.benchmarks_dir": "/elsewhere"})
    assert runs.config_differences(saved, moved) == []
