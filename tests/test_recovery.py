"""Error-recovery study (Fig. 1b, Tables 6, 7): truncation, quartiles, aggregation, the study.

Hand computations on fresh random data, brute-force references, and one run of the study
whose student and teacher generations are scripted (so every recovery rate is known by hand)
while the teacher's perplexity comes from a real model.
"""

import math
import os
import random

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from scope_lib import rollout
from scope_lib.worlds import models, chain as tasks
from scope_lib.studies import recovery, recovery_analysis
from scope_lib.notebook import claims as study_claims
from scope_lib.problem import Problem
from scope_lib.rollout import Sampling
from scope_lib.studies.recovery import (
    bootstrap_mean_ci,
    bucket_stats,
    case_studies,
    first_chain_error,
    ppl_quartiles,
    quartile_gap,
    rank_correlation,
    recovery_curve,
    recovery_table,
    truncate_at_newline,
)


@pytest.fixture
def rng():
    # Fresh inputs every run; the seed is printed so a failure can be replayed with SCOPE_TEST_SEED.
    seed = int(os.environ.get("SCOPE_TEST_SEED", random.SystemRandom().randrange(2**32)))
    print(f"seed={seed}")
    return np.random.default_rng(seed)


# --- truncate_at_newline -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, ratio, expected",
    [
        ("ab\ncd\nef", 0.5, "ab\n"),  # target 4: boundaries 0, 3, 6 -> 3
        ("ab\ncd\nef", 0.7, "ab\ncd\n"),  # target 5.6 -> 6
        ("ab\ncd\nef", 0.0, ""),
        ("ab\ncd\nef", 1.0, "ab\ncd\n"),  # the end of a text without a final newline is no boundary
        ("a\nb\n", 0.25, ""),  # target 1: tie between 0 and 2 -> the shorter prefix
        ("a\nb\n", 0.75, "a\n"),  # target 3: tie between 2 and 4
        ("a\nb\n", 1.0, "a\nb\n"),  # a final newline is a boundary
        ("abc", 0.8, ""),  # no newline: the teacher starts from scratch
        ("", 0.5, ""),
        ("\n\n\n\n", 0.5, "\n\n"),
        ("1+1=2\n2*3=6\n\\boxed{6}", 0.2, "1+1=2\n"),  # target 4.2: 0 or 6 -> 6
    ],
)
def test_truncate_examples(text, ratio, expected):
    assert truncate_at_newline(text, ratio) == expected


@pytest.mark.parametrize("ratio", [-0.1, 1.5, math.nan, True, "0.5", None])
def test_truncate_rejects_bad_ratio(ratio):
    with pytest.raises(ValueError, match="ratio"):
        truncate_at_newline("a\nb", ratio)


def test_truncate_rejects_non_text():
    with pytest.raises(ValueError, match="text"):
        truncate_at_newline(b"a\nb", 0.5)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab\n", max_size=40), st.floats(0.0, 1.0))
def test_truncate_is_the_nearest_boundary(text, ratio):
    target = ratio * len(text)
    candidates = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]
    best = min(candidates, key=lambda end: (abs(end - target), end))
    out = truncate_at_newline(text, ratio)
    assert out == text[:best]
    assert out == "" or out.endswith("\n")


# --- quartiles and Table 6 -----------------------------------------------------------------


@pytest.mark.parametrize("n", [4, 5, 6, 7, 40, 101, 1000])
def test_quartiles_match_numpy_percentiles(rng, n):
    s = -rng.gamma(2.0, 0.3, size=n)  # length-normalised log-probs, all < 0
    ppl = np.exp(-s)
    q1, q2, q3 = np.percentile(ppl, [25, 50, 75])
    expected = [0 if p <= q1 else 1 if p <= q2 else 2 if p <= q3 else 3 for p in ppl]
    got = ppl_quartiles(torch.tensor(s))
    assert got.dtype == np.int64 and got.tolist() == expected
    assert got.tolist() == pd.qcut(ppl, 4, labels=False).tolist()
    counts = np.bincount(got, minlength=4)
    assert counts.max() - counts.min() <= 1  # equal sizes up to N mod 4 (values are distinct)


