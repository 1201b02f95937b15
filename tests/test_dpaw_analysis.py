"""Notebook 03's analysis (scope_lib.studies.dpaw, its check lines in scope_lib.notebook.claims): the weight table against Eq. 4/5 computed by hand
in float64 on fresh random batches, the summaries against hand computations, the selection
of concentrated groups on constructed examples, the direction figure's axis, and the sampling
and scoring step on the smoke world against log-probs recomputed row by row."""

import math
import os
import random

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from scope_lib import rollout, verify
from scope_lib.studies import dpaw as dpaw_analysis
from scope_lib.worlds import models, chain as tasks
from scope_lib.notebook import claims as study_claims  # noqa: E402
from scope_lib.studies.dpaw import RELEASED, STUDENT, TEACHER, ScoredGroups, weight_column  # noqa: E402

TAUS = [0.5, 1.0, 2.0]


@pytest.fixture
def rng():
    # Fresh inputs every run; the seed is printed so a failure can be replayed with SCOPE_TEST_SEED.
    seed = int(os.environ.get("SCOPE_TEST_SEED", random.SystemRandom().randrange(2**32)))
    print(f"seed={seed}")
    return np.random.default_rng(seed)


def random_scored(rng, n_groups=None, *, spread=0.3, p_correct=0.5) -> ScoredGroups:
    """Groups of random sizes (1..8), random rewards, random length-normalised log-probs; the
    teacher's score is NaN on correct rows, as `sample_scored_groups` leaves it."""
    n_groups = n_groups or int(rng.integers(3, 12))
    sizes = rng.integers(1, 9, size=n_groups)
    ids = rng.permutation(1000)[:n_groups]  # arbitrary, unsorted group ids
    group = torch.tensor(np.repeat(ids, sizes))
    n = int(sizes.sum())
    correct = torch.tensor(rng.random(n) < p_correct)
    student_s = torch.tensor(-np.abs(rng.normal(0.4, spread, n)), dtype=torch.float32)
    teacher_s = torch.tensor(-np.abs(rng.normal(0.6, spread, n)), dtype=torch.float32)
    teacher_s[correct] = float("nan")
    texts = [f"text {i}" for i in range(n)]
    return ScoredGroups([], texts, group, correct, student_s, teacher_s)


def hand_weights(scores: np.ndarray, on_path: np.ndarray, group: np.ndarray, power: float) -> np.ndarray:
    """exp(-s)^power / sum over the group's path, float64, 0 off the path."""
    out = np.zeros(len(scores))
    for g in np.unique(group):
        rows = np.flatnonzero((group == g) & on_path)
        if rows.size:
            ppl_power = np.exp(-scores[rows].astype(np.float64)) ** power
            out[rows] = ppl_power / ppl_power.sum()
    return out


def test_rollout_table_weights_are_eq4_and_eq5_by_hand(rng):
    scored = random_scored(rng)
    table = dpaw_analysis.rollout_table(scored, TAUS)
    group, correct = scored.group.numpy(), scored.correct.numpy()
    s_student, s_teacher = scored.student_s.numpy(), scored.teacher_s.numpy()
    assert table["ppl_student"].to_numpy() == pytest.approx(np.exp(-s_student.astype(np.float64)), rel=1e-6)
    assert np.isnan(table.loc[correct, "ppl_teacher"]).all()
    assert table.loc[~correct, "ppl_teacher"].to_numpy() == pytest.approx(np.exp(-s_teacher[~correct].astype(np.float64)),
                                                                          rel=1e-6)
    for i in range(len(table)):
        assert table["path_size"].iloc[i] == ((group == group[i]) & (correct == correct[i])).sum()
    for tau in TAUS:
        expected = {STUDENT: hand_weights(s_student, correct, group, 1 / tau),
                    RELEASED: hand_weights(s_student, correct, group, -1 / tau),
                    TEACHER: hand_weights(s_teacher, ~correct, group, -1 / tau)}
        for prefix, weights in expected.items():
            assert table[weight_column(prefix, tau)].to_numpy() == pytest.approx(weights, rel=1e-5, abs=1e-7), (prefix, tau)
    # each group's path sums to 1
    sums = table.groupby(["group", "correct"])[weight_column(STUDENT, 1.0)].sum()
    assert sums[sums.index.get_level_values("correct")].to_numpy() == pytest.approx(1.0, rel=1e-5)


