"""Report helpers turn measured rows into tables and the results page; checked against hand computations.
The verdict-line helpers are tested in test_report_verdicts.py."""

import numpy as np
import pandas as pd
import pytest

from scope_lib import report, verdict
from scope_lib.evaluate import EvalResult


def test_seed_summary_and_relative_change_match_hand_computation():
    rng = np.random.default_rng()
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
    rng = np.random.default_rng()
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
