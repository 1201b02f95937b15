"""Report helpers turn measured rows into tables and the results page; checked against hand computations.
The verdict-line helpers are tested in test_report_verdicts.py."""

import numpy as np
import pandas as pd
import pytest

from scope_lib.notebook import report, verdict
from scope_lib.evaluate import EvalResult


def test_seed_summary_and_relative_change_match_hand_computation():
    rng = np.random.default_rng(0)
    rows = [{"variant": v, "seed": s, "eval_set": "average", "avg@k": rng.random(), "pass@k": rng.random()}
            for v in ("opd", "scope") for s in range(3)]
    df = pd.DataFrame(rows)
    summary = report.seed_summary(df)
    for variant in ("opd", "scope"):
        values = df[df.variant == variant]["avg@k"].to_numpy()
        row = summary[summary.variant == variant].iloc[0]
        assert row["avg@k"] == pytest.approx(values.mean())
        # 95% t interval with 2 degrees of freedom: t = 4.303
        assert row["avg@k_ci"] == pytest.approx(4.302652729911275 * values.std(ddof=1) / np.sqrt(3), rel=1e-6)
        assert row["seeds"] == 3
    rel = report.relative_change(summary, "avg@k")
    opd, scope = (df[df.variant == v]["avg@k"].mean() for v in ("opd", "scope"))
    assert rel["scope"] == pytest.approx(100 * (scope - opd) / opd)
    assert rel["opd"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="reference variant 'kd'"):
        report.relative_change(summary, "avg@k", reference="kd")


def test_pass_curves_average_seeds():
    rng = np.random.default_rng(1)
    results = {("scope", s): EvalResult(k=4, correct={"a": rng.random((5, 4)) < 0.5, "b": rng.random((5, 4)) < 0.3})
               for s in range(3)}
    curve = report.pass_curves(results, "scope")
    per_seed = [np.mean([r.pass_at_k_curve(n)[4] for n in ("a", "b")]) for r in results.values()]
    assert curve.set_index("k").loc[4, "pass@k"] == pytest.approx(np.mean(per_seed))
    assert list(curve.k) == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="no results for variant 'opd'"):
        report.pass_curves(results, "opd")


def test_results_page_embeds_what_exists(tmp_path):
    (tmp_path / "fig3_training_dynamics.png").write_bytes(b"\x89PNG")
    (tmp_path / "fig3_training_dynamics.claims.md").write_text("- **reproduced**: something (numbers)\n")
    page = report.build_results_page(str(tmp_path)).read_text()
    assert "![fig3_training_dynamics](fig3_training_dynamics.png)" in page
    assert "- **reproduced**: something (numbers)" in page
    assert "Fig. 1a" not in page  # nothing of notebook 01 exists, so no section
    assert verdict.RULE_TEXT in page  # the rule heads the page, before any section
    assert page.index(verdict.RULE_TEXT) < page.index("## Fig. 3")
    assert "RL-KD hybrid" not in page  # Table 1's note comes with Table 1's section only


def test_table_sections_say_what_the_hybrid_comparison_adds(tmp_path):
    for name in ("table1_main_results", "table2_code"):
        (tmp_path / f"{name}.claims.md").write_text("- **inconclusive** — SCOPE − RL-KD hybrid\n")
    page = report.build_results_page(str(tmp_path)).read_text()
    for heading in ("## Table 1", "## Table 2"):
        section = page[page.index(heading):]
        assert section.index(report.SECTION_NOTES["04"]) < section.index("- **inconclusive**")