def test_weight_stats_table_by_hand(rng):
    table = dpaw_analysis.rollout_table(random_scored(rng, n_groups=10), TAUS)
    stats = dpaw_analysis.weight_stats_table(table, TAUS)
    assert list(stats.index) == [(t, p[0]) for t in TAUS for p in dpaw_analysis.PATHS]
    for (tau, path), row in stats.iterrows():
        _, prefix, on_correct, ppl = next(p for p in dpaw_analysis.PATHS if p[0] == path)
        members = table[(table["correct"] == on_correct) & (table["path_size"] >= 2)]
        if members.empty:
            assert row["n_groups"] == 0 and math.isnan(row["ess_frac"])
            continue
        column = weight_column(prefix, tau)
        fractions, spreads = [], []
        for _, part in members.groupby("group"):
            w = part[column].to_numpy(dtype=np.float64)
            fractions.append(w.sum() ** 2 / (w ** 2).sum() / len(w))
            spreads.append(np.log(part[ppl].to_numpy(dtype=np.float64)).std())
        assert row["n_groups"] == len(fractions)
        assert row["ess_frac"] == pytest.approx(np.mean(fractions), rel=1e-6)
        assert row["log_ppl_spread"] == pytest.approx(np.mean(spreads), rel=1e-5, abs=1e-7)  # PPLs are float32
        assert row["max_rel"] == pytest.approx((members[column] * members["path_size"]).max(), rel=1e-12)
    ess = dpaw_analysis.ess_by_tau(stats)
    assert list(ess.index) == TAUS and set(ess.columns) == {p[0] for p in dpaw_analysis.PATHS}


def test_concordance_on_constructed_groups():
    frame = pd.DataFrame({"group": [0, 0, 0, 1, 1, 2],
                          "w": [0.2, 0.3, 0.5, 0.6, 0.4, 1.0],
                          "ppl": [1.0, 2.0, 3.0, 1.5, 1.5, 9.0]})  # group 1: equal PPL, skipped
    assert dpaw_analysis.concordance(frame, "w", "ppl") == 1.0
    frame.loc[2, "w"] = 0.1  # pairs (0, 2) and (1, 2) now disagree: 1 of 3 agree
    assert dpaw_analysis.concordance(frame, "w", "ppl") == pytest.approx(1 / 3)
    assert math.isnan(dpaw_analysis.concordance(frame[frame["group"] == 1], "w", "ppl"))


def test_real_weights_are_concordant_and_sharpen(rng):
    table = dpaw_analysis.rollout_table(random_scored(rng, n_groups=12), TAUS)
    conc = dpaw_analysis.concordance_table(table, TAUS)
    assert list(conc.index) == TAUS
    known = conc.notna()
    assert (conc["student path, Eq. 4"][known["student path, Eq. 4"]] == 1.0).all()
    assert (conc["teacher path, Eq. 5"][known["teacher path, Eq. 5"]] == 0.0).all()
    stats = dpaw_analysis.weight_stats_table(table, TAUS)
    ess = dpaw_analysis.ess_by_tau(stats)
    for path, rises in dpaw_analysis.sharpens(stats).items():
        if ess[path].notna().all():
            assert rises == bool((np.diff(ess[path].to_numpy()) > 0).all()) and rises


def constructed_table(rows):
    """A rollout table from (group, correct, ppl_student, w_S, w_S released) rows, text = its PPL."""
    frame = pd.DataFrame(rows, columns=["group", "correct", "ppl_student", weight_column(STUDENT, 1.0),
                                        weight_column(RELEASED, 1.0)])
    frame["text"] = frame["ppl_student"].astype(str)
    frame["path_size"] = frame.groupby(["group", "correct"])["group"].transform("size")
    return frame


