"""Learning-rate selection: one grid for every method, scored on the validation split."""

import yaml

from scope_lib import lr_selection
from scope_lib.experiments import experiment_config, tuned_lr


def test_every_method_gets_the_same_trials_and_a_best_lr(tmp_path, monkeypatch):
    monkeypatch.setenv("SCOPE_RUNS_DIR", str(tmp_path / "runs"))  # never the repository's registry
    variants = ("opd", "scope")
    wide, best, base = lr_selection.select(model="tiny_routes_smoke", variants=variants, grid=(1e-3, 3e-3), k=2,
                                           smoke=True, workers=1)
    assert list(wide.index) == list(variants)
    assert set(best) == set(variants) and all(lr in (1e-3, 3e-3) for lr in best.values())
    for variant in variants:  # the chosen lr is the one with the highest validation score
        assert wide.loc[variant, best[variant]] == wide.loc[variant, [1e-3, 3e-3]].max()
    assert 0.0 <= base <= 1.0
    # each run was scored on the validation split, never on the eval tiers
    assert (tmp_path / "runs").exists()


def test_tuned_lrs_are_applied_per_method_and_explicit_lr_wins(tmp_path, monkeypatch):
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "tiny_lr.yaml").write_text(yaml.safe_dump({"lr": {"grpo": 3e-4, "scope": 3e-3}}))
    import scope_lib.experiments as experiments

    monkeypatch.setattr(experiments, "__file__", str(tmp_path / "scope_lib" / "experiments.py"))
    assert tuned_lr("tiny", "grpo") == {"optim.lr": 3e-4}
    assert tuned_lr("tiny", "no_dpaw") == {"optim.lr": 3e-3}  # ablations take SCOPE's
    assert tuned_lr("tiny", "kd") == {}  # not chosen: the preset's
    assert experiment_config("tiny", "grpo", 0).optim.lr == 3e-4
    assert experiment_config("tiny", "grpo", 0, **{"optim.lr": 1e-2}).optim.lr == 1e-2
