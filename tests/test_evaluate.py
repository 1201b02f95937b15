"""The evaluator's counts and metrics on a hand-made case (generation replaced by fixed texts)."""

import numpy as np
import pytest
import torch

from scope_lib import evaluate as evaluate_module
from scope_lib import metrics
from scope_lib.problem import Problem
from scope_lib.rollout import RolloutBatch


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

    def fake_generate(model, tokenizer, prompts, *, num_samples, **kw):
        texts = [t for p in prompts for t in scripted[p][:num_samples]]
        n = len(texts)
        z = torch.zeros(n, 1, dtype=torch.long)
        group = torch.arange(len(prompts)).repeat_interleave(num_samples)
        return RolloutBatch(z, z, z, group, texts, z[:, 0], 1)

    monkeypatch.setattr(evaluate_module, "generate_rollouts", fake_generate)
    result = evaluate_module.evaluate(None, None, sets, k=3, format_prompt=lambda p: p.question + "\n",
                                      progress=False, keep_texts=True)
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
