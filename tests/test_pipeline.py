"""The rollout pipeline (scope_lib.pipeline.score_rollouts): rewards are the verifier's, the teacher
scores exactly the requested rows (NaN elsewhere), overlapped scoring equals the synchronous path
bit for bit, and bad inputs fail naming the argument."""

import pytest
import torch

from scope_lib import pipeline, rollout, verify
from scope_lib.worlds import models, chain as tasks
from scope_lib.config import load_config
from scope_lib.pipeline import Sampling, score_rollouts
from scope_lib.teacher import LocalTeacher

SAMPLING = Sampling(temperature=1.0, max_new_tokens=12, batch_size=4)  # 3 problems x 3 rollouts: 3 generation batches


@pytest.fixture(scope="module")
def world():
    return models.build_tiny_world(models.SMOKE_WORLD, progress=False)


@pytest.fixture(scope="module")
def problems():
    return tasks.train_pool(3, seed=4)


def text_grader(texts, problems):
    """A stand-in verifier that grades each text on its own (the smoke student solves nothing)."""
    return [sum(map(ord, t)) % 2 == 0 for t in texts]


def run(world, problems, **kwargs):
    settings = dict(format_prompt=tasks.format_prompt, group_size=3, sampling=SAMPLING, seed=7, grade=text_grader)
    return score_rollouts(world.student, world.tokenizer, problems, **{**settings, **kwargs})


def test_rollouts_are_generate_rollouts_and_rewards_the_verifiers(world, problems):
    scored = score_rollouts(world.student, world.tokenizer, problems, format_prompt=tasks.format_prompt, group_size=3,
                            sampling=SAMPLING, seed=7)
    prompts = [tasks.format_prompt(p) for p in problems]
    direct = rollout.generate_rollouts(world.student, world.tokenizer, prompts, num_samples=3, sampling=SAMPLING, seed=7)
    assert scored.prompts == prompts and scored.problems == problems and len(scored) == 9
    for key in ("input_ids", "attention_mask", "response_mask", "group"):
        assert torch.equal(getattr(scored.rollouts, key), getattr(direct, key)), key
    assert scored.rollouts.texts == direct.texts
    assert [p.id for p in scored.row_problems] == [problems[g].id for g in direct.group.tolist()]
    golds = [p.answer for p in scored.row_problems]
    assert scored.correct.dtype == torch.bool
    assert scored.correct.tolist() == verify.grade_batch(direct.texts, golds)  # default grader: the math verifier
    # without a teacher: no rows scored, every teacher log-prob NaN
    assert len(scored.teacher_rows) == 0 and torch.isnan(scored.teacher_logp).all()
    assert scored.teacher_logits is None and scored.student_logp is None
    # a custom grader sees each text with its own problem
    seen = []
    graded = run(world, problems, grade=lambda texts, probs: seen.append((texts, probs)) or text_grader(texts, probs))
    assert seen == [(graded.rollouts.texts, graded.row_problems)]
    assert graded.correct.tolist() == text_grader(graded.rollouts.texts, graded.row_problems)


def test_teacher_scores_only_the_requested_rows(world, problems):
    teacher = LocalTeacher(world.teacher)
    scored = run(world, problems, teacher=teacher, teacher_rows=pipeline.incorrect_rows, score_student=True)
    wrong = (~scored.correct).nonzero().squeeze(-1)
    assert 0 < len(wrong) < len(scored)  # both kinds of rows, so the NaN check means something
    assert torch.equal(scored.teacher_rows, wrong)
    batch = scored.rollouts
    assert torch.isnan(scored.teacher_logp[scored.correct]).all()
    assert torch.equal(scored.teacher_logp[wrong], teacher.score(batch.input_ids[wrong], batch.attention_mask[wrong]))
    seq = scored.teacher_seq_logp()
    assert torch.isnan(seq[scored.correct]).all() and torch.isfinite(seq[wrong]).all()
    # the student's own scores, on every row
    assert torch.equal(scored.student_logp, LocalTeacher(world.student).score(batch.input_ids, batch.attention_mask))
    assert torch.isfinite(scored.student_seq_logp()).all()
    # with a teacher and no selector, every row is scored
    every = run(world, problems, teacher=teacher)
    assert torch.equal(every.teacher_rows, torch.arange(len(every)))
    assert not torch.isnan(every.teacher_logp).any()


def test_exact_keeps_the_teachers_distributions_on_the_scored_rows(world, problems):
    scored = run(world, problems, teacher=LocalTeacher(world.teacher), teacher_rows=pipeline.incorrect_rows, exact=True)
    rows = scored.teacher_rows
    full, token = LocalTeacher(world.teacher).full_log_probs(scored.rollouts.input_ids[rows],
                                                             scored.rollouts.attention_mask[rows])
    assert torch.equal(scored.teacher_logits[rows], full) and torch.equal(scored.teacher_logp[rows], token)
    assert (scored.teacher_logits[scored.correct] == 0).all()