def test_direction_shares_by_hand():
    table = constructed_table([
        (0, True, 1.0, 0.4, 0.6), (0, True, 2.0, 0.6, 0.4),  # hardest: PPL 2 -> 0.6 / 0.4 of 2
        (1, True, 3.0, 0.5, 0.2), (1, True, 1.0, 0.2, 0.5), (1, True, 2.0, 0.3, 0.3),  # hardest: PPL 3
        (2, True, 5.0, 1.0, 1.0),  # a lone correct rollout: not counted
        (3, True, 1.5, 0.5, 0.5), (3, True, 1.5, 0.5, 0.5),  # one text twice: equal PPL
        (1, False, 9.0, 0.0, 0.0),
    ])
    shares = dpaw_analysis.direction_shares(table, 1.0)
    assert sorted(shares.hardest["group"]) == [0, 1, 3]
    assert shares.paper == pytest.approx((0.6 + 0.5 + 0.5) / 3)
    assert shares.released == pytest.approx((0.4 + 0.2 + 0.5) / 3)
    assert shares.uniform == pytest.approx((1 / 2 + 1 / 3 + 1 / 2) / 3)
    assert shares.single_text_share == pytest.approx(1 / 3)


def test_most_concentrated_groups_picks_the_lowest_ess():
    frame = pd.DataFrame({
        "group": [7, 7, 3, 3, 5, 5, 5, 9, 2, 2],
        "w": [0.5, 0.5, 0.9, 0.1, 0.7, 0.2, 0.1, 1.0, 0.3, 0.7],
    })
    # ESS fractions: 7 -> 1; 3 -> 1 / 0.82 / 2 = 0.610; 5 -> 1 / 0.54 / 3 = 0.617; 2 -> 1 / 0.58 / 2 = 0.862;
    # group 9 has one member and never counts.
    assert dpaw_analysis.most_concentrated_groups(frame, "w", 2) == [3, 5]
    assert dpaw_analysis.most_concentrated_groups(frame, "w", 10) == [3, 5, 2, 7]
    assert dpaw_analysis.most_concentrated_groups(frame, "w", 0) == []
    # weights that need not sum to 1 (a mean-one normalisation) give the same order
    assert dpaw_analysis.most_concentrated_groups(frame.assign(w=3 * frame["w"]), "w", 4) == [3, 5, 2, 7]
    tie = pd.DataFrame({"group": [4, 4, 1, 1], "w": [0.9, 0.1, 0.1, 0.9]})
    assert dpaw_analysis.most_concentrated_groups(tie, "w", 2) == [1, 4]
    with pytest.raises(ValueError, match="n"):
        dpaw_analysis.most_concentrated_groups(frame, "w", -1)
    with pytest.raises(ValueError, match="missing columns"):
        dpaw_analysis.most_concentrated_groups(frame, "weights", 1)


def test_check_lines_pass_on_real_weights_and_are_not_run_without_spread(rng):
    table = dpaw_analysis.rollout_table(random_scored(rng, n_groups=40, spread=0.4), TAUS)
    stats = dpaw_analysis.weight_stats_table(table, TAUS)
    conc = dpaw_analysis.concordance_table(table, TAUS)
    shares = dpaw_analysis.direction_shares(table, 1.0)
    lines = study_claims.dpaw_check_lines(stats, conc, shares, 1.0, intro="Scale `x`.")
    ess = dpaw_analysis.ess_by_tau(stats)
    assert lines[0] == (f"Scale `x`. At tau = 1 the ESS fraction is {ess.loc[1.0, dpaw_analysis.STUDENT_PATH]:.3f} on the "
                        f"student path and {ess.loc[1.0, dpaw_analysis.TEACHER_PATH]:.3f} on the teacher path (1 = uniform "
                        "weights).")
    assert [line.split("**")[1] for line in lines[1:]] == ["check passed"] * 3, lines
    # Every rollout with the same PPL: uniform weights, nothing to check.
    flat = random_scored(rng, n_groups=6)
    flat.student_s[:] = -0.5
    flat.teacher_s[~flat.correct] = -0.7
    table = dpaw_analysis.rollout_table(flat, TAUS)
    lines = study_claims.dpaw_check_lines(dpaw_analysis.weight_stats_table(table, TAUS), dpaw_analysis.concordance_table(table, TAUS),
                                   dpaw_analysis.direction_shares(table, 1.0), 1.0, intro="flat.")
    assert [line.split("**")[1] for line in lines[1:]] == ["check not run"] * 3, lines
    with pytest.raises(ValueError, match="tau"):
        study_claims.dpaw_check_lines(stats, conc, shares, 3.0, intro="")