def test_results_page_of_a_variant_folder_says_so_and_captions_need_a_record(tmp_path):
    folder = tmp_path / "figures" / "variants" / "SMOOTH=3"
    folder.mkdir(parents=True)
    (folder / "fig3_training_dynamics.png").write_bytes(b"\x89PNG")
    page = report.build_results_page(str(folder)).read_text()
    assert "**Parameter variant `SMOOTH=3`**" in page
    assert "parameters:" not in page  # no record beside the figure, so no parameters are claimed
    (folder / "fig3_training_dynamics.params.json").write_text(
        '{"notebook": "05_x", "parameters": {"SMOOTH": 3, "FIGURES_DIR": "figures"}, "non_default": {"SMOOTH": 3}}')
    page = report.build_results_page(str(folder)).read_text()
    assert "![fig3_training_dynamics](fig3_training_dynamics.png)\n\n*parameters: SMOOTH=3 (non-default: SMOOTH=3).*" in page
    assert "Parameter variant" not in report.build_results_page(str(tmp_path / "figures")).read_text()


def test_step_curves_smooth_each_seed_before_the_interval():
    rng = np.random.default_rng(2)
    seeds, steps, window = 4, 9, 3
    values = rng.random((seeds, steps))
    histories = {("grpo", s): [{"step": i + 1, "accuracy": float(values[s, i])} for i in range(steps)] for s in range(seeds)}
    curves = report.step_curves(histories, "accuracy", smooth=window)
    for i in range(steps):
        smoothed = [values[s, max(0, i - window + 1): i + 1].mean() for s in range(seeds)]  # trailing mean per seed
        row = curves.iloc[i]
        assert (row["accuracy"], row["low"], row["high"]) == pytest.approx(report.mean_ci(smoothed), rel=1e-12)
    unsmoothed = report.step_curves(histories, "accuracy")
    assert list(unsmoothed["accuracy"]) == pytest.approx(values.mean(axis=0).tolist())
    with pytest.raises(ValueError, match="smooth"):
        report.step_curves(histories, "accuracy", smooth=0)


def test_base_band_is_a_problem_bootstrap_of_its_one_evaluation():
    rng = np.random.default_rng(3)
    problems, k = 400, 4
    correct = {"a": rng.random((problems, k)) < rng.random((problems, 1)), "b": rng.random((problems, k)) < 0.3}
    result = EvalResult(k=k, correct=correct)
    results = {("base", 0): result, ("opd", 0): result, ("opd", 1): result}
    curve = report.pass_curves(results, "base").set_index("k")
    bounds = report.problem_bootstrap_curve(result, n_boot=4000, seed=1)
    for kk in range(1, k + 1):
        mean = np.mean([result.pass_at_k_curve(n)[kk] for n in correct])
        assert curve.loc[kk, "pass@k"] == pytest.approx(mean)
        # 400 problems per set: the bootstrap interval of a mean of two independent set means is
        # close to the normal one, mean -/+ 1.96 sqrt(var_a / n + var_b / n) / 2
        from scope_lib.metrics import pass_at_k
        sd = np.sqrt(sum(np.var([pass_at_k(k, int(c), kk) for c in result.counts(n)]) for n in correct) / problems) / 2
        low, high = bounds[kk]
        assert low == pytest.approx(mean - 1.96 * sd, abs=0.15 * 1.96 * sd)
        assert high == pytest.approx(mean + 1.96 * sd, abs=0.15 * 1.96 * sd)
        assert curve.loc[kk, "low"] <= mean <= curve.loc[kk, "high"]
    # a trained variant keeps the t interval over seeds: two identical seeds give a zero-width band
    opd = report.pass_curves(results, "opd")
    assert list(opd["low"]) == pytest.approx(list(opd["pass@k"])) and list(opd["high"]) == pytest.approx(list(opd["pass@k"]))