@pytest.mark.parametrize("exact", [False, True], ids=["sampled", "exact"])
@pytest.mark.parametrize("select", [pipeline.incorrect_rows, pipeline.all_rows], ids=["incorrect", "all"])
def test_overlapped_equals_synchronous(world, problems, exact, select):
    teacher = LocalTeacher(world.teacher)
    names = []

    def timer(name):
        names.append(name)
        return torch.no_grad()  # any context manager

    sync = run(world, problems, teacher=teacher, teacher_rows=select, exact=exact)
    over = run(world, problems, teacher=teacher, teacher_rows=select, exact=exact, overlap=True, timer=timer)
    assert {"generation", "reward", "teacher_scoring"} <= set(names) and over.teacher_busy_s > 0
    for key in ("input_ids", "attention_mask", "response_mask", "group"):
        assert torch.equal(getattr(sync.rollouts, key), getattr(over.rollouts, key)), key
    assert sync.rollouts.texts == over.rollouts.texts
    assert torch.equal(sync.correct, over.correct) and torch.equal(sync.teacher_rows, over.teacher_rows)
    on = sync.rollouts.response_mask.bool()  # overlap leaves 0 (not NaN) past a generation batch's width
    assert torch.equal(sync.teacher_logp[on].nan_to_num(123.0), over.teacher_logp[on].nan_to_num(123.0))
    assert torch.equal(sync.teacher_seq_logp().nan_to_num(123.0), over.teacher_seq_logp().nan_to_num(123.0))
    if exact:
        assert torch.equal(sync.teacher_logits[on], over.teacher_logits[on])
    else:
        assert sync.teacher_logits is None and over.teacher_logits is None


def test_a_given_generate_replaces_the_decoder(world, problems):
    calls = []

    def generate(prompts, **kwargs):  # e.g. VLLMEngine.generate
        calls.append(kwargs)
        return rollout.generate_rollouts(world.student, world.tokenizer, prompts, num_samples=kwargs["num_samples"],
                                         sampling=rollout.Sampling(**{k: v for k, v in kwargs.items()
                                                                      if k not in ("num_samples", "seed")}),
                                         seed=kwargs["seed"])

    scored = run(world, problems, generate=generate)
    assert calls == [dict(num_samples=3, seed=7, **SAMPLING.kwargs())]
    assert scored.rollouts.texts == run(world, problems).rollouts.texts


def test_sampling_from_config():
    cfg = load_config("tiny", overrides={"rollout.temperature": 0.7, "rollout.top_k": 5, "rollout.batch_size": 8})
    sampling = Sampling.from_config(cfg.rollout)
    assert sampling == Sampling(temperature=0.7, max_new_tokens=cfg.rollout.max_new_tokens, top_p=cfg.rollout.top_p,
                                top_k=5, repetition_penalty=cfg.rollout.repetition_penalty, batch_size=8)


def test_bad_inputs_name_the_argument(world, problems):
    teacher = LocalTeacher(world.teacher)

    class ScoresOnly:  # a server teacher: token log-probs, no full distributions
        def score(self, input_ids, attention_mask):
            return torch.zeros(input_ids.shape)

    cases = [
        (dict(problems=[]), "problems"),
        (dict(group_size=0), "group_size"),
        (dict(group_size=True), "group_size"),
        (dict(sampling={"temperature": 1.0}), "sampling"),
        (dict(teacher_rows=pipeline.incorrect_rows), "teacher"),
        (dict(exact=True), "teacher"),
        (dict(overlap=True), "teacher"),
        (dict(teacher=ScoresOnly(), exact=True), "exact"),
        (dict(teacher=teacher, overlap=True, generate=lambda prompts, **kw: None), "overlap"),
        (dict(grade=lambda texts, probs: [True]), "grade"),
        (dict(teacher=teacher, teacher_rows=lambda correct: torch.tensor([0, 99])), "teacher_rows"),
        (dict(teacher=teacher, teacher_rows=lambda correct: torch.tensor([1, 1])), "teacher_rows"),
        # overlap selects per generation batch: a selector that looks across rows is refused
        (dict(teacher=teacher, overlap=True, teacher_rows=lambda correct: torch.arange(min(2, len(correct)))),
         "teacher_rows"),
    ]
    for kwargs, name in cases:
        args = {"problems": problems, **kwargs}
        with pytest.raises(ValueError, match=name):
            run(world, args.pop("problems"), **args)
    with pytest.raises(ValueError, match="student_logp"):
        run(world, problems).student_seq_logp()