def test_direction_figure_axis_is_symmetric_about_one(rng):
    for spread, tau in ((0.05, 1.0), (1.5, 0.5)):  # a few-percent effect, then one beyond +-50 %
        scored = random_scored(rng, n_groups=20, spread=spread, p_correct=0.8)
        table = dpaw_analysis.rollout_table(scored, [tau])
        fig, summary = dpaw_analysis.direction_figure(table, tau, "test")
        left, right = fig.axes[:2]
        low, high = left.get_ylim()
        assert right.get_ylim() == (low, high)  # one shared axis
        assert (low + high) / 2 == pytest.approx(1.0) and high - 1.0 >= 0.5
        correct = table[table["correct"] & (table["path_size"] >= 2)]
        rel = np.concatenate([correct[weight_column(p, tau)] * correct["path_size"] for p in (STUDENT, RELEASED)])
        assert low <= rel.min() and rel.max() <= high
        if spread < 0.1:
            assert high - 1.0 == pytest.approx(0.5)  # small effects are drawn on the +-50 % axis
        shares = dpaw_analysis.direction_shares(table, tau)
        hardest = shares.hardest
        means = summary.set_index("sign")["mean"]
        assert means[dpaw_analysis.DIRECTION_LABELS[STUDENT]] == pytest.approx(
            (hardest[weight_column(STUDENT, tau)] * hardest["path_size"]).mean())
        assert means[dpaw_analysis.DIRECTION_LABELS[RELEASED]] == pytest.approx(
            (hardest[weight_column(RELEASED, tau)] * hardest["path_size"]).mean())
        assert any(line.get_ydata()[0] == 1.0 for line in left.get_lines())  # the uniform reference
        plt.close(fig)


def test_weight_distributions_figure_has_one_ecdf_per_tau(rng):
    table = dpaw_analysis.rollout_table(random_scored(rng, n_groups=20), TAUS)
    fig = dpaw_analysis.weight_distributions_figure(table, TAUS, "test")
    for col, on_correct in enumerate((True, False)):
        ecdfs = [line for line in fig.axes[col].get_lines() if line.get_label().startswith("τ")]
        n = int(((table["correct"] == on_correct) & (table["path_size"] >= 2)).sum())
        if n:
            assert [line.get_label() for line in ecdfs] == [f"τ = {t:g}" for t in TAUS]
            assert all(line.get_ydata()[-1] == pytest.approx(1.0) for line in ecdfs)
    assert [t.get_text() for t in fig.legends[0].get_texts()][:len(TAUS)] == [f"τ = {t:g}" for t in TAUS]
    plt.close(fig)


def test_regime_figure_names_each_colour_in_its_legend(rng):
    paths = ["student (Eq. 4)", "teacher (Eq. 5)", "student, every answer"]
    picks = [paths[i] for i in rng.integers(0, 3, size=9)] + paths  # every path, in a random order
    regime = pd.DataFrame({"model": [f"m{i}" for i in range(len(picks))], "path": picks,
                           "ess_frac@tau=1": rng.uniform(0.5, 1.0, len(picks))})
    regime.loc[0, "ess_frac@tau=1"] = np.nan  # a missing record: no point, no row
    fig = dpaw_analysis.regime_figure(regime)
    ax = fig.axes[0]
    measured = regime.dropna(subset=["ess_frac@tau=1"])
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == list(dict.fromkeys(measured["path"]))  # top down
    ticks = [t.get_text() for t in ax.get_yticklabels()]  # row y's label; row 0 is drawn at the bottom
    assert ticks[::-1] == [f"{m} · {p}" for m, p in zip(measured["model"], measured["path"])]
    for points, handle in zip(ax.collections, legend.legend_handles):
        path = points.get_label()
        rows = np.asarray(points.get_offsets())
        assert {ticks[int(y)].split(" · ", 1)[1] for y in rows[:, 1]} == {path}  # each row's dot has its path's colour
        np.testing.assert_allclose(points.get_facecolor()[0], handle.get_facecolor()[0])
        expected = measured.set_index("model")["ess_frac@tau=1"]
        np.testing.assert_allclose(rows[:, 0], [expected[ticks[int(y)].split(" · ")[0]] for y in rows[:, 1]])
    assert len({tuple(c.get_facecolor()[0]) for c in ax.collections}) == len(legend.get_texts())
    plt.close(fig)


