"""Overlapped teacher scoring (teacher.overlap) equals the synchronous path: the same rollouts,
rewards, teacher log-probs (and full distributions for the exact KL), gradients and history."""

import pytest
import torch

from scope_lib.config import load_config

SMOKE = {
    "model.student": "tiny_smoke", "model.teacher": "tiny_smoke", "progress": False,
    "steps": 2, "optim.prompts_per_step": 4, "optim.mini_batch_prompts": 4, "optim.micro_batch_size": 8,
    "rollout.group_size": 4, "rollout.max_new_tokens": 16, "checkpoint_every": 0,
    "rollout.batch_size": 4,  # 4 generation batches per step: the worker scores while the next one decodes
    "scope.kl_estimator": "sampled",
}


def _grader(texts, problems):  # per rollout (a real verifier grades each on its own), both paths on both SCOPE paths
    return [sum(map(ord, t)) % 3 == 0 for t in texts]


def _config(tmp_path, name, overrides):
    return load_config("tiny", overrides={**SMOKE, **overrides, "output_dir": str(tmp_path / name)})


@pytest.mark.parametrize("overrides", [
    {"method": "scope"},
    {"method": "scope", "scope.kl_estimator": "exact"},
    {"method": "scope", "optim.mini_batch_prompts": 2, "optim.old_logp_pass": "always"},
    {"method": "opd", "rollout.group_size": 1},
], ids=lambda o: "-".join(str(v) for v in o.values()))
def test_overlapped_scoring_equals_the_synchronous_path(tmp_path, monkeypatch, overrides):
    import scope_lib.trainer as trainer_module
    from scope_lib.trainer import Timer, Trainer

    monkeypatch.setattr(trainer_module.Trainer, "grade", staticmethod(_grader))
    sync = Trainer(_config(tmp_path, "sync", overrides))
    over = Trainer(_config(tmp_path, "over", {**overrides, "teacher.overlap": True}))
    assert over.cfg.fingerprint() == sync.cfg.fingerprint()  # the same run: overlap changes when, not what
    for step in range(2):
        timer = Timer()
        a, stats_a = sync.collect(step, Timer())
        b, stats_b = over.collect(step, timer)
        assert timer.seconds["teacher_scoring_worker"] > 0 and timer.workers == {"teacher_worker": "teacher_scoring_worker"}
        assert a.keys() == b.keys()
        for key in ("input_ids", "attention_mask", "response_mask", "group", "correct", "old_logp"):
            if key in a:
                assert torch.equal(a[key], b[key]), key
        assert 0 < int(a["correct"].sum()) < len(a["correct"]) or overrides["method"] == "opd"
        on = a["response_mask"].bool()
        assert torch.equal(torch.isfinite(a["teacher_logp"]).any(1), torch.isfinite(b["teacher_logp"]).any(1))
        assert torch.equal(a["teacher_logp"][on].nan_to_num(123.0), b["teacher_logp"][on].nan_to_num(123.0))
        if "teacher_logits" in a:
            assert torch.equal(a["teacher_logits"][on], b["teacher_logits"][on])
        assert stats_a == stats_b
        for trainer, batch in ((sync, a), (over, b)):
            trainer.optimizer.step_ = trainer.optimizer.step
            trainer.optimizer.step = lambda: None  # compare this step's gradients, then step both
            trainer.update(batch)
        for (name, p), q in zip(sync.student.named_parameters(), over.student.parameters()):
            assert torch.equal(p.grad, q.grad), name
        for trainer in (sync, over):
            trainer.optimizer.step_()
    for p, q in zip(sync.student.parameters(), over.student.parameters()):
        assert torch.equal(p, q)


def test_generation_batches_equal_generate_rollouts():
    from scope_lib.rollout import Sampling, generate_rollouts, generation_batches
    from scope_lib.world import WorldSpec, load_world

    world = load_world(WorldSpec(student="tiny_smoke", teacher="tiny_smoke"))
    prompts = [world.format_prompt(p) for p in world.train_problems[:5]]
    kwargs = dict(num_samples=3, sampling=Sampling(temperature=1.0, max_new_tokens=12, batch_size=4), seed=11)
    whole = generate_rollouts(world.student, world.tokenizer, prompts, **kwargs)
    gen = generation_batches(world.student, world.tokenizer, prompts, **kwargs)
    starts = []
    while True:
        try:
            starts.append(next(gen)[0])
        except StopIteration as done:
            batched = done.value
            break
    assert starts == [0, 4, 8, 12]
    for key in ("input_ids", "attention_mask", "response_mask", "group", "response_lengths"):
        assert torch.equal(getattr(whole, key), getattr(batched, key)), key
    assert whole.texts == batched.texts and whole.prompt_width == batched.prompt_width


def test_overlap_needs_the_hf_engine():
    from scope_lib.config import ConfigError

    with pytest.raises(ConfigError, match="teacher.overlap"):
        load_config("tiny", overrides={"teacher.overlap": True, "rollout.engine": "vllm"})


def test_a_failing_teacher_fails_the_step_and_leaves_no_worker(tmp_path, monkeypatch):
    import threading

    import scope_lib.trainer as trainer_module
    from scope_lib.trainer import Timer, Trainer

    monkeypatch.setattr(trainer_module.Trainer, "grade", staticmethod(_grader))
    trainer = Trainer(_config(tmp_path, "fail", {"method": "opd", "rollout.group_size": 1, "teacher.overlap": True}))

    def broken(*args, **kwargs):
        raise RuntimeError("teacher down")

    monkeypatch.setattr(trainer.teacher, "score", broken)
    with pytest.raises(RuntimeError, match="teacher down"):
        trainer.collect(0, Timer())
    assert not [t for t in threading.enumerate() if t.name.startswith("teacher-scoring")]
    assert trainer.student.training
