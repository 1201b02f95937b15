"""The evaluator's counts and metrics on hand-made cases (generation replaced by fixed texts), math
answers and code run in the sandbox."""

import numpy as np
import pytest
import torch

from scope_lib import evaluate as evaluate_module
from scope_lib import grading, metrics
from scope_lib.worlds.code_benchmarks import load_code_benchmark
from scope_lib.grading.code import CodeTests
from scope_lib.problem import Problem
from scope_lib.rollout import RolloutBatch, Sampling


def test_counts_and_summary_match_hand_case(monkeypatch):
    sets = {
        "easy": [Problem(id="e0", question="q0", answer="3"), Problem(id="e1", question="q1", answer="10")],
        "hard": [Problem(id="h0", question="q2", answer="7")],
    }
    scripted = {  # per prompt, k=3 responses
        "q0\n": ["\\boxed{3}", "\\boxed{4}", "x\n\\boxed{3}"],
        "q1\n": ["\\boxed{1}", "nothing", "\\boxed{2}"],
        "q2\n": ["\\boxed{7}", "\\boxed{7}", "\\boxed{7}"],
    }

    calls = []

    def fake_generate(model, tokenizer, prompts, *, num_samples, **kw):
        calls.append(kw)
        texts = [t for p in prompts for t in scripted[p][:num_samples]]
        n = len(texts)
        z = torch.zeros(n, 1, dtype=torch.long)
        group = torch.arange(len(prompts)).repeat_interleave(num_samples)
        return RolloutBatch(z, z, z, group, texts, z[:, 0], 1)

    monkeypatch.setattr(evaluate_module, "generate_rollouts", fake_generate)
    sampling = Sampling(temperature=0.3, max_new_tokens=7, top_p=0.9, top_k=5, repetition_penalty=1.1, batch_size=2)
    result = evaluate_module.evaluate(None, None, sets, k=3, sampling=sampling, format_prompt=lambda p: p.question + "\n",
                                      seed=4, progress=False, keep_texts=True)
    assert calls == [dict(sampling=sampling, seed=4), dict(sampling=sampling, seed=5)]  # one seed per set
    assert result.settings == dict(k=3, temperature=0.3, top_p=0.9, top_k=5, max_new_tokens=7, repetition_penalty=1.1,
                                   seed=4, verifiers={"easy": "math", "hard": "math"})
    assert result.counts("easy").tolist() == [2, 0] and result.counts("hard").tolist() == [3]
    summary = result.summary()
    assert summary["easy"]["avg@3"] == pytest.approx(2 / 6)
    assert summary["hard"]["pass@3"] == 1.0 and summary["easy"]["pass@3"] == 0.5
    assert summary["average"]["avg@3"] == pytest.approx((2 / 6 + 1) / 2)
    assert result.pass_at_k("easy", 1) == pytest.approx(np.mean([metrics.pass_at_k(3, 2, 1), 0.0]))
    assert result.pass_at_k_curve("hard") == {1: 1.0, 2: 1.0, 3: 1.0}
    assert result.texts["easy"][1] == scripted["q1\n"]


def test_bad_arguments():
    with pytest.raises(ValueError, match="k"):
        evaluate_module.evaluate(None, None, {"a": []}, k=0)
    with pytest.raises(ValueError, match="eval_sets"):
        evaluate_module.evaluate(None, None, {}, k=1)


# --- code sets: graded in the sandbox through scope_lib.grading --------------------------------

def _scripted(monkeypatch, scripted):
    def fake_generate(model, tokenizer, prompts, *, num_samples, **kw):
        texts = [t for p in prompts for t in scripted[p][:num_samples]]
        z = torch.zeros(len(texts), 1, dtype=torch.long)
        return RolloutBatch(z, z, z, torch.arange(len(prompts)).repeat_interleave(num_samples), texts, z[:, 0], 1)

    monkeypatch.setattr(evaluate_module, "generate_rollouts", fake_generate)


def test_code_and_math_sets_each_get_their_verifier(monkeypatch):
    first, second = load_code_benchmark("humaneval", limit=2)
    slow = Problem(id="taco/slow", question="q-slow", source="taco",
                   answer=CodeTests(kind="stdio", cases=(("", "1\n"),), timeout=6).to_json())
    fence = "```python\n{}```".format
    _scripted(monkeypatch, {
        first.question: [fence(first.solution), fence(first.question + "    return None\n"), "no code"],
        second.question: [fence(second.solution), fence(second.solution), fence(first.solution)],
        "q-slow": [fence("import time\ntime.sleep(0.8)\nprint(1)\n")] * 3,
        "q-math": ["\\boxed{7}", "\\boxed{8}", "\\boxed{7}"],
    })
    sets = {"humaneval": [first, second], "taco": [slow],
            "math": [Problem(id="m", question="q-math", answer="7", source="aime24")]}
    result = evaluate_module.evaluate(None, None, sets, k=3, format_prompt=lambda p: p.question, progress=False)
    assert result.settings["verifiers"] == {"humaneval": "code", "taco": "code", "math": "math"}
    assert result.correct["humaneval"].tolist() == [[True, False, False], [True, True, False]]
    assert result.correct["taco"].tolist() == [[True] * 3] and result.correct["math"].tolist() == [[True, False, True]]
    assert result.pass_at_k("humaneval", 1) == pytest.approx((1 / 3 + 2 / 3) / 2)
    # the sandbox settings reach the verifier: 0.3 s per case times the sleeping program out
    tight = evaluate_module.evaluate(None, None, {"taco": [slow]}, k=3, format_prompt=lambda p: p.question,
                                     progress=False, verifier="code", code=grading.CodeGrading(timeout_s=0.3))
    assert tight.correct["taco"].tolist() == [[False] * 3]


def test_verifier_argument_is_checked(monkeypatch):
    first = load_code_benchmark("humaneval", limit=1)[0]
    _scripted(monkeypatch, {first.question: ["\\boxed{1}"]})
    with pytest.raises(ValueError, match=r"verifier: expected one of \('math', 'code'\) or None, got 'maths'"):
        evaluate_module.evaluate(None, None, {"h": [first]}, k=1, verifier="maths")
    with pytest.raises(ValueError, match=r"eval_sets\['h'\]: mixes code problems"):
        evaluate_module.evaluate(None, None, {"h": [first, Problem(id="m", question="q", answer="1")]}, k=1)
    with pytest.raises(ValueError, match=r"humaneval/HumanEval/0.*kind 'code'"):  # forced math on a code set
        evaluate_module.evaluate(None, None, {"h": [first]}, k=1, verifier="math", format_prompt=lambda p: p.question,
                                 progress=False)