def test_group_view_and_bad_inputs(rng):
    table = dpaw_analysis.rollout_table(random_scored(rng), TAUS)
    g = table["group"].iloc[0]
    view = dpaw_analysis.group_view(table, g, 1.0)
    assert len(view) == (table["group"] == g).sum() and "text" in view.columns
    with pytest.raises(ValueError, match="group_id"):
        dpaw_analysis.group_view(table, -1, 1.0)
    with pytest.raises(ValueError, match="prefix"):
        weight_column("w_X", 1.0)
    with pytest.raises(ValueError, match="taus"):
        dpaw_analysis.rollout_table(random_scored(rng), [0.0])


# --- sampling and scoring on the smoke world -------------------------------------------------


@pytest.fixture(scope="module")
def smoke_world():
    return models.build_tiny_world(models.SMOKE_WORLD, progress=False)


def row_logp(model, batch, i: int) -> float:
    """Length-normalised log-prob of row i's response, recomputed without padding in float64."""
    real = batch.attention_mask[i].bool()
    ids, response = batch.input_ids[i][real][None], batch.response_mask[i][real].bool()
    with torch.no_grad():
        logits = model(input_ids=ids).logits.double()
    logp = torch.log_softmax(logits[0, :-1], -1).gather(-1, ids[0, 1:, None])[:, 0]
    return float(logp[response[1:]].mean())


def test_sample_scored_groups_on_the_smoke_world(smoke_world, monkeypatch):
    # The smoke student solves nothing; grade every other row correct so both paths are scored.
    monkeypatch.setattr(verify, "grade_batch", lambda texts, golds: [i % 2 == 0 for i in range(len(texts))])
    batches = []

    def generate(*args, **kwargs):  # the real sampler; its batch is kept for the hand computation
        batches.append(real_generate(*args, **kwargs))
        return batches[-1]

    real_generate = rollout.generate_rollouts
    monkeypatch.setattr(rollout, "generate_rollouts", generate)
    problems = tasks.train_pool(3, seed=2)
    args = (smoke_world.student, smoke_world.teacher, smoke_world.tokenizer, problems, tasks.format_prompt)
    settings = dict(group_size=2, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=12, batch_size=4, seed=5)
    scored = dpaw_analysis.sample_scored_groups(*args, **settings)
    assert scored.group.tolist() == [0, 0, 1, 1, 2, 2]
    assert scored.correct.tolist() == [True, False] * 3
    assert torch.isnan(scored.teacher_s[scored.correct]).all() and torch.isfinite(scored.teacher_s[~scored.correct]).all()
    batch = batches[0]
    assert scored.texts == batch.texts and batch.input_ids.shape[0] == 6
    for i in range(6):
        assert float(scored.student_s[i]) == pytest.approx(row_logp(smoke_world.student, batch, i), rel=1e-4, abs=1e-5)
        if not scored.correct[i]:
            assert float(scored.teacher_s[i]) == pytest.approx(row_logp(smoke_world.teacher, batch, i), rel=1e-4, abs=1e-5)
    again = dpaw_analysis.sample_scored_groups(*args, **settings)  # same seed, same rollouts
    assert again.texts == scored.texts and torch.equal(again.student_s, scored.student_s)
    with pytest.raises(ValueError, match="teacher"):
        dpaw_analysis.sample_scored_groups(smoke_world.student, None, *args[2:], **settings)
    with pytest.raises(ValueError, match="problems"):
        dpaw_analysis.sample_scored_groups(*args[:3], [], tasks.format_prompt, **settings)
