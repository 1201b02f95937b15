"""Grading overlapped with generation (reward.overlap): the pipeline's worker grades
each finished generation batch (then scores it under the teacher) while the next one is
generated. Rewards, teacher log-probs, statistics, gradients and weights equal the synchronous
path's bit for bit, with a stand-in grader and with the code world's sandbox."""

import pytest
import torch

from scope_lib.config import load_config

SMOKE = {
    "model.student": "tiny_smoke", "model.teacher": "tiny_smoke", "progress": False,
    "steps": 2, "optim.prompts_per_step": 4, "optim.mini_batch_prompts": 4, "optim.micro_batch_size": 8,
    "rollout.group_size": 4, "rollout.max_new_tokens": 16, "checkpoint_every": 0,
    "rollout.batch_size": 4,  # 4 generation batches per step: the worker grades while the next one decodes
    "scope.kl_estimator": "sampled",
}


def _grader(texts, problems):  # per rollout, as a real verifier grades
    return [sum(map(ord, t)) % 3 == 0 for t in texts]


def _same_steps(sync, over, steps=2):
    from scope_lib.trainer import Timer

    for step in range(steps):
        timer = Timer()
        a, stats_a = sync.collect(step, Timer())
        b, stats_b = over.collect(step, timer)
        assert timer.seconds["reward_worker"] > 0
        assert a.keys() == b.keys()
        for key in a:
            if key == "teacher_logp":
                on = a["response_mask"].bool()
                assert torch.equal(a[key][on].nan_to_num(123.0), b[key][on].nan_to_num(123.0))
            elif key == "teacher_logits":
                on = a["response_mask"].bool()
                assert torch.equal(a[key][on], b[key][on])
            else:
                assert torch.equal(a[key], b[key]), key
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
    return a


@pytest.mark.parametrize("overrides", [
    {"method": "scope", "teacher.overlap": True, "scope.kl_estimator": "exact"},
    {"method": "grpo"},
    {"method": "opd", "rollout.group_size": 1},
], ids=lambda o: "-".join(str(v) for v in o.values()))
def test_overlapped_grading_equals_the_synchronous_path(tmp_path, monkeypatch, overrides):
    import scope_lib.trainer as trainer_module
    from scope_lib.trainer import Trainer

    monkeypatch.setattr(trainer_module.Trainer, "grade", staticmethod(_grader))
    config = lambda name, extra: load_config("tiny", overrides={  # noqa: E731
        **SMOKE, **overrides, **extra, "output_dir": str(tmp_path / name)})
    sync = Trainer(config("sync", {}))
    over = Trainer(config("over", {"reward.overlap": True}))
    assert over.cfg.fingerprint() == sync.cfg.fingerprint()  # when rewards are computed, not what
    batch = _same_steps(sync, over, steps=1)
    assert 0 < int(batch["correct"].sum()) < len(batch["correct"]) or overrides["method"] == "opd"


def test_overlapped_grading_in_the_sandbox_equals_the_synchronous_path(tmp_path):
    from scope_lib.trainer import Trainer

    small = {"progress": False, "steps": 1, "optim.prompts_per_step": 4, "optim.mini_batch_prompts": 4,
             "optim.micro_batch_size": 16, "rollout.group_size": 4, "rollout.batch_size": 4, "checkpoint_every": 0,
             "method": "grpo"}
    sync = Trainer(load_config("tiny_code", overrides={**small, "output_dir": str(tmp_path / "sync")}))
    over = Trainer(load_config("tiny_code", overrides={**small, "reward.overlap": True,
                                                       "output_dir": str(tmp_path / "over")}))
    _same_steps(sync, over, steps=1)


def test_overlap_reward_needs_the_projects_decoder():
    from scope_lib.config import ConfigError

    with pytest.raises(ConfigError, match=r"reward\.overlap"):
        load_config("tiny", overrides={"reward.overlap": True, "rollout.engine": "vllm"})
