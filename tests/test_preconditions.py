"""The world's preconditions: hand-made tables with known answers, and a toy world end to end."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from scope_lib.studies import preconditions as pre
from scope_lib.worlds import routes
from scope_lib.rollout import Sampling


def test_group_ess_frac_against_hand_values():
    assert pre.group_ess_frac(np.ones(5)) == pytest.approx(1.0)
    # weights (3, 1): (4)^2 / (9 + 1) / 2 = 0.8
    assert pre.group_ess_frac(np.array([3.0, 1.0])) == pytest.approx(0.8)
    rng = np.random.default_rng(0)
    w = rng.random(7)
    assert pre.group_ess_frac(w) == pytest.approx(w.sum() ** 2 / (w ** 2).sum() / 7)
    with pytest.raises(ValueError, match="weights"):
        pre.group_ess_frac(np.array([0.0, 0.0]))


def _table(rows):
    """rows: (group, correct, route, log_ppl)."""
    problems = [routes.make_problem(50, [("+", 30), ("-", 40)], source="t", index=i) for i in range(10)]
    group = [r[0] for r in rows]
    return pre.student_path_table(problems, group, [r[1] for r in rows], [-r[3] for r in rows], [r[2] for r in rows])


def test_student_path_stats_counts_routes_and_weights():
    rows = [
        # group 0: both routes, the rare one (subfirst) harder -> heavier
        (0, True, "inorder", 0.1), (0, True, "inorder", 0.1), (0, True, "subfirst", 0.6), (0, False, "other", 2.0),
        # group 1: both routes, the rare one easier -> lighter
        (1, True, "inorder", 0.5), (1, True, "subfirst", 0.2),
        # group 2: one route only
        (2, True, "inorder", 0.1), (2, True, "inorder", 0.3),
        # group 3: a single correct rollout (not counted among >= 2)
        (3, True, "subfirst", 0.9), (3, False, "other", 1.0),
    ]
    table = _table(rows)
    # Eq. 4 weights: softmax of log-PPL per group over correct rows
    g0 = np.exp([0.1, 0.1, 0.6]) / np.exp([0.1, 0.1, 0.6]).sum()
    assert table.loc[table.group == 0, "weight"].to_numpy()[:3] == pytest.approx(g0, rel=1e-6)
    assert table.loc[~table.correct, "weight"].eq(0).all()
    stats = pre.student_path_stats(table)
    assert stats["groups_2plus_correct"] == 3
    assert stats["route_share:subfirst"] == pytest.approx(3 / 8)  # 3 subfirst vs 5 inorder among correct rows
    assert stats["two_route_frac"] == pytest.approx(2 / 3)
    assert stats["route_log_ppl:subfirst"] == pytest.approx((0.6 + 0.2 + 0.9) / 3)
    assert stats["mixed_groups"] == 2
    assert stats["rare_route_heavier_frac"] == pytest.approx(0.5)
    expected_ess = np.mean([pre.group_ess_frac(g0), pre.group_ess_frac(np.exp([0.5, 0.2])),
                            pre.group_ess_frac(np.exp([0.1, 0.3]))])
    assert stats["student_ess_frac"] == pytest.approx(expected_ess)
    verdicts = pre.check_preconditions({**stats, "recovery_with_error": 0.3})
    assert verdicts["two_route_frac"] is True and verdicts["rare_route_heavier_frac"] is False
    assert verdicts["recovery_with_error"] is True
    assert pre.check_preconditions({})["student_ess_frac"] is None
    assert "| `two_route_frac` | 0.667 | >= 0.5 | yes |" in pre.preconditions_markdown({**stats, "recovery_with_error": math.nan})


def test_recovery_stats_conditions_on_the_error():
    rates = pd.DataFrame({"prefix_has_error": [True, True, False, False, None],
                          "recovery": [0.2, 0.4, 1.0, 0.8, 0.5]})
    stats = pre.recovery_stats(rates)
    assert stats["recovery_with_error"] == pytest.approx(0.3)
    assert stats["recovery_before_error"] == pytest.approx(0.9)
    assert stats["recovery_all"] == pytest.approx(0.58)
    assert stats["prefixes_with_error"] == 2


def test_measure_student_path_on_a_toy_world():
    from scope_lib.world import _tiny_world

    world = _tiny_world("tiny_routes_smoke", progress=False)
    torch.manual_seed(0)
    problems = routes.validation_set(6)
    table, stats = pre.measure_student_path(world.student, world.tokenizer, problems, routes.format_prompt,
                                            routes.route_of, group_size=4,
                                            sampling=Sampling(temperature=1.0, max_new_tokens=24))
    assert len(table) == 24 and set(table["group"]) == set(range(6))
    assert table.loc[~table["correct"], "weight"].eq(0).all()
    # weights of each group's correct rows sum to 1 (sum normalisation)
    sums = table[table["correct"]].groupby("group")["weight"].sum()
    assert np.allclose(sums, 1.0)
    assert set(stats) >= {"student_ess_frac", "two_route_frac", "rare_route_heavier_frac"}


def test_teacher_fix_rate_on_a_toy_world():
    from scope_lib.world import _tiny_world

    world = _tiny_world("tiny_routes_smoke", progress=False)
    stats = pre.teacher_fix_rate(world.teacher, world.tokenizer, routes.validation_set(3), deltas=(1, 10))
    assert stats["teacher_fix_cases"] == 6
    assert 0.0 <= stats["teacher_fix_rate"] <= 1.0 and 0.0 <= stats["teacher_fix_correct"] <= 1.0


def test_shipped_route_world_matches_its_manifest():
    """The committed world loads only after its SHA-256 check (corruption cases: tests/test_shipped.py)."""
    from scope_lib.worlds.shipped import verify_world
    from scope_lib.world import SHIPPED_DIR

    verify_world(SHIPPED_DIR / "tiny_routes")


def test_unreadable_correct_rollouts_count_in_the_target_and_apart_in_the_diagnostic():
    rows = [(0, True, "inorder", 0.1), (0, True, "subfirst", 0.4),
            (1, True, "inorder", 0.1), (1, True, "other", 0.9),  # one readable route: not a two-route group
            (2, True, "other", 0.5), (2, True, "other", 0.6), (2, False, "other", 1.0)]
    stats = pre.student_path_stats(_table(rows))
    assert stats["groups_2plus_correct"] == 3 and stats["two_route_frac"] == pytest.approx(1 / 3)
    assert stats["unread_route_frac"] == pytest.approx(3 / 6)
    assert stats["two_route_frac_readable"] == pytest.approx(1 / 1)  # only group 0 has two readable correct


def test_second_pass_rate_forces_a_rederivation_and_reads_it():
    from scope_lib.world import _tiny_world

    world = _tiny_world("tiny_routes_smoke", progress=False)
    problems = routes.validation_set(6)
    calls = {}

    def fake_generate(model, tokenizer, prompts, **kwargs):  # a model that restates the start of every other problem
        calls["prompts"] = prompts
        texts = [f"{p.meta['start']}.\n" + "\\boxed{" + p.answer + "}" if i % 2 == 0 else "7.\n\\boxed{1}"
                 for i, p in enumerate(problems)]
        return type("Batch", (), {"texts": texts})()

    import scope_lib.rollout as rollout

    original = rollout.generate_rollouts
    rollout.generate_rollouts = fake_generate
    try:
        rates = pre.second_pass_rate(world.student, world.tokenizer, problems)
    finally:
        rollout.generate_rollouts = original
    assert all(prompt.endswith("\nStart with ") for prompt in calls["prompts"])
    first = routes.solution_text(problems[0].meta["start"], [tuple(s) for s in problems[0].meta["steps"]],
                                 "subfirst" if problems[0].meta["kind"] == "subfirst_only" else "inorder")
    assert calls["prompts"][0] == routes.format_prompt(problems[0]) + first.rsplit("\n", 1)[0] + "\nStart with "
    assert rates == {"second_pass_restated": 0.5, "second_pass_correct": 0.5, "second_pass_cases": 6.0}


def test_eq4_regime_table_reads_each_record_and_marks_a_missing_one(tmp_path):
    import json

    import numpy as np

    from scope_lib.studies.preconditions import EQ4_REGIME_RECORDS, eq4_regime_table, paper_teacher_path_ess

    rng = np.random.default_rng(0)
    written = {}
    for label, record, key, path, note in EQ4_REGIME_RECORDS:
        if "tiny_code" in record:
            continue  # left missing
        file = tmp_path / record
        file.parent.mkdir(parents=True, exist_ok=True)
        data = json.loads(file.read_text()) if file.exists() else {}
        data[key] = written[(record, key)] = float(rng.uniform(0.5, 1.0))
        file.write_text(json.dumps(data))
    table = eq4_regime_table(tmp_path)
    assert len(table) == len(EQ4_REGIME_RECORDS) + 1
    for (label, record, key, path, note), row in zip(EQ4_REGIME_RECORDS, table.itertuples()):
        if (record, key) in written:
            assert row._3 == written[(record, key)] and row.source == record
        else:
            assert np.isnan(row._3) and row.source.endswith("(missing)")
    assert table["ess_frac@tau=1"].iloc[-1] == paper_teacher_path_ess()
    # the paper's implied value by hand: softmax of -NLL over the four Table 6 quartiles
    w = np.exp(-np.array([0.305, 0.448, 0.536, 0.688]))
    assert abs(paper_teacher_path_ess() - w.sum() ** 2 / (4 * (w ** 2).sum())) < 1e-12


def test_regime_table_puts_this_runs_ess_beside_the_records(tmp_path):
    import numpy as np
    import pandas as pd

    from scope_lib.studies.dpaw import STUDENT_PATH, TEACHER_PATH, regime_table
    from scope_lib.notebook.claims import regime_lines

    rng = np.random.default_rng(1)
    values = {(tau, path): float(rng.uniform(0.5, 1.0)) for tau in (0.5, 1.0) for path in (STUDENT_PATH, TEACHER_PATH)}
    weight_table = pd.DataFrame({"ess_frac": list(values.values())},
                                index=pd.MultiIndex.from_tuples(list(values), names=["tau", "path"]))
    table = regime_table(weight_table, 1.0, "this run", "note", records_root=tmp_path)  # no records there
    assert table["ess_frac@tau=1"].iloc[0] == values[(1.0, STUDENT_PATH)]
    assert table["ess_frac@tau=1"].iloc[1] == values[(1.0, TEACHER_PATH)]
    assert table["source"].iloc[2:-1].str.endswith("(missing)").all()
    line = regime_lines(table)[0]
    assert f"{values[(1.0, STUDENT_PATH)]:.4f}" in line and "not recorded" in line
    assert "undefined" not in line
    # a record that exists but holds no value (no group with two correct answers) is not "not recorded"
    recorded = table.assign(source=table["source"].str.replace(" (missing)", "", regex=False))
    line = regime_lines(recorded)[0]
    assert "not recorded" not in line and "undefined (no group with 2+ correct answers)" in line
    with pytest.raises(ValueError, match="tau"):
        regime_table(weight_table, 2.0, "this run", "note", records_root=tmp_path)


def test_tau_student_values_come_from_the_committed_record_and_a_missing_one_is_named(tmp_path):
    """Notebook 08's sweep reads its tau_student values here: the shipped world's record gives one
    per ESS target, in the targets' order, each with the ESS it reaches; no record, or a record
    without a target, is refused naming the file (the notebook once read a wrong folder and ran a
    fallback value instead, unnoticed)."""
    values = pre.tau_student_values("tiny_routes")
    record = pre.committed_record("tiny_routes")
    assert len(values) == len(pre.ESS_TARGETS) == 3
    assert values == sorted(values, reverse=True) and all(0 < v < 1 for v in values)  # sharper as the ESS falls
    for target, tau in zip(pre.ESS_TARGETS, values):
        assert abs(record[f"student_ess_frac@tau_student={tau:g}"] - target) < 0.01
    with pytest.raises(FileNotFoundError, match=r"world_nowhere.*preconditions\.json.*scope_lib\.studies\.preconditions nowhere"):
        pre.tau_student_values("nowhere", root=tmp_path)
    folder = tmp_path / "data" / "world_partial"
    folder.mkdir(parents=True)
    (folder / "preconditions.json").write_text(json.dumps({"tau_student@ess=0.95": 0.1}))
    with pytest.raises(KeyError, match=r"world_partial.*\[0\.85, 0\.7\]"):
        pre.tau_student_values("partial", root=tmp_path)
