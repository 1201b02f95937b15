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


def test_the_decoder_grades_the_jobs_the_worker_has_not_started_once_generation_is_done(tmp_path, monkeypatch):
    """After the last generation batch the decoder's thread takes the grading jobs still queued
    (newest first) while the worker finishes its own: the rewards and the step are the
    synchronous path's. The worker's first job waits until the decoder's thread has graded
    something, so the test cannot pass unless the decoder's thread took a job."""
    import threading

    import scope_lib.trainer as trainer_module
    from scope_lib.trainer import Trainer

    took = threading.Event()
    calls = []

    def grader(texts, problems):
        on_main = threading.current_thread() is threading.main_thread()
        calls.append((on_main, len(texts)))
        if on_main:
            took.set()
        elif not took.is_set() and sum(1 for main, _ in calls if not main) == 1:
            assert took.wait(30.0), "the decoder's thread never graded a queued job"
        return _grader(texts, problems)

    config = lambda name, extra: load_config("tiny", overrides={  # noqa: E731
        **SMOKE, "method": "grpo", **extra, "output_dir": str(tmp_path / name)})
    sync = Trainer(config("sync", {}))
    over = Trainer(config("over", {"reward.overlap": True}))
    monkeypatch.setattr(trainer_module.Trainer, "grade", staticmethod(_grader))
    monkeypatch.setattr(over, "grade", grader)
    _same_steps(sync, over, steps=1)
    on_main = [n for main, n in calls if main]
    assert on_main and sum(n for _, n in calls) == SMOKE["optim.prompts_per_step"] * SMOKE["rollout.group_size"]


def test_an_idle_worker_takes_finished_rows_at_once(tmp_path, monkeypatch):
    """Rows go to an idle worker as soon as the decoder has finished them, not only in groups of
    pipeline._GRADE_ROWS: in one generation batch of 16 rows, the first rows to end (the shortest
    responses) are the first grading call, alone, before the batch is done."""
    import scope_lib.trainer as trainer_module
    from scope_lib.trainer import Timer, Trainer

    calls = []

    def grader(texts, problems):
        calls.append(list(texts))
        return _grader(texts, problems)

    monkeypatch.setattr(trainer_module.Trainer, "grade", staticmethod(grader))
    over = Trainer(load_config("tiny", overrides={
        **SMOKE, "method": "grpo", "rollout.batch_size": 16, "rollout.max_new_tokens": 24, "reward.overlap": True,
        "output_dir": str(tmp_path / "over")}))
    batch, _ = over.collect(0, Timer())
    lengths = batch["response_mask"].sum(1)
    ended = lengths < 24  # ended on EOS (a row cut at max_new_tokens ends with the batch)
    assert ended.any() and len(lengths[ended].unique()) > 1, "the test needs responses of several lengths"
    first_to_end = int((lengths == lengths[ended].min()).sum())
    assert len(calls) > 1 and len(calls[0]) == first_to_end < 16


def test_the_updates_first_forward_pass_runs_while_the_last_rows_are_graded(tmp_path, monkeypatch):
    """With reward.overlap the decoder's thread starts the update's first forward pass once
    generation is done, before the grades are in; the update then uses those logits (one forward
    pass fewer in update()) and its gradients are the synchronous path's bit for bit. The worker's
    first grading call waits until a training-mode forward pass has run, so the test cannot pass
    unless that pass came before the last grades."""
    import threading

    import scope_lib.trainer as trainer_module
    from scope_lib.trainer import Timer, Trainer

    forwarded = threading.Event()
    worker_calls = []

    def grader(texts, problems):
        if threading.current_thread() is not threading.main_thread():
            worker_calls.append(len(texts))
            if len(worker_calls) == 1:
                assert forwarded.wait(30.0), "no forward pass of the update ran before the grades were in"
        return _grader(texts, problems)

    config = lambda name, extra: load_config("tiny", overrides={  # noqa: E731
        **SMOKE, "method": "grpo", **extra, "output_dir": str(tmp_path / name)})
    monkeypatch.setattr(trainer_module.Trainer, "grade", staticmethod(_grader))
    sync, over = Trainer(config("sync", {})), Trainer(config("over", {"reward.overlap": True}))
    monkeypatch.setattr(over, "grade", grader)
    training_passes = {id(sync): 0, id(over): 0}

    def count(trainer):
        def hook(module, args, output):
            if module.training and torch.is_grad_enabled():
                training_passes[id(trainer)] += 1
                if trainer is over:
                    forwarded.set()
        return hook

    for trainer in (sync, over):
        trainer.student.register_forward_hook(count(trainer))
    timer = Timer()
    over_batch, _ = over.collect(0, timer)
    assert over.early is not None and training_passes[id(over)] == 1 and worker_calls
    assert timer.seconds["actor_update"] > 0  # the early pass is timed as the update's
    sync_batch, _ = sync.collect(0, Timer())
    before = dict(training_passes)
    sync.update(sync_batch)
    over.update(over_batch)
    micro_batches = training_passes[id(sync)] - before[id(sync)]
    assert micro_batches == 2  # 16 rows in micro-batches of 8
    assert training_passes[id(over)] - before[id(over)] == micro_batches - 1 and over.early is None
    for p, q in zip(sync.student.parameters(), over.student.parameters()):
        assert torch.equal(p, q)


def test_an_early_forward_is_used_only_for_its_own_inputs_and_weights():
    """EarlyForward.matches: the same inputs and no parameter written since (an optimizer step
    or a loaded state moves the parameters' version counters)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from scope_lib import batching

    gen = torch.Generator().manual_seed(int(torch.randint(0, 2**31, ())))
    with torch.random.fork_rng():  # fresh weights, without moving the global generator for other tests
        torch.manual_seed(int(torch.randint(0, 2**31, (), generator=gen)))
        student = LlamaForCausalLM(LlamaConfig(vocab_size=24, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                               intermediate_size=32, max_position_embeddings=16))
    ids = torch.randint(3, 20, (4, 9), generator=gen)
    att = torch.ones_like(ids)
    att[0, :3] = 0  # left padding
    group = torch.tensor([0, 0, 1, 1])
    early = batching.early_forward(student, ids, att, group, per_mini=2, rows_per_micro=4, device="cpu")
    micro = batching.trim({"input_ids": ids, "attention_mask": att}, torch.arange(4))
    assert early.matches(student, micro["input_ids"], micro["attention_mask"])
    assert torch.equal(early.logits, batching.student_logits(student, micro["input_ids"], micro["attention_mask"]))
    assert not early.matches(student, micro["input_ids"][:2], micro["attention_mask"][:2])
    other = micro["input_ids"].clone()
    other[1, -1] += 1
    assert not early.matches(student, other, micro["attention_mask"])
    optimizer = torch.optim.SGD(student.parameters(), lr=0.0)
    early.logits.float().sum().backward()
    optimizer.step()  # writes every parameter in place, even with lr 0
    assert not early.matches(student, micro["input_ids"], micro["attention_mask"])


def test_while_grading_needs_overlapped_grading():
    from scope_lib.pipeline import Sampling, score_rollouts
    from scope_lib.problem import Problem

    with pytest.raises(ValueError, match="while_grading"):
        score_rollouts(None, None, [Problem(id="t/0", question="1+1", answer="2")], format_prompt=str, group_size=1,
                       sampling=Sampling(temperature=1.0, max_new_tokens=4), seed=0, while_grading=lambda rollouts: None)