def test_quartiles_order_lowest_ppl_first(rng):
    s = rng.normal(-0.5, 0.2, size=200)
    buckets = ppl_quartiles(s)
    order = np.argsort(-s)  # ascending PPL
    assert (np.diff(buckets[order]) >= 0).all()
    assert buckets[np.argmax(s)] == 0 and buckets[np.argmin(s)] == 3


@pytest.mark.parametrize("bad, match", [([0.1, 0.2, 0.3], "at least 4"), ([0.1, np.nan, 0.2, 0.3], "finite"),
                                        ([[0.1, 0.2], [0.3, 0.4]], "1-D")])
def test_quartiles_reject_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        ppl_quartiles(np.asarray(bad))


def test_bucket_stats_by_hand(rng):
    n = int(rng.integers(8, 60))
    s = -rng.gamma(2.0, 0.3, size=n)
    buckets = ppl_quartiles(s)
    table = bucket_stats(s, buckets)
    assert list(table.index) == ["Q1 (lowest PPL)", "Q2", "Q3", "Q4 (highest PPL)", "Overall"]
    for label, members in list(zip(table.index[:4], [[i for i in range(n) if buckets[i] == k] for k in range(4)])) + [
        ("Overall", list(range(n)))
    ]:
        nll = [-float(s[i]) for i in members]
        ppl = [math.exp(v) for v in nll]
        row = table.loc[label]
        assert row["n"] == len(members)
        assert row["ppl_mean"] == pytest.approx(sum(ppl) / len(ppl), rel=1e-12)
        assert row["nll_mean"] == pytest.approx(sum(nll) / len(nll), rel=1e-12)
        assert (row["ppl_min"], row["ppl_max"]) == pytest.approx((min(ppl), max(ppl)), rel=1e-12)
        assert (row["nll_min"], row["nll_max"]) == pytest.approx((min(nll), max(nll)), rel=1e-12)
        srt = sorted(nll)
        mid = len(srt) // 2
        median = srt[mid] if len(srt) % 2 else (srt[mid - 1] + srt[mid]) / 2
        assert row["nll_median"] == pytest.approx(median, rel=1e-12)
    # quartile buckets: every Q_k statistic sits below Q_{k+1}'s
    assert (np.diff(table["ppl_mean"].to_numpy()[:4]) > 0).all()


def test_bucket_stats_rejects_mismatched_buckets():
    with pytest.raises(ValueError, match="buckets"):
        bucket_stats(np.zeros(5) - 0.1, np.zeros(4, dtype=int))


# --- Table 7, Fig. 1b aggregation ----------------------------------------------------------


def random_rates(rng, n_rollouts=30, ratios=(0.2, 0.4, 0.6, 0.8), completions=4):
    buckets = rng.integers(0, 4, size=n_rollouts)
    buckets[:4] = [0, 1, 2, 3]  # every bucket present
    rows = []
    for r in range(n_rollouts):
        for ratio in ratios:
            n_correct = int(rng.integers(0, completions + 1))
            rows.append({"rollout": r, "bucket": int(buckets[r]), "ratio": ratio, "n_correct": n_correct,
                         "n_completions": completions, "recovery": n_correct / completions})
    return pd.DataFrame(rows).sample(frac=1.0, random_state=int(rng.integers(2**31)))  # any row order


def test_recovery_table_by_hand(rng):
    rates = random_rates(rng)
    table = recovery_table(rates)
    assert list(table.columns) == ["Q1", "Q2", "Q3", "Q4", "All", "Q1-Q4 gap"]
    for ratio in (0.2, 0.4, 0.6, 0.8):
        cells = {k: [] for k in range(4)}
        for row in rates.itertuples():
            if row.ratio == ratio:
                cells[row.bucket].append(row.n_correct / row.n_completions)
        for k in range(4):
            assert table.loc[ratio, f"Q{k + 1}"] == pytest.approx(100 * sum(cells[k]) / len(cells[k]), rel=1e-12)
        every = [v for k in range(4) for v in cells[k]]
        assert table.loc[ratio, "All"] == pytest.approx(100 * sum(every) / len(every), rel=1e-12)
        gap = 100 * (sum(cells[0]) / len(cells[0]) - sum(cells[3]) / len(cells[3]))
        assert table.loc[ratio, "Q1-Q4 gap"] == pytest.approx(gap, rel=1e-9, abs=1e-9)