def test_base_gains_are_the_verdicts_difference_at_each_k():
    rng = np.random.default_rng(4)
    k, seeds = 4, [0, 1, 2]
    rates = rng.random((30, 1))
    results = {("base", 0): EvalResult(k=k, correct={"a": rng.random((30, k)) < rates})}
    results.update({("opd", s): EvalResult(k=k, correct={"a": rng.random((30, k)) < rates + 0.1}) for s in seeds})
    summary, per_seed = report.base_gains(results, "opd", seeds, [1, 2, 4], num_resamples=500)
    base_curve = results[("base", 0)].pass_at_k_curve("a")
    for kk in (1, 2, 4):
        gains = per_seed[per_seed.k == kk].set_index("seed")["gain"]
        for s in seeds:  # each seed's gain is its Pass@k minus the base's
            assert gains[s] == pytest.approx(results[("opd", s)].pass_at_k_curve("a")[kk] - base_curve[kk], abs=1e-12)
        row = summary.set_index("k").loc[kk]
        assert row["mean"] == pytest.approx(gains.mean())
        difference = verdict.bootstrap_difference(report.problem_scores(results, "opd", seeds, k=kk),
                                                  report.problem_scores(results, "base", seeds, k=kk), num_resamples=500)
        assert (row["low"], row["high"]) == pytest.approx((difference.low, difference.high))
        # the same interval the verdict line prints
        line = report.compare_to_base("x", results, "opd", seeds, "greater", "p", k=kk, num_resamples=500)
        assert f"[{100 * difference.low:+.1f}, {100 * difference.high:+.1f}]" in line


def test_method_tables_add_the_relative_change_versus_the_reference():
    rng = np.random.default_rng(5)
    rows = [{"variant": v, "seed": s, "eval_set": e, "avg@k": rng.uniform(0.1, 0.9), "pass@k": rng.uniform(0.1, 0.9)}
            for v in ("opd", "scope") for s in range(3) for e in ("a", "b", "average")]
    df = pd.DataFrame(rows)
    summary = report.seed_summary(df)
    avg_table, pass_table = report.method_tables(summary, ["opd", "scope"], ["a", "b", "average"])
    mean = {v: df[(df.variant == v) & (df.eval_set == "average")]["avg@k"].mean() for v in ("opd", "scope")}
    expected = 100 * (mean["scope"] - mean["opd"]) / mean["opd"]
    assert avg_table.loc["scope", "Δ vs OPD (average, relative %)"] == f"{expected:+.1f}"
    assert avg_table.loc["opd", "Δ vs OPD (average, relative %)"] == "+0.0"
    assert list(pass_table.columns) == ["a", "b", "average"]


def test_seeds_for_half_width_is_the_smallest_n_that_reaches_the_target():
    import math

    from scope_lib.common.stats import t_quantile
    from scope_lib.notebook.report import seeds_for_half_width

    rng = __import__("numpy").random.default_rng(7)
    for _ in range(5):
        sd, target = float(rng.uniform(0.5, 8.0)), float(rng.uniform(0.5, 4.0))
        n = seeds_for_half_width(sd, target)
        assert t_quantile(0.95, n - 1) * sd / math.sqrt(n) <= target
        assert n == 2 or t_quantile(0.95, n - 2) * sd / math.sqrt(n - 1) > target
    assert seeds_for_half_width(float("nan"), 1.0) is None and seeds_for_half_width(100.0, 1e-3, most=50) is None


def test_relative_power_against_a_hand_computation():
    import math

    from scope_lib.notebook import verdict
    from scope_lib.common.stats import t_quantile
    from scope_lib.notebook.report import relative_power

    a = {s: 0.50 + 0.01 * s for s in range(6)}
    b = {s: 0.48 + 0.013 * (s % 3) for s in range(6)}
    diff = verdict.paired_difference(a, b)
    values = [a[s] - b[s] for s in range(6)]
    mean = sum(values) / 6
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 5)
    record = relative_power(diff, 0.5)
    assert record["half_width_relative_percent"] == pytest.approx(100 * t_quantile(0.95, 5) * sd / math.sqrt(6) / 0.5,
                                                                  abs=1e-3)
    assert record["target_relative_percent"] == 4.0 and record["seeds_for_target"] >= 2
    assert relative_power(verdict.paired_difference({0: 0.5}, {0: 0.4}), 0.5)["half_width_relative_percent"] is None
