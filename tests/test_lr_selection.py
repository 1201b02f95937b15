"""Learning-rate selection: one grid for every method, scored on the validation split; the
hybrid's lr and teacher weight within the same number of trials; both tiny worlds."""

import pandas as pd
import pytest
import yaml

from scope_lib.experiments import lr_selection
from scope_lib.experiments.grid import experiment_config, tuned_lr, tuned_settings


def test_every_method_gets_the_same_trials_and_a_best_lr(tmp_path, monkeypatch):
    monkeypatch.setenv("SCOPE_RUNS_DIR", str(tmp_path / "runs"))  # never the repository's registry
    variants = ("opd", "scope")
    wide, best, base, hybrid_trials, hybrid_beta = lr_selection.select(
        model="tiny_routes_smoke", variants=variants, grid=(1e-3, 3e-3), k=2, smoke=True, workers=1)
    assert list(wide.index) == list(variants)
    assert set(best) == set(variants) and all(lr in (1e-3, 3e-3) for lr in best.values())
    for variant in variants:  # the chosen lr is the one with the highest validation score
        assert wide.loc[variant, best[variant]] == wide.loc[variant, [1e-3, 3e-3]].max()
    assert 0.0 <= base <= 1.0
    assert hybrid_beta is None and hybrid_trials.empty  # no hybrid asked for
    # each run was scored on the validation split, never on the eval tiers
    assert (tmp_path / "runs").exists()


def test_hybrid_plan_spends_the_same_number_of_trials():
    lrs, betas = lr_selection.hybrid_plan()
    assert len(lrs) + len(betas) == len(lr_selection.LR_GRID)  # the shipped grid: every method's budget
    assert lrs == (1e-4, 3e-4, 1e-3) and betas == (0.3,)  # the largest lr gives way to one other beta
    assert lr_selection.hybrid_plan((1e-3, 3e-3, 1e-2, 3e-4), (1.0, 0.1, 3.0)) == ((3e-4, 1e-3), (0.1, 3.0))
    assert lr_selection.hybrid_plan((1e-3,), (1.0,)) == ((1e-3,), ())
    with pytest.raises(ValueError, match="no trial"):
        lr_selection.hybrid_plan((1e-3, 3e-3), (1.0, 0.1, 3.0))
    with pytest.raises(ValueError, match="distinct"):
        lr_selection.hybrid_plan((1e-3, 3e-3), (1.0, 1.0))


def _fake_run_grid(calls, score):
    """run_grid's stand-in: records each call, scores every run with `score(variant, lr, beta)`."""

    def run_grid(scale, variants, seeds, *, smoke, include_base, **overrides):
        calls.append((scale, tuple(variants), smoke, overrides))
        lr, beta = overrides["optim.lr"], overrides["hybrid.beta"]
        rows = []
        for eval_set in ("validation", "average"):  # as run_grid returns them: each set and their average
            rows += [{"variant": "base", "seed": seeds[0], "eval_set": eval_set, "k": 4, "avg@k": 0.3, "pass@k": 0.5}]
            rows += [{"variant": v, "seed": seeds[0], "eval_set": eval_set, "k": 4, "avg@k": score(v, lr, beta),
                      "pass@k": 0.5} for v in variants]
        return pd.DataFrame(rows), {}

    return run_grid


@pytest.mark.parametrize("scale,smoke,model", [("tiny", False, "tiny_routes"), ("tiny_code", True, "tiny_code_smoke"),
                                               ("tiny_code", False, "tiny_code")])
def test_hybrid_lr_then_beta_with_the_budget_of_every_method(tmp_path, monkeypatch, scale, smoke, model):
    import scope_lib.experiments.grid as experiments

    def score(variant, lr, beta):  # a made-up landscape: the hybrid peaks at lr 3e-4, beta 0.3
        if variant == "hybrid":
            return {1e-4: 0.45, 3e-4: 0.5, 1e-3: 0.4, 3e-3: 0.9}[lr] + (0.2 if beta == 0.3 else 0.0)
        return {1e-4: 0.1, 3e-4: 0.2, 1e-3: 0.6, 3e-3: 0.4}[lr] + (0.01 if variant == "scope" else 0.0)

    calls = []
    monkeypatch.setattr(experiments, "run_grid", _fake_run_grid(calls, score))
    selection = lr_selection.select(scale, smoke=smoke)
    assert selection.trials == {v: 4 for v in lr_selection.VARIANTS}  # the hybrid too: 3 lrs + 1 beta
    assert selection.best == {"grpo": 1e-3, "kd": 1e-3, "opd": 1e-3, "opd_g8": 1e-3, "scope": 1e-3, "hybrid": 3e-4}
    assert selection.hybrid_beta == 0.3  # tried at the hybrid's chosen lr, and better there
    assert sorted(map(tuple, selection.hybrid_trials[["lr", "beta"]].to_numpy())) == [(1e-4, 1.0), (3e-4, 0.3), (3e-4, 1.0), (1e-3, 1.0)]
    assert not selection.wide["collapsed at every lr"].any()
    for called_scale, variants, called_smoke, overrides in calls:  # every run: this scale's validation split
        assert (called_scale, called_smoke) == (scale, smoke)
        assert overrides["data.eval_sets"] == ["tiny_validation"]
        assert overrides["model.student"] == overrides["model.teacher"] == model
    assert [c[1] for c in calls][-1] == ("hybrid",) and calls[-1][3]["optim.lr"] == 3e-4
    assert all("hybrid" not in c[1] for c in calls if c[3]["optim.lr"] == 3e-3)  # the largest lr: not the hybrid's

    # written where experiments reads it, and applied: the hybrid gets its lr and beta, others only their lr
    configs = tmp_path / "configs"
    configs.mkdir()
    monkeypatch.setattr(lr_selection, "CONFIGS", configs)
    path = lr_selection.write_config(scale, selection)
    assert path == configs / f"{scale}_lr.yaml"
    assert yaml.safe_load(path.read_text()) == {"lr": selection.best, "hybrid_beta": 0.3}
    monkeypatch.setattr(experiments, "CONFIGS", tmp_path / "configs")
    assert tuned_settings(scale, "hybrid") == {"optim.lr": 3e-4, "hybrid.beta": 0.3}
    assert tuned_settings(scale, "scope") == {"optim.lr": 1e-3}
    cfg = experiment_config(scale, "hybrid", 0)
    assert (cfg.method, cfg.optim.lr, cfg.hybrid.beta) == ("hybrid", 3e-4, 0.3)
    assert experiment_config(scale, "hybrid_beta2.0", 0).hybrid.beta == 2.0  # the variant's own value wins
    assert experiment_config(scale, "hybrid_beta2.0", 0).optim.lr == 3e-4  # with the hybrid's lr
    assert experiment_config(scale, "hybrid", 0, **{"hybrid.beta": 0.7}).hybrid.beta == 0.7  # explicit wins
    assert experiment_config(scale, "scope", 0).hybrid.beta == 1.0  # other methods keep the neutral value
    assert "lr 0.0003" in lr_selection.report(scale, model, selection, k=4, smoke=smoke)