def test_recovery_table_pools_completions_equally():
    # Two rollouts of Q1 at one ratio: 3/4 and 1/4 recover -> 50 %, the mean over all 8 completions.
    rates = pd.DataFrame({"bucket": [0, 0, 3], "ratio": [0.2] * 3, "recovery": [0.75, 0.25, 0.0]})
    table = recovery_table(rates)
    assert table.loc[0.2, "Q1"] == pytest.approx(50.0)
    assert math.isnan(table.loc[0.2, "Q2"]) and table.loc[0.2, "Q1-Q4 gap"] == pytest.approx(50.0)


def test_recovery_table_rejects_missing_columns():
    with pytest.raises(ValueError, match="recovery"):
        recovery_table(pd.DataFrame({"bucket": [0], "ratio": [0.2]}))


def test_recovery_curve_and_gap_agree_with_table(rng):
    rates = random_rates(rng, n_rollouts=60)
    table = recovery_table(rates)
    curve = recovery_curve(rates, n_boot=500, seed=1)
    assert len(curve) == 16
    for row in curve.itertuples():
        assert row.recovery * 100 == pytest.approx(table.loc[row.ratio, row.quartile], rel=1e-12)
        assert row.low <= row.recovery <= row.high
        assert row.n_rollouts == ((rates.bucket == row.bucket) & (rates.ratio == row.ratio)).sum()
    gaps = quartile_gap(rates, n_boot=500, seed=1)
    for row in gaps.itertuples():
        assert row.gap * 100 == pytest.approx(table.loc[row.ratio, "Q1-Q4 gap"], rel=1e-9, abs=1e-9)
        assert row.low <= row.gap <= row.high


def test_bootstrap_ci_matches_normal_approximation(rng):
    x = rng.binomial(1, 0.3, size=800).astype(float)
    mean, low, high = bootstrap_mean_ci(x, n_boot=4000, seed=int(rng.integers(2**31)))
    assert mean == pytest.approx(x.mean())
    half = 1.959964 * x.std(ddof=1) / math.sqrt(x.size)
    assert (high - low) / 2 == pytest.approx(half, rel=0.12)
    assert low < mean < high


def test_bootstrap_ci_edge_cases():
    assert bootstrap_mean_ci([0.5, 0.5, 0.5]) == (0.5, 0.5, 0.5)
    assert all(math.isnan(v) for v in bootstrap_mean_ci([]))
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_mean_ci([1.0], confidence=1.0)
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_mean_ci([1.0], n_boot=0)


def test_rank_correlation_by_hand(rng):
    rates = random_rates(rng, n_rollouts=40)
    rates["ppl"] = rng.lognormal(0.3, 0.2, size=len(rates))
    rho = rank_correlation(rates)
    for ratio, cell in rates.groupby("ratio"):
        # average ranks by hand (recovery has ties), then Pearson on the ranks
        def ranks(values):
            order = sorted(values)
            return [sum(i + 1 for i, v in enumerate(order) if v == x) / order.count(x) for x in values]
        a, b = np.array(ranks(list(cell["ppl"]))), np.array(ranks(list(cell["recovery"])))
        expected = ((a - a.mean()) * (b - b.mean())).sum() / math.sqrt(((a - a.mean()) ** 2).sum() * ((b - b.mean()) ** 2).sum())
        assert rho[ratio] == pytest.approx(expected, rel=1e-9)
    rates["recovery"] = 1.0 - rates["ppl"]  # strictly decreasing in PPL
    assert rank_correlation(rates).tolist() == pytest.approx([-1.0] * 4)


