"""Figure/table writers and the t confidence interval.

t critical values are checked against the published table (NIST/SEMATECH e-Handbook of
Statistical Methods, section 1.3.6.7.2, "Critical values of the Student's t
distribution", upper-tail 0.025 and 0.005 columns, given to 3 decimals), and against
scipy when it happens to be installed.
"""


import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from scope_lib.common import plotting  # noqa: E402

# --- savefig / save_table ---------------------------------------------------------------


def test_savefig_writes_png_and_pdf(tmp_path):
    plotting.use_style()
    fig, ax = plt.subplots()
    for method in ["grpo", "opd", "scope"]:
        color = plotting.method_color(method)
        ax.plot([1, 2, 3], np.random.default_rng(0).random(3), color=color, label=method)
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
    repo_root = plotting.Path(plotting.__file__).resolve().parents[2]
    assert plotting.resolve_figures_dir("figures") == repo_root / "figures"
    assert plotting.resolve_figures_dir(tmp_path / "x") == tmp_path / "x"


def test_save_table_round_trips(tmp_path):
    rng = np.random.default_rng(1)
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
    from scope_lib.experiments.grid import ABLATIONS, EXTRA_VARIANTS, METHODS

    for method in ["base", *METHODS, *EXTRA_VARIANTS, *ABLATIONS]:  # every variant the notebooks run
        assert matplotlib.colors.is_color_like(plotting.METHOD_COLORS[method]), method
    assert len(set(plotting.METHOD_COLORS.values())) == len(plotting.METHOD_COLORS)
    with pytest.raises(ValueError, match="scopee"):
        plotting.method_color("scopee")


# --- seaborn-based drawing ----------------------------------------------------------------


def _error_bars(ax):
    """{x position: (low, high)} of the vertical interval lines seaborn's pointplot drew."""
    bars = {}
    for line in ax.lines:  # with caps, one line holds cap, bar and cap, separated by NaN
        xy = np.column_stack([np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)])
        for segment in np.split(xy, np.flatnonzero(np.isnan(xy[:, 0]))):
            segment = segment[~np.isnan(segment[:, 0])]
            if len(segment) == 2 and segment[0, 0] == segment[1, 0] and np.isfinite(segment[:, 1]).all() \
                    and segment[0, 1] != segment[1, 1]:
                bars[round(float(segment[0, 0]), 6)] = (segment[:, 1].min(), segment[:, 1].max())
    return bars


def test_point_interval_draws_mean_ci_of_the_per_seed_values():
    rng = np.random.default_rng(2)
    seeds = int(rng.integers(3, 7))
    df = pd.DataFrame([{"variant": v, "eval_set": s, "seed": i, "acc": rng.random()}
                       for v in ("opd", "scope", "grpo") for s in ("tier1", "tier2") for i in range(seeds)])
    fig, ax = plt.subplots()
    summary = plotting.point_interval(ax, df, x="eval_set", y="acc", hue="variant", scale=100)
    bars = _error_bars(ax)
    assert len(bars) == 6
    # stripplot's dodged points sit around each pointplot marker: positions shared
    offsets = {"opd": -0.8 / 3, "scope": 0.0, "grpo": 0.8 / 3}
    for (eval_set, variant), part in df.groupby(["eval_set", "variant"]):
        mean, low, high = plotting.mean_ci(100 * part["acc"].to_numpy())
        x = round(("tier1", "tier2").index(eval_set) + offsets[variant], 6)
        assert bars[x] == pytest.approx((low, high), rel=1e-9)
        row = summary[(summary.eval_set == eval_set) & (summary.variant == variant)].iloc[0]
        assert (row["mean"], row["low"], row["high"], row["n"]) == pytest.approx((mean, low, high, seeds))
    points = np.concatenate([c.get_offsets() for c in ax.collections if len(c.get_offsets()) == seeds])
    assert len(points) == 6 * seeds
    assert sorted(points[:, 1]) == pytest.approx(sorted(100 * df["acc"]))
    for px, _ in points:  # each seed's point is within the jitter of its group's interval line
        assert min(abs(px - x) for x in bars) <= 0.08 + 1e-9
    plt.close(fig)


def test_point_interval_jitter_is_the_same_on_every_redraw_and_leaves_numpy_alone():
    rng = np.random.default_rng(3)
    df = pd.DataFrame([{"variant": v, "seed": i, "acc": rng.random()} for v in ("opd", "scope") for i in range(5)])

    def dots():
        fig, ax = plt.subplots()
        plotting.point_interval(ax, df, x="variant", y="acc", hue="variant")
        points = np.concatenate([c.get_offsets() for c in ax.collections if len(c.get_offsets()) == 5])
        plt.close(fig)
        return points

    np.random.seed(int(rng.integers(1000)))
    before = np.random.get_state()[1].copy()
    first = dots()
    assert np.array_equal(np.random.get_state()[1], before)  # the caller's global stream is untouched
    np.random.random(10)  # another global state: the same dots all the same
    assert np.array_equal(dots(), first)
    assert len(np.unique(first[:, 0])) > 2  # jittered, not stacked on the category


