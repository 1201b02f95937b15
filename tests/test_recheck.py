"""Re-derivation traces (the default world's teacher habit, and a rare route of its student):
the texts, how a re-derivation is graded and diagnosed, and the tau_student sweep of the
preconditions record against hand computations."""

import math
import random
import re

import numpy as np
import pandas as pd
import pytest
import torch

from scope_lib.studies import preconditions as pre
from scope_lib.worlds import routes
from scope_lib.verify import is_correct

PROBLEM = routes.make_problem(50, [("+", 30), ("-", 40), ("+", 5)], source="test", index=0)  # answer 45


def _problem_of(prompt: str):
    start = int(re.match(r"Start with (\d+)\.", prompt)[1])
    steps = [("+" if word == "Add" else "-", int(b)) for word, b in re.findall(r"(Add|Subtract) (\d+)\.", prompt)]
    return routes.make_problem(start, steps, source="test", index=0, max_value=routes.TEACHER_MAX)


def test_recheck_traces_are_right_and_their_first_pass_flaws_are_exactly_the_marked_lines():
    mix = routes.SolutionMix(max_value=routes.TEACHER_MAX, rare_route_prob=0.03, slip_prob=0.0, mask_flaws=True,
                             recheck_prob=1.0, recheck_flaw_prob=0.4)
    texts = routes.pretraining_texts(300, mix, seed=11)
    flawed_lines = 0
    for prompt, solution in texts:
        problem = _problem_of(prompt)
        clean = solution.replace(routes.OUT_OF_LOSS, "")
        assert is_correct(clean, problem.answer) and routes.route_of(problem, clean) == routes.RECHECK
        assert routes.first_route_error(problem, clean) is None
        lines = solution.split("\n")
        mark = lines.index(f"Start with {problem.meta['start']}.")
        second = "\n".join(lines[mark + 1:])
        assert routes.OUT_OF_LOSS not in second and routes.first_route_error(problem, second) is None
        value = problem.meta["start"]
        steps = [tuple(s) for s in problem.meta["steps"]]
        for line in lines[:mark]:  # the first pass: a line is marked exactly when it is wrong
            a, op, b, c = re.match(r"^\x00?(-?\d+)([+\-])(\d+)=(-?\d+)$", line).groups()
            a, b, c = int(a), int(b), int(c)
            assert a == value  # the flaw is carried on, never repaired inside the first pass
            wrong = (op, b) not in steps or c != (a + b if op == "+" else a - b)
            assert line.startswith(routes.OUT_OF_LOSS) == wrong, solution
            flawed_lines += wrong
            value = c
    assert flawed_lines > 0.3 * sum(len(_problem_of(p).meta["steps"]) for p, _ in texts)  # P 0.4 a line


def test_a_rare_recheck_habit_leaves_the_other_mixes_unchanged():
    base = routes.STUDENT_MIX
    habit = routes.SolutionMix(**{**base.__dict__, "recheck_prob": 0.05, "mask_flaws": True})
    texts = routes.pretraining_texts(2000, habit, seed=3)
    share = sum("Start with" in s for _, s in texts) / len(texts)
    # direct answers are drawn first (15% of problems with <= 5 operations), so the habit is 5% of the rest
    assert 0.025 < share < 0.06
    assert routes.pretraining_texts(200, base, seed=3) == routes.pretraining_texts(200, base, seed=3)


def test_a_rederivation_is_judged_by_its_second_pass():
    first_bad = "50+30=81\n81-40=41\n41+5=46\n"
    cases = {
        # a right second pass repairs whatever the first pass wrote
        first_bad + "Start with 50.\n50+30=80\n80-40=40\n40+5=45\n\\boxed{45}": None,
        "50+30=80\n80-40=40\n40+5=45\nStart with 50.\n50-40=10\n10+30=40\n40+5=45\n\\boxed{45}": None,
        # both wrong: the first error of the whole text, in the first pass
        first_bad + "Start with 50.\n50+30=81\n81-40=41\n41+5=46\n\\boxed{46}": ("arithmetic slip", 0),
        # a clean first pass, a wrong second pass: the second pass's error, counted in the whole text
        "50+30=80\n80-40=40\n40+5=45\nStart with 50.\n50+30=80\n80-40=41\n41+5=46\n\\boxed{46}": ("arithmetic slip", 5),
        # a first pass that stops early, then a wrong second pass
        "50+30=80\nStart with 50.\n50+30=80\n80+40=120\n\\boxed{120}": ("missing steps", 1),
    }
    for text, expected in cases.items():
        error = routes.first_route_error(PROBLEM, text)
        assert routes.route_of(PROBLEM, text) == routes.RECHECK
        if expected is None:
            assert error is None and is_correct(text, PROBLEM.answer), text
        else:
            assert (error.kind, error.line) == expected, (text, error)
            assert not is_correct(text, PROBLEM.answer)