def test_first_chain_error_kinds():
    problem = tasks.make_problem(46, [("+", 16), ("-", 20), ("*", 2)], source="t", index=0)
    assert problem.solution == "46+16=62\n62-20=42\n42*2=84\n\\boxed{84}"
    assert first_chain_error(problem, problem.solution) is None
    cases = {
        "46+16=52\n52-20=32\n32*2=64\n\\boxed{64}": (0, "arithmetic slip"),
        "45+16=61\n61-20=41\n41*2=82\n\\boxed{82}": (0, "wrong start value"),
        "46+16=62\n61-20=41\n41*2=82\n\\boxed{82}": (1, "carried a wrong value"),
        "46+16=62\n62-21=41\n41*2=82\n\\boxed{82}": (1, "wrong operation"),
        "46+16=62\n62-20=42\n\\boxed{42}": (2, "missing steps"),
        "46+16=62\n62-20=42\n42*2=84\n84+1=85\n\\boxed{85}": (3, "extra steps"),
        "46+16=62\n62-20=42\n42*2=84\n\\boxed{85}": (3, "boxed answer differs"),
        "46+16=62\n62-20=42\n42*2=84": (3, "no final answer"),
        "46+16=62\n62-20=4": (1, "arithmetic slip"),
        "46+16=62\n62 minus": (1, "malformed line"),
    }
    for text, (line, kind) in cases.items():
        got = first_chain_error(problem, text)
        assert got is not None and (got.line, got.kind) == (line, kind), (text, got)
        assert kind in recovery.CHAIN_ERROR_KINDS and str(got).startswith(kind)
    # a real benchmark problem has no chain to check
    assert first_chain_error(Problem(id="x", question="q", answer="1"), "anything") is None


def test_case_studies_highest_ppl_first_without_repeats():
    cases = pd.DataFrame({
        "question": ["a", "b", "b", "c"], "gold": ["1", "2", "2", "3"], "student_answer": ["0", None, None, "4"],
        "ppl": [1.5, 3.0, 3.0, 2.0], "nll": np.log([1.5, 3.0, 3.0, 2.0]), "bucket": [0, 3, 3, 2],
        "text": ["x\ny", "long " * 50, "long " * 50, "z"],
    })
    top = case_studies(cases, n=3, excerpt_chars=20)
    assert top["problem"].tolist() == ["b", "c", "a"]
    assert top["student answer"].tolist() == ["(none)", "4", "0"]
    assert top.loc[2, "excerpt"] == "x / y" and len(top.loc[0, "excerpt"]) == 20


# --- the study, with scripted generations --------------------------------------------------

# Every student rollout has this shape (three lines, then a wrong boxed answer), so its
# prefixes are known by hand: len 27, boundaries 0, 6, 12, 18 ->
# ratio 0.2 (target 5.4) -> 6, 0.4 (10.8) -> 12, 0.6 (16.2) -> 18, 0.8 (21.6) -> 18.
STUDENT_TEXT = "{d}+1=3\n3+1=4\n5-1=4\n\\boxed{{4}}"
EXPECTED_PREFIX = {0.2: 6, 0.4: 12, 0.6: 18, 0.8: 18}
COMPLETIONS = 4


@pytest.fixture(scope="module")
def smoke_world():
    return models.build_tiny_world(models.SMOKE_WORLD, progress=False)


