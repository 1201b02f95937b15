"""Figure/table writers and the t confidence interval.

t critical values are checked against the published table (NIST/SEMATECH e-Handbook of
Statistical Methods, section 1.3.6.7.2, "Critical values of the Student's t
distribution", upper-tail 0.025 and 0.005 columns, given to 3 decimals), and against
scipy when it happens to be installed.
"""

import math
import statistics

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from scope_lib import plotting  # noqa: E402

# df -> two-sided 95% critical value (upper 0.025 point), NIST table, 3 decimals
T_TABLE_95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365,
              8: 2.306, 9: 2.262, 10: 2.228, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042}
# df -> two-sided 99% critical value (upper 0.005 point)
T_TABLE_99 = {1: 63.657, 2: 9.925, 5: 4.032, 10: 3.169, 30: 2.750}


# --- savefig / save_table ---------------------------------------------------------------


def test_savefig_writes_png_and_pdf(tmp_path):
    plotting.use_style()
    fig, ax = plt.subplots()
    for method in ["grpo", "opd", "scope"]:
        color = plotting.method_color(method)
        ax.plot([1, 2, 3], np.random.default_rng().random(3), color=color, label=method)
    ax.legend()
    png, pdf = plotting.savefig(fig, "fig3_training_dynamics", figures_dir=tmp_path / "figs")
    plt.close(fig)
    assert png == tmp_path / "figs" / "fig3_training_dynamics.png"
    assert pdf == tmp_path / "figs" / "fig3_training_dynamics.pdf"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 1000


@pytest.mark.parametrize("bad", ["", "training_dynamics", "fig3_dynamics.png", "../fig3_x", "Fig3_X", "fig3"])
def test_names_must_carry_the_artefact(tmp_path, bad):
    fig = plt.figure()
    with pytest.raises(ValueError, match="name"):
        plotting.savefig(fig, bad, figures_dir=tmp_path)
    plt.close(fig)
    with pytest.raises(ValueError, match="name"):
        plotting.save_table(pd.DataFrame({"a": [1]}), bad, figures_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_relative_figures_dir_is_the_repository_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # as a notebook executed with cwd=notebooks/
    repo_root = plotting.Path(plotting.__file__).resolve().parent.parent
    assert plotting.resolve_figures_dir("figures") == repo_root / "figures"
    assert plotting.resolve_figures_dir(tmp_path / "x") == tmp_path / "x"


def test_save_table_round_trips(tmp_path):
    rng = np.random.default_rng()
    df = pd.DataFrame(
        {"avg_at_8": rng.random(3), "pass_at_8": rng.random(3), "n_seeds": [3, 3, 1]},
        index=pd.Index(["opd", "scope", "grpo"], name="method"),
    )
    csv, md = plotting.save_table(df, "table1_main_results", figures_dir=tmp_path, floatfmt=".2f")
    assert (csv.name, md.name) == ("table1_main_results.csv", "table1_main_results.md")
    pd.testing.assert_frame_equal(pd.read_csv(csv, index_col="method"), df)
    lines = md.read_text().splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header == ["method", "avg_at_8", "pass_at_8", "n_seeds"]
    assert set(lines[1]) <= set("|:- ")  # the separator row under the header
    assert len(lines) == 2 + len(df)
    assert f"{df.loc['scope', 'avg_at_8']:.2f}" in md.read_text()


def test_save_table_drops_a_default_index(tmp_path):
    df = pd.DataFrame({"k": [1, 2, 4], "pass_at_k": [0.25, 0.5, 0.75]})
    csv, _ = plotting.save_table(df, "fig4_pass_at_k", figures_dir=tmp_path)
    pd.testing.assert_frame_equal(pd.read_csv(csv), df)


def test_method_colors():
    for method in ["base", "grpo", "kd", "opd", "scope"]:
        assert matplotlib.colors.is_color_like(plotting.METHOD_COLORS[method])
    assert len(set(plotting.METHOD_COLORS.values())) == len(plotting.METHOD_COLORS)
    with pytest.raises(ValueError, match="scopee"):
        plotting.method_color("scopee")


# --- t quantiles and mean_ci ------------------------------------------------------------


@pytest.mark.parametrize("df, expected", sorted(T_TABLE_95.items()))
def test_t_quantile_95_matches_table(df, expected):
    assert plotting.t_quantile(0.95, df) == pytest.approx(expected, abs=5e-4)


@pytest.mark.parametrize("df, expected", sorted(T_TABLE_99.items()))
def test_t_quantile_99_matches_table(df, expected):
    assert plotting.t_quantile(0.99, df) == pytest.approx(expected, abs=5e-4)


def test_t_quantile_identities():
    # df=1 is the Cauchy distribution: t = tan(pi * confidence / 2)
    for confidence in [0.5, 0.8, 0.95, 0.99]:
        cauchy = math.tan(math.pi * confidence / 2)
        assert plotting.t_quantile(confidence, 1) == pytest.approx(cauchy, rel=1e-10)
    # df=2: F(t) = 1/2 + t / (2 sqrt(2 + t^2)), so with u = 2q - 1, t = u sqrt(2 / (1 - u^2))
    for confidence in [0.5, 0.9, 0.95]:
        q = (1 + confidence) / 2  # one-sided probability
        alpha = 4 * q * (1 - q)
        expected = 2 * (q - 0.5) * math.sqrt(2 / alpha)
        assert plotting.t_quantile(confidence, 2) == pytest.approx(expected, rel=1e-10)
    # large df tends to the normal quantile from above
    z = statistics.NormalDist().inv_cdf(0.975)
    t_large = plotting.t_quantile(0.95, 4000)
    assert z < t_large < z + 1e-3


def test_t_quantile_matches_scipy_when_installed():
    stats = pytest.importorskip("scipy.stats")
    for df in [1, 2, 3, 7, 19, 60, 333]:
        for confidence in [0.5, 0.9, 0.95, 0.99]:
            expected = stats.t.ppf((1 + confidence) / 2, df)
            assert plotting.t_quantile(confidence, df) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("n", [2, 3, 5, 8, 11])
def test_mean_ci_matches_hand_computation(n):
    rng = np.random.default_rng()
    values = [float(v) for v in rng.normal(loc=rng.uniform(-5, 5), scale=rng.uniform(0.1, 3), size=n)]
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half_width = T_TABLE_95[n - 1] * sd / math.sqrt(n)
    got_mean, low, high = plotting.mean_ci(values)
    assert got_mean == pytest.approx(mean, rel=1e-12, abs=1e-12)
    # the table has 3 decimals, so the width agrees to ~5e-4 relative of t
    assert low == pytest.approx(mean - half_width, abs=3e-4 * sd)
    assert high == pytest.approx(mean + half_width, abs=3e-4 * sd)
    assert high - mean == pytest.approx(mean - low, rel=1e-12)


def test_mean_ci_edge_cases():
    mean, low, high = plotting.mean_ci([0.42])
    assert mean == 0.42 and math.isnan(low) and math.isnan(high)
    assert plotting.mean_ci([0.3, 0.3, 0.3]) == pytest.approx((0.3, 0.3, 0.3))
    # wider confidence, wider interval
    values = np.random.default_rng().random(6)
    _, low90, high90 = plotting.mean_ci(values, confidence=0.90)
    _, low99, high99 = plotting.mean_ci(values, confidence=0.99)
    assert low99 < low90 and high99 > high90
    for bad in [[], [1.0, math.nan]]:
        with pytest.raises(ValueError, match="values"):
            plotting.mean_ci(bad)
    with pytest.raises(ValueError, match="confidence"):
        plotting.mean_ci([1.0, 2.0], confidence=95)