def _table(rng, groups=12):
    problems = [PROBLEM] * groups
    rows = []
    for g in range(groups):
        n = int(rng.integers(1, 7))
        for _ in range(n):
            rows.append((g, bool(rng.random() < 0.8), "inorder", float(rng.gamma(2.0, 0.05))))
    return pre.student_path_table(problems, [r[0] for r in rows], [r[1] for r in rows], [-r[3] for r in rows],
                                  [r[2] for r in rows])


def _hand_ess(table, tau):
    fracs = []
    for _, rows in table[table.correct].groupby("group"):
        if len(rows) < 2:
            continue
        x = rows["log_ppl"].to_numpy(dtype=np.float64) / tau
        w = np.exp(x - x.max())
        w = w / w.sum()
        fracs.append(w.sum() ** 2 / (w ** 2).sum() / len(w))
    return float(np.mean(fracs))


def test_ess_at_tau_and_its_inverse_against_a_float64_hand_computation():
    rng = np.random.default_rng(20261206)
    table = _table(rng)
    for tau in (0.01, 0.05, 0.3, 1.0, 2.0):
        assert pre.ess_at_tau(table, tau) == pytest.approx(_hand_ess(table, tau), rel=1e-9)
    assert pre.ess_at_tau(table, 1.0) > pre.ess_at_tau(table, 0.1) > pre.ess_at_tau(table, 0.01)
    for target in (0.95, 0.85, 0.7):
        tau = pre.tau_for_ess(table, target)
        assert _hand_ess(table, tau) == pytest.approx(target, abs=1e-6)
    sweep = pre.tau_student_sweep(table)
    assert [row["target"] for row in sweep] == list(pre.ESS_TARGETS)
    assert sweep[0]["tau_student"] > sweep[1]["tau_student"] > sweep[2]["tau_student"]
    for row in sweep:  # the rounded tau's own ESS is what the record states
        assert row["ess"] == pytest.approx(_hand_ess(table, row["tau_student"]), rel=1e-9)
        assert float(f"{row['tau_student']:.2g}") == row["tau_student"]
    with pytest.raises(ValueError, match="target"):
        pre.tau_for_ess(table, 1.5)
    with pytest.raises(ValueError, match="runs from"):
        pre.tau_for_ess(table, 0.999999, high=1e-3)


def test_recovery_breakdown_by_kind_and_length():
    cases = pd.DataFrame({"rollout": [0, 1, 2], "error_kind": ["arithmetic slip", "wrong operation", "arithmetic slip"],
                          "tier": [2, 3, 3]})
    rates = pd.DataFrame({"rollout": [0, 0, 1, 1, 2, 2], "prefix_has_error": [True, False, True, True, None, True],
                          "recovery": [0.5, 1.0, 0.0, 0.25, 1.0, 1.0]})
    study = type("Study", (), {"rates": rates, "cases": cases})()
    by_kind, by_length = pre.recovery_breakdown(study)
    assert by_kind.loc["arithmetic slip", "count"] == 2 and by_kind.loc["arithmetic slip", "mean"] == pytest.approx(0.75)
    assert by_kind.loc["wrong operation", "mean"] == pytest.approx(0.125)
    assert by_length.loc[2, "mean"] == pytest.approx(0.5)
    assert by_length.loc[3, "count"] == 3 and by_length.loc[3, "mean"] == pytest.approx((0.0 + 0.25 + 1.0) / 3)