def _scripted_generate(student):
    """A stand-in for `generate_rollouts`: the student writes STUDENT_TEXT with a distinct first
    digit per row; the teacher's completion j of a prefix with L lines is correct iff
    j < COMPLETIONS - L (so the recovery rate of the prefix is (COMPLETIONS - L) / COMPLETIONS)."""
    counter = {"student": 0}

    def generate(model, tokenizer, prompts, *, num_samples, seed, **_):
        texts = []
        for prompt in prompts:
            for j in range(num_samples):
                if model is student:
                    texts.append(STUDENT_TEXT.format(d=counter["student"]))
                    counter["student"] += 1
                else:
                    question, prefix = prompt.split("\n", 1)
                    gold = next(p.answer for p in PROBLEMS if p.question == question)
                    lines = prefix.count("\n")
                    texts.append(f"\\boxed{{{gold}}}" if j < COMPLETIONS - lines else "\\boxed{-1}")
        ids = tokenizer(list(prompts), add_special_tokens=True)["input_ids"]
        rows = [ids[g] for g in range(len(prompts)) for _ in range(num_samples)]
        responses = [tokenizer(t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for t in texts]
        batch = rollout.assemble(rows, responses, tokenizer.pad_token_id)
        return rollout.RolloutBatch(**batch, group=torch.arange(len(prompts)).repeat_interleave(num_samples),
                                    texts=texts, response_lengths=torch.tensor([len(r) for r in responses]),
                                    prompt_width=max(map(len, rows)))

    return generate


PROBLEMS = [p for p in tasks.train_pool(40, seed=3) if p.answer != "4"][:3]


def test_study_with_scripted_generations(smoke_world, monkeypatch):
    monkeypatch.setattr(rollout, "generate_rollouts", _scripted_generate(smoke_world.student))
    study = recovery.recovery_study(
        smoke_world.student, smoke_world.teacher, smoke_world.tokenizer, PROBLEMS, tasks.format_prompt,
        samples_per_problem=2, completions_per_prefix=COMPLETIONS, progress=False,
    )
    assert (study.num_rollouts, study.num_incorrect) == (6, 6) and study.student_accuracy == 0.0
    # six distinct texts x three distinct prefixes (ratios 0.6 and 0.8 share one)
    assert study.num_teacher_prompts == 18
    rates = study.rates
    assert len(rates) == 6 * 4
    for row in rates.itertuples():
        assert row.prefix_chars == EXPECTED_PREFIX[row.ratio]
        lines = row.prefix_chars // 6
        assert row.n_correct == COMPLETIONS - lines
        assert row.recovery == pytest.approx((COMPLETIONS - lines) / COMPLETIONS)
        assert row.prefix_fraction == pytest.approx(row.prefix_chars / 27)
    table = recovery_table(rates)
    assert table["All"].tolist() == pytest.approx([75.0, 50.0, 25.0, 25.0])

    # Teacher PPL, recomputed row by row without padding in float64 (Eq. 23: response tokens only).
    tok, teacher = smoke_world.tokenizer, smoke_world.teacher
    cases = study.cases
    assert cases["student_answer"].tolist() == ["4"] * 6
    assert cases["error_line"].tolist() == [0] * 6 and rates["prefix_has_error"].all()
    for row in cases.itertuples():
        prompt = tok(tasks.format_prompt(PROBLEMS[row.rollout // 2]), add_special_tokens=True)["input_ids"]
        response = tok(row.text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ids = torch.tensor([prompt + response])
        with torch.no_grad():
            logits = teacher(input_ids=ids).logits.double()
        logp = torch.log_softmax(logits[0, :-1], -1).gather(-1, ids[0, 1:, None])[:, 0]
        nll = -float(logp[len(prompt) - 1:].mean())
        assert row.nll == pytest.approx(nll, rel=1e-4)
        assert row.ppl == pytest.approx(math.exp(nll), rel=1e-4)
    assert cases["bucket"].tolist() == ppl_quartiles(-cases["nll"].to_numpy()).tolist()
    assert (rates.groupby("rollout")["bucket"].first().to_numpy() == cases["bucket"].to_numpy()).all()


def test_student_rollouts_and_teacher_completions_take_their_own_sampling(smoke_world, monkeypatch):
    scripted, seen = _scripted_generate(smoke_world.student), []

    def generate(model, tokenizer, prompts, *, sampling, **kwargs):
        seen.append(("student" if model is smoke_world.student else "teacher", sampling))
        return scripted(model, tokenizer, prompts, sampling=sampling, **kwargs)

    monkeypatch.setattr(rollout, "generate_rollouts", generate)
    completions = Sampling(temperature=0.6, max_new_tokens=20, top_k=3, batch_size=64)
    rollouts = Sampling(temperature=1.0, max_new_tokens=20)
    study = recovery.recovery_study(
        smoke_world.student, smoke_world.teacher, smoke_world.tokenizer, PROBLEMS, tasks.format_prompt,
        samples_per_problem=2, completions_per_prefix=COMPLETIONS, sampling=completions, student_sampling=rollouts,
        progress=False,
    )
    assert seen[0] == ("student", rollouts) and seen[1:] and set(seen[1:]) == {("teacher", completions)}
    assert {key: study.settings[key] for key in ("temperature", "top_k", "max_new_tokens", "batch_size",
                                                 "student_temperature")} == {
        "temperature": 0.6, "top_k": 3, "max_new_tokens": 20, "batch_size": 64, "student_temperature": 1.0}
    with pytest.raises(ValueError, match="student_sampling: expected a rollout.Sampling"):
        recovery.recovery_study(smoke_world.student, smoke_world.teacher, smoke_world.tokenizer, PROBLEMS,
                                tasks.format_prompt, samples_per_problem=1, completions_per_prefix=1,
                                student_sampling=1.0)


def test_study_end_to_end_on_the_smoke_world(smoke_world):
    problems = tasks.train_pool(12, seed=1)
    study = recovery.recovery_study(
        smoke_world.student, smoke_world.teacher, smoke_world.tokenizer, problems, tasks.format_prompt,
        samples_per_problem=2, completions_per_prefix=2, sampling=Sampling(temperature=0.6, max_new_tokens=16), seed=0,
        progress=False,
    )
    rates = study.rates
    assert study.num_incorrect >= 4 and len(rates) == study.num_incorrect * 4
    assert set(rates["ratio"]) == {0.2, 0.4, 0.6, 0.8}
    assert ((rates["n_correct"] >= 0) & (rates["n_correct"] <= 2)).all()
    assert (rates["prefix_chars"] <= rates["response_chars"]).all()
    for text, group in zip(study.cases["text"], rates.groupby("rollout")):
        for row in group[1].itertuples():
            assert text[: row.prefix_chars] == truncate_at_newline(text, row.ratio)
    # the same settings give the same study
    again = recovery.recovery_study(
        smoke_world.student, smoke_world.teacher, smoke_world.tokenizer, problems, tasks.format_prompt,
        samples_per_problem=2, completions_per_prefix=2, sampling=Sampling(temperature=0.6, max_new_tokens=16), seed=0,
        progress=False,
    )
    pd.testing.assert_frame_equal(rates, again.rates)


def test_study_rejects_bad_arguments(smoke_world):
    args = (smoke_world.student, smoke_world.teacher, smoke_world.tokenizer)
    with pytest.raises(ValueError, match="completions_per_prefix"):
        recovery.recovery_study(*args, PROBLEMS, tasks.format_prompt, samples_per_problem=1, completions_per_prefix=0)
    with pytest.raises(ValueError, match="ratio"):
        recovery.recovery_study(*args, PROBLEMS, tasks.format_prompt, samples_per_problem=1, completions_per_prefix=1,
                                ratios=(0.2, 1.2))
    with pytest.raises(ValueError, match="problems"):
        recovery.recovery_study(*args, [], tasks.format_prompt, samples_per_problem=1, completions_per_prefix=1)


# --- notebook 02's analysis and claims (scope_lib.studies.recovery_analysis, scope_lib.notebook.claims) --------------------------------------


def _error_bars(ax) -> list[tuple[float, float, float]]:
    """(x, low, high) of every interval seaborn's pointplot drew (a Line2D of 8 points: the two
    caps and the bar, separated by NaN)."""
    bars = []
    for line in ax.get_lines():
        x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
        if len(x) == 8 and np.isnan(x).sum() == 2:
            bars.append((float(x[3]), float(np.nanmin(y)), float(np.nanmax(y))))
    return bars


def test_fig1b_draws_the_intervals_of_recovery_curve(rng):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = random_rates(rng, n_rollouts=48)
    seed = int(rng.integers(2**31))
    fig = recovery_analysis.fig1b_figure(rates, [0.2, 0.4, 0.6, 0.8], n_boot=300, seed=seed, scale_label="test")
    ax = fig.axes[0]
    drawn = sorted((round(low, 9), round(high, 9)) for _, low, high in _error_bars(ax))
    curve = recovery_curve(rates, n_boot=300, seed=seed)
    expected = sorted((round(100 * low, 9), round(100 * high, 9)) for low, high in zip(curve["low"], curve["high"]))
    assert len(drawn) == 16
    np.testing.assert_allclose(np.array(drawn), np.array(expected), atol=1e-6)
    assert ax.get_ylim()[0] <= 0 and ax.get_ylim()[1] >= 100  # the whole 0-100 % range
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == list(recovery.BUCKET_LABELS)
    assert legend.get_bbox_to_anchor().x0 >= ax.get_window_extent().x1 - 1  # outside the data area
    plt.close(fig)


def test_condition_rates_and_mechanism_figure(rng):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = random_rates(rng, n_rollouts=40)
    rates["prefix_has_error"] = rng.random(len(rates)) < 0.5
    long = recovery_analysis.condition_rates(rates)
    assert (long["condition"] == "all").sum() == len(rates)
    assert (long["condition"] == "error in prefix").sum() == rates["prefix_has_error"].sum()
    assert (long["condition"] == "error not yet in prefix").sum() == (~rates["prefix_has_error"]).sum()
    seed = int(rng.integers(2**31))
    fig = recovery_analysis.mechanism_figure(rates, [0.2, 0.4, 0.6, 0.8], n_boot=200, seed=seed, scale_label="test")
    conditions = recovery_analysis.recovery_conditions(rates, n_boot=200, seed=seed)
    drawn = sorted((round(low, 9), round(high, 9)) for _, low, high in _error_bars(fig.axes[0]))
    expected = sorted((round(100 * low, 9), round(100 * high, 9)) for low, high in zip(conditions["low"], conditions["high"]))
    np.testing.assert_allclose(np.array(drawn), np.array(expected), atol=1e-6)  # the table's intervals, from the rows
    plt.close(fig)
    text = study_claims.mechanism_text(conditions, pd.DataFrame({"bucket": [0, 0, 3], "error_line": [1, 2, 4]}),
                                         [0.2, 0.4, 0.6, 0.8])
    by = conditions.set_index(["condition", "ratio"])
    assert f"{100 * by.loc[('error in prefix', 0.8), 'recovery']:.1f} % at 0.8" in text
    assert f"{100 * by.loc[('error not yet in prefix', 0.2), 'recovery']:.1f} % at 0.2" in text
    assert "line 1.50 on average in Q1 and line 4.00 in Q4" in text
    # without a diagnosis there is nothing to split
    undiagnosed = rates.assign(prefix_has_error=None)
    assert set(recovery_analysis.condition_rates(undiagnosed)["condition"]) == {"all"}
    assert recovery_analysis.mechanism_figure(undiagnosed, [0.2], n_boot=10, seed=0, scale_label="x") is None
    with pytest.raises(ValueError, match="error in prefix"):
        study_claims.mechanism_text(recovery_analysis.recovery_conditions(undiagnosed, n_boot=10), undiagnosed, [0.2])


def test_table7_with_gaps_formats_the_gap_interval(rng):
    rates = random_rates(rng)
    table, gaps = recovery_analysis.table7_with_gaps(rates, n_boot=200, seed=3)
    expected = quartile_gap(rates, n_boot=200, seed=3).set_index("ratio")
    pd.testing.assert_frame_equal(gaps, expected)
    for ratio, row in expected.iterrows():
        assert table.loc[ratio, "gap 95% CI"] == f"[{100 * row['low']:+.1f}, {100 * row['high']:+.1f}]"


def test_paper_tables_are_consistent():
    table7 = recovery_analysis.paper_table7()
    # the printed gap comes from unrounded rates: within rounding of Q1 - Q4
    assert (table7["Q1"] - table7["Q4"] - table7["Q1-Q4 gap"]).abs().max() <= 0.11
    table6 = recovery_analysis.paper_table6()
    assert (np.diff(table6["ppl_mean"].iloc[:4]) > 0).all() and list(table6.index)[-1] == "Overall"
    assert table6["ppl_mean"].iloc[:4].mean() == pytest.approx(table6["ppl_mean"].loc["Overall"], abs=0.01)


def test_task_diagnosis():
    assert recovery_analysis.task_diagnosis(None) == (first_chain_error, "no tiny task")
    diagnose, text = recovery_analysis.task_diagnosis(tasks)
    assert diagnose is tasks.first_error and text == tasks.__doc__.strip().splitlines()[0]
    with pytest.raises(ValueError, match="task"):
        recovery_analysis.task_diagnosis(object())


def test_error_kind_shares():
    cases = pd.DataFrame({"bucket": [0, 0, 0, 3, 3, 1], "error_kind": ["a", "a", "b", "b", None, None]})
    kinds = recovery_analysis.error_kind_shares(cases)
    assert list(kinds.index) == ["Q1", "Q4"]
    assert kinds.loc["Q1", "a"] == pytest.approx(2 / 3) and kinds.loc["Q4", "b"] == 1.0 and kinds.loc["Q4", "a"] == 0.0
    assert recovery_analysis.error_kind_shares(cases.assign(error_kind=None)).empty


def _constructed_rates(q1: float, q4: float) -> pd.DataFrame:
    """20 rollouts, 5 per bucket; Q1 recovers q1 and Q4 q4 at ratios 0.2-0.6 and half as much at
    0.8; Q2 and Q3 recover at 0.2 only. Every prefix from 0.4 on holds the first error."""
    rows = []
    for r in range(20):
        bucket = r % 4
        for ratio in (0.2, 0.4, 0.6, 0.8):
            level = {0: q1, 3: q4}.get(bucket, 1.0 if ratio == 0.2 else 0.0)
            rows.append({"rollout": r, "bucket": bucket, "ratio": ratio, "ppl": 1.0 + bucket,
                         "recovery": level / 2 if ratio == 0.8 and bucket in (0, 3) else level,
                         "prefix_has_error": ratio >= 0.4})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("q1, q4, outcome", [(1.0, 0.0, "reproduced"), (0.0, 1.0, "contradicted")])
def test_verdict_lines_on_constructed_rates(q1, q4, outcome):
    rates = _constructed_rates(q1, q4)
    ratios = [0.2, 0.4, 0.6, 0.8]
    conditions = recovery_analysis.recovery_conditions(rates, n_boot=200, seed=0)
    curve = recovery_curve(rates, n_boot=200, seed=0)
    table6 = bucket_stats(-np.log(1.0 + np.arange(20) % 4), np.arange(20) % 4)
    lines = study_claims.recovery_lines(rates, conditions, curve, rank_correlation(rates), table6, ratios,
                                         intro="intro", n_boot=200, seed=0)
    assert lines[0] == "intro"
    gap_lines = [line for line in lines if "Q1 − Q4 recovery" in line]
    assert len(gap_lines) == 4 + 4  # all prefixes, then the prefixes that hold the first error
    empty = "ratio 0.2, prefixes that hold the first error"  # no prefix holds the error at 0.2: no interval
    assert all(line.startswith(f"- **{outcome}**") for line in gap_lines if empty not in line), gap_lines
    assert next(line for line in gap_lines if empty in line).startswith("- **inconclusive**")
    assert "+19.4 points (Table 7)" in gap_lines[0] and "all prefixes; not split" in gap_lines[-1]
    drop = next(line for line in lines if line.startswith("- **") and "recovery at ratio 0.8 − at 0.2" in line)
    assert drop.startswith("- **reproduced**")  # recovery falls from 0.2 to 0.8 in every bucket but one
    assert lines[-1].startswith("- **check passed** — mean teacher PPL rises")
    best = "Q1" if q1 > q4 else "Q4"
    assert f"the best bucket ({best}) recovers 50.0 %" in next(line for line in lines if "best bucket" in line)