def test_a_method_that_collapses_at_every_lr_it_tried_is_flagged(monkeypatch):
    import scope_lib.experiments.grid as experiments

    calls = []
    monkeypatch.setattr(experiments, "run_grid", _fake_run_grid(calls, lambda v, lr, beta: 0.1 if v == "hybrid" else 0.5))
    selection = lr_selection.select("tiny", variants=("grpo", "hybrid"))
    assert selection.wide["collapsed at every lr"].to_dict() == {"grpo": False, "hybrid": True}
    assert selection.hybrid_beta == 1.0  # a tie keeps the default


def test_tiny_code_validation_configs_load():
    from scope_lib.world import tiny_task

    for model in ("tiny_code", "tiny_code_smoke"):
        cfg = experiment_config("tiny_code", "hybrid", lr_selection.SELECTION_SEED, smoke=model.endswith("smoke"),
                                **{"data.eval_sets": ["tiny_validation"], "model.student": model, "model.teacher": model})
        assert cfg.reward.verifier == "code" and cfg.data.eval_sets == ["tiny_validation"]
        assert hasattr(tiny_task(model), "validation_set")  # world.load_world's tiny_validation split
    with pytest.raises(ValueError, match="scale"):
        lr_selection.select("smol")


def test_tuned_lrs_are_applied_per_method_and_explicit_lr_wins(tmp_path, monkeypatch):
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "tiny_lr.yaml").write_text(yaml.safe_dump({"lr": {"grpo": 3e-4, "scope": 3e-3}}))
    import scope_lib.experiments.grid as experiments

    monkeypatch.setattr(experiments, "CONFIGS", tmp_path / "configs")
    assert tuned_lr("tiny", "grpo") == {"optim.lr": 3e-4}
    assert tuned_lr("tiny", "no_dpaw") == {"optim.lr": 3e-3}  # ablations take SCOPE's
    assert tuned_lr("tiny", "scope_tau_student0.05") == {"optim.lr": 3e-3}  # so do the tau families
    assert tuned_lr("tiny", "kd") == {}  # not chosen: the preset's
    assert tuned_lr("tiny", "hybrid") == {} == tuned_lr("tiny", "hybrid_beta0.5")  # not SCOPE's
    assert tuned_settings("tiny", "hybrid") == {}  # no hybrid_beta in the file: the default
    assert experiment_config("tiny", "grpo", 0).optim.lr == 3e-4
    assert experiment_config("tiny", "grpo", 0, **{"optim.lr": 1e-2}).optim.lr == 1e-2


@pytest.mark.parametrize("text", ["1e-4", "1e-4,1e-4", "1e-4,-3e-4", "1e-4,inf", "1e-4,nan", "1e-4,fast"])
def test_a_grid_that_is_not_two_distinct_positive_lrs_is_refused_naming_it(text, capsys):
    with pytest.raises(SystemExit):
        lr_selection.main(["--out", "unused", "--grid", text])
    assert f"--grid {text!r}" in capsys.readouterr().err


def test_a_grid_is_sorted_and_named_in_the_record_unless_it_is_the_default():
    assert lr_selection._grid("1e-3,3e-5,1e-4") == (3e-5, 1e-4, 1e-3)

    def record(grid):
        wide = pd.DataFrame({**{lr: [0.5] for lr in grid}, "best lr": [grid[0]], "collapsed at every lr": [False]},
                            index=["scope"])
        selection = lr_selection.Selection(wide, {"scope": grid[0]}, 0.4, pd.DataFrame(columns=["lr", "beta", "avg@k"]), None)
        return lr_selection.report("tiny_code", "tiny_code", selection, k=4, smoke=False, grid=grid)

    assert "--scale tiny_code --grid 3e-05,0.0001 --write-config`" in record((3e-5, 1e-4))
    assert "--scale tiny_code --write-config`" in record(lr_selection.LR_GRID)
