"""The on-policy trainer on the smoke-sized tiny world: every method runs and logs, a killed
run resumes to the same result, and 2 processes update like 1 on the same global batch."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from scope_lib.config import load_config
from scope_lib.trainer import TIMERS, train

ROOT = Path(__file__).resolve().parents[1]
SMOKE = {
    "model.student": "tiny_smoke", "model.teacher": "tiny_smoke", "progress": False,
    "steps": 2, "optim.prompts_per_step": 4, "optim.mini_batch_prompts": 2, "optim.micro_batch_size": 8,
    "rollout.group_size": 4, "rollout.max_new_tokens": 16, "checkpoint_every": 0,
}


def smoke_config(tmp_path, **overrides):
    return load_config("tiny", overrides={**SMOKE, "output_dir": str(tmp_path / "run"), **overrides})


@pytest.mark.parametrize("overrides", [
    {"method": "scope"},
    {"method": "scope", "scope.kl_estimator": "exact", "scope.normalize": "mean", "scope.student_direction": "reversed"},
    {"method": "scope", "scope.incorrect_path": "clipped_ppo"},
    {"method": "opd", "rollout.group_size": 1},
    {"method": "scope", "scope.kl_estimator": "exact", "optim.mini_batch_prompts": 4, "optim.old_logp_pass": "when_needed"},
    {"method": "grpo"},
    {"method": "grpo", "optim.mini_batch_prompts": 4, "optim.old_logp_pass": "when_needed"},
    {"method": "grpo", "model.finetune": "lora", "model.lora_rank": 4},
    {"method": "kd", "kd.only_correct": False},
], ids=lambda o: "-".join(str(v) for v in o.values()))
def test_every_method_runs_logs_and_changes_the_student(tmp_path, monkeypatch, overrides):
    # The smoke-sized models solve nothing, so the verifier is replaced by a fixed pattern that
    # puts rollouts on both SCOPE paths and gives GRPO non-zero advantages.
    import scope_lib.trainer as trainer_module

    monkeypatch.setattr(trainer_module.Trainer, "grade", staticmethod(lambda texts, problems: [i % 3 == 0 for i in range(len(texts))]))
    cfg = smoke_config(tmp_path, **overrides)
    result = train(cfg)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2] == [m["step"] for m in result.history]
    for m in lines:
        assert all(f"time/{t}" in m for t in TIMERS)
        assert m["time/step"] >= m["time/actor_update"] > 0
        assert m["grad_norm"] > 0 and m["lr"] > 0
        if cfg.method != "kd":
            assert 0 <= m["accuracy"] <= 1 and m["entropy"] > 0 and m["response_length"] > 0
            assert m["n_correct"] + m["n_incorrect"] == 4 * cfg.rollout.group_size
        if cfg.method == "scope":
            assert m["student_w_n_groups"] > 0 and m["teacher_w_n_groups"] > 0
        if cfg.method == "opd":
            assert m["time/teacher_scoring"] > 0 and "kl_to_teacher" in m and "teacher_ppl" in m
        if cfg.method == "grpo":
            assert m["time/teacher_scoring"] == 0 and "clip_frac" in m
    final = ROOT / cfg.output_dir / "final" if not Path(cfg.output_dir).is_absolute() else Path(cfg.output_dir) / "final"
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(final)  # LoRA merged: loads without peft
    from scope_lib.world import WorldSpec, load_world

    base = load_world(WorldSpec.from_config(cfg)).student
    changed = any(not torch.equal(a, b) for a, b in zip(reloaded.state_dict().values(), base.state_dict().values()))
    assert changed, "training did not change the student's weights"


@pytest.mark.parametrize("overrides", [
    {"method": "scope", "scope.kl_estimator": "exact"},
    {"method": "scope", "scope.incorrect_path": "clipped_ppo"},
    {"method": "opd", "rollout.group_size": 1},
    {"method": "grpo"},
], ids=lambda o: "-".join(str(v) for v in o.values()))
def test_old_logp_from_the_update_pass_equals_a_separate_pass(tmp_path, monkeypatch, overrides):
    # One update per rollout batch: taking pi_old (and the logged entropy and KL) from the
    # update's own forward pass must give the update, entropy and KL of verl's separate pass.
    import scope_lib.trainer as trainer_module
    from scope_lib.trainer import Timer, Trainer

    monkeypatch.setattr(trainer_module.Trainer, "grade", staticmethod(lambda texts, problems: [i % 3 == 0 for i in range(len(texts))]))
    seed = 0
    common = {**overrides, "optim.mini_batch_prompts": 4, "optim.lr": 1e-2, "seed": seed}
    separate = Trainer(smoke_config(tmp_path / "a", **common, **{"optim.old_logp_pass": "always"}))
    fused = Trainer(smoke_config(tmp_path / "b", **common, **{"optim.old_logp_pass": "when_needed"}))
    assert fused.method.old_logp_from_update and not separate.method.old_logp_from_update
    batch, stats = separate.collect(0, Timer())
    for trainer in (separate, fused):  # compare gradients: Adam's first step amplifies rounding where g ~ 0
        trainer.optimizer.step = lambda: None
    fused_stats = fused.update({k: v for k, v in batch.items() if k != "old_logp"})
    separate.update(batch)
    for key in ("entropy", "kl_to_teacher"):
        if key in stats:
            assert fused_stats[key] == pytest.approx(stats[key], rel=1e-5, abs=1e-6), key
    fused_params = dict(fused.student.named_parameters())
    for name, a in separate.student.named_parameters():
        torch.testing.assert_close(a.grad, fused_params[name].grad, rtol=1e-4, atol=1e-7, msg=lambda m: f"{name}: {m}")
    assert fused_stats["grad_norm"] > 0


def test_exact_kl_from_the_collected_teacher_pass_equals_a_fresh_teacher_pass(tmp_path, monkeypatch):
    # collect() keeps the teacher's full distributions for the exact KL; the update must equal
    # one that asks the teacher again (the code path for batches built outside collect()).
    import scope_lib.trainer as trainer_module
    from scope_lib.trainer import Timer, Trainer

    monkeypatch.setattr(trainer_module.Trainer, "grade", staticmethod(lambda texts, problems: [i % 3 == 0 for i in range(len(texts))]))
    common = {"method": "scope", "scope.kl_estimator": "exact", "optim.lr": 1e-2, "seed": 1}
    kept, fresh = Trainer(smoke_config(tmp_path / "a", **common)), Trainer(smoke_config(tmp_path / "b", **common))
    batch, _ = kept.collect(0, Timer())
    full = batch["teacher_logits"]
    incorrect = ~batch["correct"]
    assert full.shape == (*batch["input_ids"].shape, kept.world.student.config.vocab_size)
    torch.testing.assert_close(full[incorrect].exp().sum(-1), torch.ones(full[incorrect].shape[:2]))
    scored = kept.teacher.score(batch["input_ids"][incorrect], batch["attention_mask"][incorrect])
    mask = batch["response_mask"][incorrect].bool()
    torch.testing.assert_close(batch["teacher_logp"][incorrect][mask], scored[mask], rtol=1e-5, atol=1e-5)
    for trainer in (kept, fresh):  # compare gradients: Adam's first step amplifies rounding where g ~ 0
        trainer.optimizer.step = lambda: None
    assert kept.update(batch)["grad_norm"] > 0
    fresh.update({k: v for k, v in batch.items() if k != "teacher_logits"})
    for a, b in zip(kept.student.parameters(), fresh.student.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-7)


def test_vocabulary_mismatch_fails_before_rollout(tmp_path):
    from scope_lib.teacher import check_same_vocabulary
    from scope_lib.worlds.tokenizer import build_tokenizer

    a, b = build_tokenizer(vocab_size=300), build_tokenizer(vocab_size=280)
    with pytest.raises(ValueError, match="teacher 'T' and student 'S'"):
        check_same_vocabulary(a, b, "S", "T")


def _run_cli(out_dir: Path, steps: int, extra=()):
    args = [sys.executable, "-m", "scope_lib.train", "--config", "tiny"]
    for key, value in {**SMOKE, "steps": steps, "checkpoint_every": 2, "output_dir": str(out_dir), **dict(extra)}.items():
        args += [f"--{key}", str(value)]
    return args


def test_sigkill_mid_training_then_resume_matches_uninterrupted(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight = subprocess.run(_run_cli(tmp_path / "straight", 6), cwd=ROOT, env=env, capture_output=True, text=True)
    assert straight.returncode == 0, straight.stderr[-2000:]

    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen(_run_cli(killed_dir, 6), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list((killed_dir / "checkpoints").glob("step_00000[24]")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed_dir / "done.json").exists(), "run finished before it could be killed"
    resumed = subprocess.run(_run_cli(killed_dir, 6), cwd=ROOT, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    def final_metrics(d):
        rows = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]

    assert final_metrics(killed_dir) == final_metrics(tmp_path / "straight")
    from safetensors.torch import load_file

    w1, w2 = load_file(tmp_path / "straight" / "final" / "model.safetensors"), load_file(killed_dir / "final" / "model.safetensors")
    assert all(torch.equal(w1[k], w2[k]) for k in w1)


@pytest.mark.parametrize("method", ["scope", pytest.param("grpo", marks=pytest.mark.slow)])  # GRPO: the same path, slow
def test_two_processes_update_like_one(tmp_path, method):
    script = ROOT / "tests" / "helpers" / "dist_update.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, str(script), str(tmp_path / "one.pt"), method], cwd=ROOT, env=env, capture_output=True, text=True)
    assert one.returncode == 0, one.stderr[-3000:]
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    two = subprocess.run([accelerate, "launch", "--cpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
                          "--dynamo_backend", "no", str(script), str(tmp_path / "two.pt"), method],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-3000:]
    w1, w2 = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    from scope_lib.world import WorldSpec, load_world

    base = load_world(WorldSpec.from_config(smoke_config(tmp_path))).student.state_dict()
    moved = max(float((w1[k] - base[k]).abs().max()) for k in w1)
    assert moved > 1e-6, "the update did not move the weights"
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("method", ["opd", "scope"])
def test_distillation_moves_the_student_towards_the_teacher(tmp_path, method):
    """It learns: on held-out rollouts, the exact reverse KL to the teacher falls after training."""
    from scope_lib.logprobs import full_reverse_kl, position_ids_from_mask
    from scope_lib.rollout import Sampling, generate_rollouts
    from scope_lib.worlds.chain import eval_sets, format_prompt
    from scope_lib.world import WorldSpec, load_world

    cfg = smoke_config(tmp_path, method=method, steps=12, **{
        "scope.kl_estimator": "exact", "optim.lr": 3e-3, "optim.warmup_steps": 2, "optim.prompts_per_step": 8,
        "optim.mini_batch_prompts": 8, "rollout.group_size": 4 if method == "scope" else 1})
    world = load_world(WorldSpec.from_config(cfg))
    prompts = [format_prompt(p) for p in eval_sets(8, seed=0)["chain3"]]
    held_out = generate_rollouts(world.teacher, world.tokenizer, prompts, num_samples=2,
                                 sampling=Sampling(temperature=1.0, max_new_tokens=16), seed=123)

    @torch.no_grad()
    def mean_kl(student):
        ids, att, mask = held_out.input_ids, held_out.attention_mask, held_out.response_mask.float()
        pos = position_ids_from_mask(att)
        kl = full_reverse_kl(student(input_ids=ids, attention_mask=att, position_ids=pos).logits,
                             world.teacher(input_ids=ids, attention_mask=att, position_ids=pos).logits)
        return float((kl * mask).sum() / mask.sum())

    before = mean_kl(world.student)
    trained = train(cfg, world=load_world(WorldSpec.from_config(cfg), train_seed=cfg.seed)).model  # a fresh copy of the student is trained
    after = mean_kl(trained)
    print(f"KL to teacher {before:.4f} -> {after:.4f}")
    assert after < 0.8 * before, f"KL to teacher {before:.4f} -> {after:.4f}"


def test_tensorboard_receives_the_logged_metrics(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = smoke_config(tmp_path, method="opd", **{"rollout.group_size": 1})
    train(cfg)
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"accuracy", "kl_to_teacher", "time/generation", "grad_norm"} <= tags
    assert [e.step for e in events.Scalars("grad_norm")] == [1, 2]


def test_trainer_rewards_come_from_the_configured_verifier():
    """reward.verifier picks the reward: math answers by verify.grade_batch, programs by the sandbox."""
    from types import SimpleNamespace

    from scope_lib import trainer as trainer_module
    from scope_lib.grading.code import CodeTests
    from scope_lib.problem import Problem

    add = Problem(id="taco/add", question="Read a and b, print a + b.", source="taco",
                  answer=CodeTests(kind="stdio", cases=(("1 2\n", "3\n"), ("5 7\n", "12\n")), timeout=6).to_json())
    good = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
    wrong = "```python\nprint(3)\n```"  # right on the first case only
    code_trainer = SimpleNamespace(cfg=load_config("paper_code"))
    assert code_trainer.cfg.reward.verifier == "code"
    assert trainer_module.Trainer.grade(code_trainer, [good, wrong, "no program"], [add, add, add]) == [True, False, False]
    math_trainer = SimpleNamespace(cfg=load_config("tiny"))
    sums = [Problem(id="m/0", question="1+2?", answer="3", source="tiny"), Problem(id="m/1", question="2+2?", answer="4", source="tiny")]
    assert trainer_module.Trainer.grade(math_trainer, ["\\boxed{3}", "\\boxed{5}"], sums) == [True, False]