def test_point_interval_clips_only_the_drawn_interval_and_names_bad_columns():
    df = pd.DataFrame({"variant": ["grpo"] * 3, "acc": [0.0, 0.0, 0.3]})
    fig, ax = plt.subplots()
    summary = plotting.point_interval(ax, df, x="variant", y="acc", clip=(0.0, 1.0))
    mean, low, high = plotting.mean_ci([0.0, 0.0, 0.3])
    assert low < 0 and summary["low"].iloc[0] == pytest.approx(low)
    assert list(_error_bars(ax).values()) == [pytest.approx((0.0, high))]
    with pytest.raises(ValueError, match="no column 'accuracy'"):
        plotting.point_interval(ax, df, x="variant", y="accuracy")
    plt.close(fig)


def test_band_is_clipped_to_the_metric_range():
    rng = np.random.default_rng(4)
    x = np.arange(20)
    centre = rng.random(20)
    half = rng.uniform(0.1, 0.6, 20)
    low, high = centre - half, centre + half
    low[3] = np.nan  # one seed at this step: no interval there
    fig, ax = plt.subplots()
    collection = plotting.band(ax, x, low, high, clip=(0.0, 1.0))
    vertices = np.concatenate([path.vertices for path in collection.get_paths()])
    assert vertices[:, 1].min() >= 0.0 and vertices[:, 1].max() <= 1.0
    assert vertices[:, 1].min() == 0.0 if (low < 0).any() else True
    assert 3 not in set(vertices[:, 0])  # the open point is not filled
    assert plotting.band(ax, x, np.full(20, np.nan), high) is None
    unclipped = plotting.band(ax, x, low, high, clip=None)
    assert np.concatenate([p.vertices for p in unclipped.get_paths()])[:, 1].min() == pytest.approx(np.nanmin(low))
    with pytest.raises(ValueError, match="clip"):
        plotting.band(ax, x, low, high, clip=(1.0, 0.0))
    plt.close(fig)


@pytest.mark.parametrize("ks, shown", [(range(1, 17), [1, 2, 4, 8, 16]), (range(1, 5), [1, 2, 4]),
                                       ([1, 2, 3, 5, 12], [1, 2, 12])])
def test_k_axis_labels_are_the_k_values(ks, shown):
    fig, ax = plt.subplots()
    ax.plot(list(ks), np.random.default_rng(5).random(len(list(ks))))
    assert plotting.k_axis(ax, ks) == shown
    fig.canvas.draw()
    assert list(ax.get_xticks()) == shown
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(k) for k in shown]
    assert ax.get_xscale() == "log" and ax.xaxis.get_minor_ticks() == []
    plt.close(fig)


def test_legend_outside_covers_no_data_area():
    fig, axes = plt.subplots(1, 2)
    for ax in axes:
        for method in ("grpo", "opd", "scope"):
            ax.plot(np.arange(5), np.random.default_rng(6).random(5), label=method, color=plotting.method_color(method))
        ax.legend(loc="center")  # a legend on the data, as seaborn leaves one
    legend = plotting.legend_outside(fig)
    fig.canvas.draw()
    box = legend.get_window_extent()
    assert [t.get_text() for t in legend.get_texts()] == ["grpo", "opd", "scope"]
    assert all(ax.get_legend() is None for ax in axes)
    for ax in axes:
        assert not box.overlaps(ax.get_window_extent())
    plt.close(fig)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], label="base")
    legend = plotting.legend_outside(ax)
    fig.canvas.draw()
    assert not legend.get_window_extent().overlaps(ax.get_window_extent())
    plt.close(fig)


def test_legend_outside_takes_given_entries_and_names_a_mismatch():
    fig, ax = plt.subplots()
    line, = ax.plot([0, 1], [1, 0], label="drawn")
    legend = plotting.legend_outside(ax, [line], ["renamed"])
    assert [t.get_text() for t in legend.get_texts()] == ["renamed"]
    with pytest.raises(ValueError, match="as many handles as labels"):
        plotting.legend_outside(ax, [line], ["a", "b"])
    plt.close(fig)


def test_point_interval_with_hue_on_x_keeps_points_on_their_category():
    rng = np.random.default_rng(7)
    variants = ["grpo", "opd", "scope"]
    df = pd.DataFrame({"variant": np.repeat(variants, 4), "acc": rng.random(12)})
    fig, ax = plt.subplots()
    plotting.point_interval(ax, df, x="variant", y="acc", hue="variant")
    bars = _error_bars(ax)
    assert sorted(bars) == [0.0, 1.0, 2.0]  # one interval per category, at the category itself
    for i, variant in enumerate(variants):
        assert bars[float(i)] == pytest.approx(plotting.mean_ci(df[df.variant == variant].acc)[1:])
    points = np.concatenate([c.get_offsets() for c in ax.collections if len(c.get_offsets())])
    assert np.all(np.abs(points[:, 0] - np.round(points[:, 0])) <= 0.08 + 1e-9)
    assert ax.get_legend() is None
    plt.close(fig)


