"""The run registry: a run or an evaluation is computed once and found again by its config."""

import numpy as np
import pytest

import scope_lib.experiments.registry as runs
from scope_lib.config import load_config

SMOKE = {
    "model.student": "tiny_smoke", "model.teacher": "tiny_smoke", "progress": False, "steps": 2,
    "optim.prompts_per_step": 2, "optim.mini_batch_prompts": 2, "rollout.group_size": 2,
    "rollout.max_new_tokens": 8, "checkpoint_every": 0, "data.eval_problems_per_set": 3,
    "eval.k": 2, "eval.max_new_tokens": 8,
}


def test_runs_and_evaluations_are_cached_by_config(tmp_path, monkeypatch):
    cfg = load_config("tiny", overrides={**SMOKE, "method": "opd"})
    run = runs.get_run(cfg, root=tmp_path)
    assert run.path.name == runs.run_key(cfg) and len(run.history) == 2
    # A second request must not train again ...
    import scope_lib.trainer

    monkeypatch.setattr(scope_lib.trainer, "train", lambda *a, **k: pytest.fail("retrained a finished run"))
    again = runs.get_run(cfg, root=tmp_path)
    assert again.history == run.history
    # ... while a different hyperparameter is a different run.
    other = load_config("tiny", overrides={**SMOKE, "method": "opd", "optim.lr": 3e-4})
    assert runs.run_key(other) != runs.run_key(cfg)

    first = runs.evaluate_model(run, cfg, root=tmp_path)
    base = runs.evaluate_model(None, cfg, root=tmp_path)
    assert set(first.correct) == {"chain2", "chain3", "chain4", "chain5"}
    assert all(g.shape == (3, 2) for g in first.correct.values())
    monkeypatch.setattr(runs, "evaluate", lambda *a, **k: pytest.fail("re-evaluated a cached result"))
    cached = runs.evaluate_model(run, cfg, root=tmp_path)
    assert all(np.array_equal(cached.correct[n], first.correct[n]) for n in first.correct)
    assert runs.evaluate_model(None, cfg, root=tmp_path).summary() == base.summary()
