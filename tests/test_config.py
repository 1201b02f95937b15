"""Typed config: presets load, typos and invalid values fail with the key named."""

import pytest

from scope_lib.config import TrainConfig, config_from_dict, load_config

PRESETS = ["tiny", "smol", "paper_distill_1p5b", "paper_qwen3_1p7b"]


@pytest.mark.parametrize("name", PRESETS)
def test_presets_load(name):
    cfg = load_config(name)
    assert isinstance(cfg, TrainConfig)


def test_paper_presets_hold_table3_and_table4_values():
    for name in ("paper_distill_1p5b", "paper_qwen3_1p7b"):
        cfg = load_config(name)
        assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.prompts_per_step, cfg.optim.mini_batch_prompts) == (5e-5, 0.01, 256, 256)
        assert (cfg.rollout.group_size, cfg.rollout.temperature, cfg.rollout.max_new_tokens, cfg.rollout.max_prompt_tokens) == (8, 0.6, 12288, 4096)
        assert (cfg.grpo.clip_eps, cfg.grpo.beta, cfg.scope.tau) == (0.2, 1e-4, 1.0)
        assert (cfg.eval.k, cfg.eval.temperature, cfg.eval.top_p, cfg.eval.top_k, cfg.eval.max_new_tokens) == (32, 0.6, 0.95, 20, 32768)
    assert load_config("paper_qwen3_1p7b").eval.repetition_penalty == 1.08
    assert load_config("paper_distill_1p5b").eval.repetition_penalty == 1.0


@pytest.mark.parametrize(
    "data,key",
    [
        ({"methd": "scope"}, "methd"),
        ({"scope": {"tua": 1.0}}, "scope.tua"),
        ({"method": "ppo"}, "method"),
        ({"scope": {"student_direction": "revresed"}}, "scope.student_direction"),
        ({"optim": {"lr": "fast"}}, "optim.lr"),
        ({"steps": 0}, "steps"),
        ({"scope": {"tau": -1.0}}, "scope.tau"),
        ({"optim": {"prompts_per_step": 16, "mini_batch_prompts": 5}}, "optim.mini_batch_prompts"),
        ({"method": "grpo", "rollout": {"group_size": 1}}, "rollout.group_size"),
        ({"progress": "yes"}, "progress"),
    ],
)
def test_bad_keys_and_values_name_the_key(data, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        config_from_dict(data)


def test_overrides_and_fingerprint():
    base = load_config("tiny")
    cfg = load_config("tiny", overrides={"optim.lr": "2e-4", "scope.normalize": "mean"})
    assert cfg.optim.lr == 2e-4 and cfg.scope.normalize == "mean"
    assert cfg.fingerprint() != base.fingerprint()
    # Output location and progress display do not change results, so not the run key.
    assert load_config("tiny", overrides={"output_dir": "elsewhere", "progress": False}).fingerprint() == base.fingerprint()


def test_eval_settings_do_not_change_the_run_key(tmp_path):
    base = load_config("tiny")
    (tmp_path / "elsewhere.jsonl").touch()  # data.train files must exist at load
    assert load_config("tiny", overrides={"eval.k": 32, "eval.temperature": 1.0}).fingerprint() == base.fingerprint()
    # Where the benchmark files live is read only by evaluation, so it is not part of the key either;
    # the training data's path is.
    assert load_config("tiny", overrides={"data.benchmarks_dir": "/elsewhere"}).fingerprint() == base.fingerprint()
    assert load_config("tiny", overrides={"data.train": str(tmp_path / "elsewhere.jsonl")}).fingerprint() != base.fingerprint()


def test_presets_name_no_benchmark_folder():
    """A benchmark folder is the user's (env SCOPE_BENCHMARKS_DIR or data.benchmarks_dir): no preset
    points at one, least of all outside the repository."""
    from pathlib import Path

    for path in sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml")):
        if path.stem.endswith("_lr"):  # chosen learning rates (scope_lib.experiments.lr_selection), not a preset
            continue
        cfg = load_config(path.stem)
        assert cfg.data.benchmarks_dir is None, path.name
    assert load_config("smol", overrides={"data.benchmarks_dir": "/data/bench"}).data.benchmarks_dir == "/data/bench"