# --- the display vocabulary -----------------------------------------------------------------


def test_every_variant_key_has_a_display_name():
    from scope_lib.experiments.grid import ABLATIONS, EXTRA_VARIANTS, FAMILIES, METHODS

    keys = ["base", *METHODS, *EXTRA_VARIANTS, *ABLATIONS] + [f"{prefix}0.5" for prefix in FAMILIES]
    names = {key: plotting.display_name(key) for key in keys}
    for key, name in names.items():
        assert name != key and "_" not in name, (key, name)  # never the raw key
        assert "\n" not in name
    assert len(set(names.values())) == len(names)  # two variants never share a name
    assert names["opd_g8"] == "OPD (G = 8)" and names["no_dpaw"] == "w/o DPAW" and names["hybrid"] == "RL-KD hybrid"
    assert names["no_student_weight"] == "w/o student weight"


def test_family_names_carry_their_value_and_unknown_keys_come_back_unchanged():
    assert plotting.display_name("scope_tau0.5") == "SCOPE (τ = 0.5)"
    assert plotting.display_name("scope_tau1.0") == "SCOPE (τ = 1)"
    assert plotting.display_name("scope_tau_student0.05") == "SCOPE (student τ = 0.05)"  # the longer prefix wins
    assert plotting.display_name("hybrid_beta0.3") == "RL-KD hybrid (β = 0.3)"
    for unknown in ["scopee", "scope_tau", "scope_taux", "my_variant"]:
        assert plotting.display_name(unknown) == unknown


def test_method_palette_is_keyed_by_display_name():
    palette = plotting.method_palette(["opd_g8", "scope", "scope_tau2.0", "hybrid_beta0.3"])
    assert palette == {"OPD (G = 8)": plotting.METHOD_COLORS["opd_g8"], "SCOPE": plotting.METHOD_COLORS["scope"],
                       "SCOPE (τ = 2)": plotting.METHOD_COLORS["scope"],
                       "RL-KD hybrid (β = 0.3)": plotting.METHOD_COLORS["hybrid"]}
    with pytest.raises(ValueError, match="scopee"):
        plotting.method_palette(["scopee"])


def test_metric_labels():
    assert plotting.metric_label("avg@k", 16) == "Avg@16"
    assert plotting.metric_label("pass@k", 8) == "Pass@8"
    assert plotting.metric_label("pass@k") == "Pass@k"
    assert plotting.metric_label("entropy") == "entropy"


def test_markdown_keeps_counts_as_integers_and_text_as_written(tmp_path):
    df = pd.DataFrame({"n": [282, 1117], "ppl_mean": [1.11111, 1.5], "delta": ["+1.5", "-23.7"]},
                      index=pd.Index(["Q1 (lowest PPL)", "Overall"], name="bucket"))
    _, md = plotting.save_table(df, "table6_ppl_buckets", figures_dir=tmp_path)
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in md.read_text().splitlines()]
    assert rows[0] == ["bucket", "n", "ppl_mean", "delta"]
    assert rows[2] == ["Q1 (lowest PPL)", "282", "1.111", "+1.5"]
    assert rows[3] == ["Overall", "1117", "1.500", "-23.7"]
    unnamed = plotting.markdown_table(pd.DataFrame({"x": [0.5]}, index=["scope"]))
    assert unnamed.splitlines()[0].split("|")[1].strip() == ""  # an unnamed index is headed ""


def test_variant_ticks_show_display_names_on_one_line():
    fig, ax = plt.subplots()
    ax.plot(range(3), range(3))
    plotting.variant_ticks(ax, ["scope", "no_student_weight", "opd_g8"])
    labels = [tick.get_text() for tick in ax.get_xticklabels()]
    plt.close(fig)
    assert labels == ["SCOPE", "w/o student weight", "OPD (G = 8)"]


def test_markdown_prints_whole_float_columns_without_decimals():
    df = pd.DataFrame({"rollouts": [16.0, 4.0], "step": [0.289, 0.252], "zeros": [0.0, 0.0], "n": [3.0, np.nan]},
                      index=pd.Index(["GRPO", "OPD"], name="method"))
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in plotting.markdown_table(df).splitlines()]
    assert rows[2] == ["GRPO", "16", "0.289", "0.000", "3"]
    assert rows[3] == ["OPD", "4", "0.252", "0.000", "nan"]


def test_same_jitter_gives_the_same_dots_and_restores_the_generator():
    import numpy as np

    from scope_lib.common.plotting import same_jitter

    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    with same_jitter():
        first = np.random.uniform(size=5)
    np.random.uniform(size=7)  # whatever ran in between
    with same_jitter():
        second = np.random.uniform(size=5)
    assert np.array_equal(first, second)
    np.random.seed(123)
    with same_jitter():
        np.random.uniform(size=3)
    assert np.array_equal(np.random.get_state()[1], before)
