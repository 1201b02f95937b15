"""Tables and verdict lines the notebooks build from measured results (never from typed numbers).

Tables: `seed_summary` (mean and 95% CI over seeds of `experiments.grid.run_grid` rows),
`wide_table` (Table 1 layout), `relative_change` (Table 1's "relative gain vs OPD"),
`pass_curves` (Fig. 4), `step_curves` (Fig. 3).

Verdicts: every claim of the paper goes through the one rule of `scope_lib.notebook.verdict`. A claim
is judged on one summary quantity per seed, which the helpers here compute from the runs:
`per_seed` (a row of `run_grid`), `pass_at`, `pass_area`, `pass_gain` (Pass@k at one k, its
mean over k = 1..K, its rise between two k), `history_change`, `history_mean` (a logged
training metric) and `problem_scores` (per-problem scores for the seed x problem bootstrap).
`compare` and `compare_to_base` write the verdict line; `interval_claim` does the same for a
quantity measured in one run with a bootstrap interval (notebook 02); `check` labels a test
of the implementation. `save_power` records the SCOPE − OPD half-width that
`build_results_page` prints under the rule.
"""

from __future__ import annotations

import json
import math
from collections.abc import Hashable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from scope_lib.notebook import params as nb_params, verdict
from scope_lib.common.plotting import display_name, resolve_figures_dir
from scope_lib.common.stats import bootstrap_means, mean_ci, percentile_interval, t_half_width
from scope_lib.metrics import pass_at_k

# --- tables ------------------------------------------------------------------------------


def seed_summary(df: pd.DataFrame, metrics=("avg@k", "pass@k"), by=("variant", "eval_set")) -> pd.DataFrame:
    """Mean, 95% CI half-width and seed count of each metric per group of `by`."""
    rows = []
    for key, part in df.groupby(list(by), sort=False):
        row = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        for metric in metrics:
            mean, low, high = mean_ci(part[metric].to_numpy(dtype=float))
            row[metric] = mean
            row[f"{metric}_ci"] = (high - mean) if np.isfinite(high) else np.nan
        row["seeds"] = part["seed"].nunique()
        rows.append(row)
    return pd.DataFrame(rows)


def wide_table(summary: pd.DataFrame, metric: str, order: list[str], sets: list[str]) -> pd.DataFrame:
    """Variants as rows, eval sets as columns, "mean ± ci" strings in percent (Table 1 layout)."""
    table = {}
    for variant in order:
        cells = {}
        for eval_set in sets:
            row = summary[(summary.variant == variant) & (summary.eval_set == eval_set)]
            if row.empty:
                continue
            mean, ci = 100 * float(row[metric].iloc[0]), 100 * float(row[f"{metric}_ci"].iloc[0])
            cells[eval_set] = f"{mean:.1f} ± {ci:.1f}" if np.isfinite(ci) else f"{mean:.1f}"
        table[variant] = cells
    return pd.DataFrame.from_dict(table, orient="index")[sets]


def method_tables(summary: pd.DataFrame, order: list[str], sets: list[str],
                  reference: str = "opd") -> tuple[pd.DataFrame, pd.DataFrame]:
    """The Avg@k and Pass@k tables of Tables 1 and 2 (`wide_table`), the Avg@k table with a last
    column: each variant's relative change of the average versus `reference`, in %."""
    avg_table = wide_table(summary, "avg@k", order, sets)
    pass_table = wide_table(summary, "pass@k", order, sets)
    relative = relative_change(summary, "avg@k", reference).reindex(order)
    avg_table[f"Δ vs {display_name(reference)} (average, relative %)"] = [f"{v:+.1f}" for v in relative]
    return avg_table, pass_table


def relative_change(summary: pd.DataFrame, metric: str, reference: str = "opd", eval_set: str = "average") -> pd.Series:
    """Relative change of `metric` on `eval_set` versus `reference`, in percent, per variant."""
    part = summary[summary.eval_set == eval_set].set_index("variant")[metric]
    if reference not in part.index:
        raise ValueError(f"reference variant {reference!r} has no {metric} on {eval_set!r}")
    return 100 * (part - part[reference]) / part[reference]


def _results_of(results: dict, variant: str) -> dict:
    """{seed: EvalResult} of one variant of `run_grid`'s results."""
    chosen = {seed: result for (name, seed), result in results.items() if name == variant}
    if not chosen:
        raise ValueError(f"no results for variant {variant!r}; variants are {sorted({v for v, _ in results})}")
    return chosen


def _pass_curve(result, eval_set: str | None) -> dict[int, float]:
    """Pass@k for k = 1..K of one evaluation: one set, or the mean over its sets (None)."""
    curves = [result.pass_at_k_curve(name) for name in ([eval_set] if eval_set else list(result.correct))]
    return {k: float(np.mean([curve[k] for curve in curves])) for k in curves[0]}


def pass_curves(results: dict, variant: str, eval_set: str | None = None, *, n_boot: int = 2000,
                seed: int = 0) -> pd.DataFrame:
    """Mean Pass@k over seeds and its 95% band for k = 1..K; eval_set None averages the sets.

    The band of a trained variant is the t interval over seeds (`mean_ci`). The base student
    is evaluated once, so its band is its evaluation noise instead: a percentile bootstrap
    over problems, resampled within each eval set (the part of the seed x problem bootstrap
    of `compare_to_base` that belongs to the base). Bands are clipped to [0, 1]."""
    chosen = _results_of(results, variant)
    per_seed = [_pass_curve(result, eval_set) for result in chosen.values()]
    if variant == "base":
        bounds = problem_bootstrap_curve(next(iter(chosen.values())), eval_set, n_boot=n_boot, seed=seed)
    rows = []
    for k in per_seed[0]:
        mean, low, high = mean_ci(np.array([c[k] for c in per_seed]))
        if variant == "base":
            low, high = bounds[k]
        # A t interval over 3 seeds can leave [0, 1]; a pass rate cannot.
        rows.append({"k": k, "pass@k": mean, "low": max(low, 0.0), "high": min(high, 1.0)})
    return pd.DataFrame(rows)


def problem_bootstrap_curve(result, eval_set: str | None = None, *, n_boot: int = 2000, seed: int = 0,
                            confidence: float = 0.95) -> dict[int, tuple[float, float]]:
    """{k: (low, high)}: percentile bootstrap interval of one evaluation's Pass@k curve (the mean
    over its eval sets, or of one set), problems resampled with replacement within each set."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: expected a value in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    ks = range(1, result.k + 1)
    curves = []
    for name in [eval_set] if eval_set else list(result.correct):
        scores = np.array([[pass_at_k(result.k, int(c), k) for k in ks] for c in result.counts(name)])  # (problems, K)
        curves.append(bootstrap_means(scores, n_boot, rng))  # (n_boot, K)
    low, high = percentile_interval(np.mean(curves, axis=0), confidence, axis=0)
    return {k: (float(lo), float(hi)) for k, lo, hi in zip(ks, low, high)}


def step_curves(histories: dict[tuple[str, int], list[dict]], metric: str, *, smooth: int = 1) -> pd.DataFrame:
    """Per-step mean and 95% t interval over seeds of a logged training metric, one row per
    (variant, step). `smooth` > 1 first replaces each seed's curve by its trailing moving average
    over `smooth` steps, so the band is the interval of the smoothed curves (not smoothed bounds)."""
    if isinstance(smooth, bool) or not isinstance(smooth, int) or smooth < 1:
        raise ValueError(f"smooth: expected a whole number of steps >= 1, got {smooth!r}")
    rows = []
    variants = sorted({v for v, _ in histories})
    for variant in variants:
        runs = [h for (v, _), h in histories.items() if v == variant]
        steps = min(len(h) for h in runs)
        curves = np.array([[h[i].get(metric, np.nan) for i in range(steps)] for h in runs], dtype=float)
        curves = pd.DataFrame(curves.T).rolling(smooth, min_periods=1).mean().to_numpy().T  # NaN steps left out
        for i in range(steps):
            values = curves[:, i]
            mean, low, high = mean_ci(values[np.isfinite(values)]) if np.isfinite(values).any() else (np.nan,) * 3
            rows.append({"variant": variant, "step": runs[0][i]["step"], metric: mean, "low": low, "high": high})
    return pd.DataFrame(rows)


# --- per-seed summary quantities (what a claim is judged on) -----------------------------


def per_seed(df: pd.DataFrame, variant: str, metric: str = "avg@k", eval_set: str = "average") -> dict[Hashable, float]:
    """{seed: metric} of one variant on one eval set, from the tidy rows of `run_grid`."""
    rows = df[(df["variant"] == variant) & (df["eval_set"] == eval_set)]
    if rows.empty:
        raise ValueError(f"df: no rows for variant {variant!r} on eval set {eval_set!r}")
    if rows["seed"].duplicated().any():
        raise ValueError(f"df: variant {variant!r} has several {eval_set!r} rows for one seed")
    return dict(zip(rows["seed"].tolist(), rows[metric].astype(float).tolist()))


def pass_at(results: dict, variant: str, k: int, eval_set: str | None = None) -> dict[Hashable, float]:
    """{seed: Pass@k at one k}, the mean over the eval sets (or of one set)."""
    return {seed: _pass_curve(result, eval_set)[k] for seed, result in _results_of(results, variant).items()}


def pass_area(results: dict, variant: str, eval_set: str | None = None) -> dict[Hashable, float]:
    """{seed: mean of Pass@k over k = 1..K}: the area under the Pass@k curve over K, one number
    for "higher at every k"."""
    return {seed: float(np.mean(list(_pass_curve(result, eval_set).values())))
            for seed, result in _results_of(results, variant).items()}


def pass_gain(results: dict, variant: str, k_from: int, k_to: int, eval_set: str | None = None) -> dict[Hashable, float]:
    """{seed: Pass@k_to − Pass@k_from}: how much more a run solves with more samples."""
    return {seed: curve[k_to] - curve[k_from]
            for seed, curve in ((s, _pass_curve(r, eval_set)) for s, r in _results_of(results, variant).items())}


def _history_values(history: list[dict], metric: str, where: str) -> np.ndarray:
    values = np.array([record.get(metric, np.nan) for record in history], dtype=np.float64)
    if not np.isfinite(values).any():
        raise ValueError(f"{where}: no finite {metric!r} in its {len(history)} logged steps")
    return values


def history_change(histories: dict[tuple[str, int], list[dict]], variant: str, metric: str, *,
                   fraction: float = 0.2) -> dict[Hashable, float]:
    """{seed: mean of `metric` over the last `fraction` of logged steps minus over the first}.

    The window is max(1, int(fraction * steps)) steps at each end; steps without the metric
    (NaN) are left out of the means.
    """
    if not 0.0 < fraction <= 0.5:
        raise ValueError(f"fraction: expected a share of the steps in (0, 0.5], got {fraction!r}")
    out = {}
    for (name, seed), history in histories.items():
        if name == variant:
            values = _history_values(history, metric, f"run ({variant}, seed {seed})")
            window = max(1, int(fraction * len(values)))
            out[seed] = float(np.nanmean(values[-window:]) - np.nanmean(values[:window]))
    if not out:
        raise ValueError(f"histories: no runs of variant {variant!r}")
    return out


def history_mean(histories: dict[tuple[str, int], list[dict]], variant: str, metric: str) -> dict[Hashable, float]:
    """{seed: mean of `metric` over every logged step} (the area under its curve over steps)."""
    out = {seed: float(np.nanmean(_history_values(history, metric, f"run ({variant}, seed {seed})")))
           for (name, seed), history in histories.items() if name == variant}
    if not out:
        raise ValueError(f"histories: no runs of variant {variant!r}")
    return out


def problem_scores(results: dict, variant: str, seeds: list, *, k: int = 1) -> dict[Hashable, np.ndarray]:
    """{seed: (problems,) per-problem unbiased Pass@k}, the eval sets concatenated in order.

    k = 1 gives each problem's accuracy over its samples, whose mean is Avg@k. The base
    student is evaluated once, so its one result stands for every seed in `seeds`, paired
    with each trained run. With equal-sized eval sets (the tiny presets) the mean over the
    concatenation equals the mean over sets that `run_grid`'s "average" row reports.
    """
    found = _results_of(results, variant)
    if variant == "base":
        found = dict.fromkeys(seeds, next(iter(found.values())))
    out = {}
    for seed in seeds:
        if seed in found:
            result = found[seed]
            out[seed] = np.array([pass_at_k(result.k, int(count), k)
                                  for name in result.correct for count in result.counts(name)])
    return out


def base_gains(results: dict, variant: str, seeds: list, ks, *, num_resamples: int = 2000,
               seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`variant` − base student in Pass@k at each k of `ks`, with the interval `compare_to_base`
    judges it on (the seed x problem bootstrap of `verdict.bootstrap_difference`, same seed).

    Returns (summary, per_seed): one row per k with mean, low, high (fractions), and one row per
    (k, seed) with that seed's gain, for drawing the points beside the interval."""
    summary, per_seed = [], []
    for k in ks:
        difference = verdict.bootstrap_difference(problem_scores(results, variant, seeds, k=int(k)),
                                                  problem_scores(results, "base", seeds, k=int(k)),
                                                  num_resamples=num_resamples, seed=seed)
        summary.append({"k": int(k), "mean": difference.mean, "low": difference.low, "high": difference.high})
        per_seed += [{"k": int(k), "seed": s, "gain": g} for s, g in difference.per_seed.items()]
    return pd.DataFrame(summary), pd.DataFrame(per_seed)


# --- verdict lines -----------------------------------------------------------------------


def compare(name: str, a: Mapping, b: Mapping, direction: verdict.Direction, paper_effect: str, *,
            relative: bool = False, scale: float = 100.0, unit: str = " points", digits: int = 1) -> str:
    """The verdict line for "a − b" on paired seeds (Student t over seeds, `verdict` rule).

    `a`, `b`: {seed: summary quantity}. `relative`: judge the per-seed relative difference
    100 (a − b) / b in %, the paper's unit for "+5.54% relative"; a reference of 0 in some
    seed makes that undefined, and the line says so (inconclusive) instead of failing.
    Otherwise the difference is multiplied by `scale` (100: fractions as points) and
    followed by `unit`.
    """
    if relative:
        zero = [seed for seed in a if seed in b and float(b[seed]) == 0.0]
        if zero:
            paired = [seed for seed in a if seed in b]
            difference = verdict.Difference(math.nan, math.nan, math.nan, dict.fromkeys(paired, math.nan),
                                            relative=True, reason=f"the reference is 0 in seed(s) {zero}, "
                                                                  "so the relative difference is undefined")
        else:
            difference = verdict.paired_relative_difference(a, b)
        return verdict.claim_line(name, difference, direction, paper_effect, digits=digits)
    return verdict.claim_line(name, verdict.paired_difference(a, b), direction, paper_effect,
                              scale=scale, unit=unit, digits=digits)


def compare_to_base(name: str, results: dict, variant: str, seeds: list, direction: verdict.Direction,
                    paper_effect: str, *, k: int = 1, num_resamples: int = 2000, seed: int = 0) -> str:
    """The verdict line for "variant − base student" in points of per-problem Pass@k (k = 1:
    Avg@k). The base student has one evaluation, not one per seed, so a t interval over seeds
    would leave out its evaluation noise; the interval is the bootstrap over seeds and
    problems jointly (`verdict.bootstrap_difference`), the base repeated for every seed."""
    difference = verdict.bootstrap_difference(problem_scores(results, variant, seeds, k=k),
                                              problem_scores(results, "base", seeds, k=k),
                                              num_resamples=num_resamples, seed=seed)
    return verdict.claim_line(name, difference, direction, paper_effect, scale=100.0, unit=" points")


def interval_claim(name: str, estimate: float, low: float, high: float, direction: verdict.Direction,
                   paper_effect: str, *, evidence: str, scale: float = 100.0, unit: str = " points",
                   digits: int = 1) -> str:
    """The verdict line for a quantity measured in one run, with a bootstrap interval.

    Notebook 02 runs the recovery study once, with no seeds to pair: its interval resamples
    rollouts. The outcome follows the same rule (`verdict.verdict` on [low, high]); a NaN
    estimate or interval is inconclusive. `evidence` says what was resampled.
    """
    finite = all(math.isfinite(float(x)) for x in (estimate, low, high))
    difference = verdict.Difference(float(estimate), float(low), float(high), {}, method="bootstrap",
                                    reason=None if finite else "no interval")
    outcome = verdict.verdict(difference, direction)

    def signed(value: float) -> str:
        return f"{scale * value:+.{digits}f}" if math.isfinite(float(value)) else "n/a"

    ours = f"{signed(estimate)}{unit}" + (f" [{signed(low)}, {signed(high)}]" if finite else "")
    return f"- **{outcome}** — {name}: {ours} ({evidence}; paper: {paper_effect})"


def check(name: str, passed: bool | None, detail: str = "") -> str:
    """`verdict.check_line` for a test of the implementation; `passed` None (nothing to test
    in this run, e.g. no group with two rollouts on a path) gives a "check not run" line."""
    if passed is None:
        return f"- **check not run** — {name}" + (f": {detail}" if detail else "")
    return verdict.check_line(name, bool(passed), detail)


# --- the results page --------------------------------------------------------------------

POWER_FILE = "table1_power.json"  # written by notebook 04, read by the results page


def save_power(difference: verdict.Difference, *, metric: str, reference_mean: float, paper_relative: float,
               figures_dir: str = "figures") -> dict:
    """Record the SCOPE − OPD difference (fractions) whose half-width says what the run can
    resolve: seeds, mean, interval and half-width in points, and the paper's relative effect
    converted to points at this run's OPD level (`reference_mean`). Returns the record."""
    def points(value: float) -> float | None:
        return round(100 * value, 4) if math.isfinite(value) else None

    record = {"comparison": "SCOPE − OPD", "metric": metric, "seeds": difference.n,
              "mean_points": points(difference.mean), "low_points": points(difference.low),
              "high_points": points(difference.high), "half_width_points": points(difference.half_width),
              "reference_points": points(reference_mean), "paper_relative_percent": paper_relative,
              "paper_effect_points": points(paper_relative / 100 * reference_mean)}
    record.update(relative_power(difference, reference_mean))
    folder = resolve_figures_dir(figures_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / POWER_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return record


TARGET_RELATIVE_HALF_WIDTH = 4.0  # percent of the OPD level: an effect of the paper's size (5.54%) shows


def seeds_for_half_width(sd: float, target: float, *, confidence: float = 0.95, most: int = 10_000) -> int | None:
    """The fewest paired seeds n whose t interval half-width t(n - 1) * sd / sqrt(n) is at most
    `target` (same units as `sd`, the per-seed differences' standard deviation); None beyond `most`."""
    if not (math.isfinite(sd) and sd >= 0 and target > 0):
        return None
    for n in range(2, most + 1):
        if t_half_width(sd, n, confidence) <= target:
            return n
    return None


def relative_power(difference: verdict.Difference, reference_mean: float) -> dict:
    """The half-width as a percentage of the reference level (OPD's), the target of
    `TARGET_RELATIVE_HALF_WIDTH`, and the paired seeds that target would take at the per-seed
    spread measured here (`seeds_for_half_width`)."""
    values = list(difference.per_seed.values())
    if len(values) < 2 or not (math.isfinite(reference_mean) and reference_mean > 0):
        return {"half_width_relative_percent": None, "target_relative_percent": TARGET_RELATIVE_HALF_WIDTH,
                "seeds_for_target": None}
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    target = TARGET_RELATIVE_HALF_WIDTH / 100 * reference_mean
    return {"half_width_relative_percent": round(100 * difference.half_width / reference_mean, 3),
            "target_relative_percent": TARGET_RELATIVE_HALF_WIDTH,
            "seeds_for_target": seeds_for_half_width(sd, target, confidence=difference.confidence)}


def power_text(record: dict) -> str:
    """The results page's sentence on seeds and the SCOPE − OPD half-width reached."""
    seeds = f"{record['seeds']} seed{'s' if record['seeds'] != 1 else ''}"
    head = f"**Power.** Table 1 pairs {seeds}. Its {record['comparison']} {record['metric']} difference"
    if record["half_width_points"] is None:
        return f"{head} has no interval (fewer than 2 paired seeds)."
    text = (f"{head} is {record['mean_points']:+.1f} points [{record['low_points']:+.1f}, "
            f"{record['high_points']:+.1f}]: a 95% half-width of **{record['half_width_points']:.1f} points**.")
    if record["paper_effect_points"] is not None:
        text += (f" An effect of the paper's size ({record['paper_relative_percent']:+.2f}% relative) would be "
                 f"{record['paper_effect_points']:+.1f} points at this run's OPD level, so it "
                 + ("could" if record["half_width_points"] < abs(record["paper_effect_points"]) else "could not")
                 + " be told from 0 at this half-width.")
    if record.get("half_width_relative_percent") is not None:
        reached = record["half_width_relative_percent"] <= record["target_relative_percent"]
        needed = record.get("seeds_for_target")
        text += (f" Relative to OPD's level the half-width is {record['half_width_relative_percent']:.1f}% (target: at most "
                 f"{record['target_relative_percent']:g}%, " + ("reached)." if reached else
                 f"not reached; at this spread it would take {needed if needed else 'more than 10,000'} paired seeds)."))
    return text


def show_claims(name: str, lines: list[str], figures_dir: str = "figures") -> str:
    """Display the notebook's verdict lines and save them as `<name>.claims.md` for the results page."""
    from IPython.display import Markdown, display

    text = "\n".join(lines)
    folder = resolve_figures_dir(figures_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.claims.md").write_text(text + "\n")
    display(Markdown(text))
    return text


# The results page, in notebook order: (artefact-name prefixes, notebook, heading).
RESULTS_PAGE = [
    (("nb00",), "00", "The tiny world: teacher and student calibration"),
    (("fig1a",), "01", "Fig. 1a: the Pass@k paradox"),
    (("fig1b", "table6", "table7", "table9", "nb02"), "02", "Fig. 1b, Tables 6, 7, 9-12: error recovery by teacher perplexity"),
    (("eq4",), "03", "Eq. 4-5: DPAW weights on real rollouts"),
    (("table1",), "04", "Table 1: main results"),
    (("fig3",), "05", "Fig. 3: training dynamics"),
    (("fig4",), "06", "Fig. 4: Pass@k curves"),
    (("fig5",), "07", "Fig. 5: DPAW ablations"),
    (("fig6",), "08", "Fig. 6: weight temperature"),
    (("table8",), "09", "Table 8: per-step time by component"),
    (("nb10",), "10", "DPAW weights step by step (implementation checks)"),
    (("table2",), "11", "Table 2: code generation (the tiny code world, hidden tests in the sandbox)"),
]

# What a section's comparison adds to the paper, where the paper has no such comparison (one
# sentence under the section's heading; it describes the question, never a result).
SECTION_NOTES = {
    "04": "The RL-KD hybrid row (GRPO's reward advantage plus beta times the teacher-student log-ratio on "
          "every rollout, as KDRL-style trainers run it) is not in the paper, which cites such hybrids without "
          "running one: \"SCOPE − RL-KD hybrid\" asks whether routing rollouts by correctness, with DPAW weights, "
          "beats the hybrid that SCOPE's likeliest adopters already have.",
}
SECTION_NOTES["11"] = SECTION_NOTES["04"]


def artefact_caption(folder: Path, name: str, *, with_caption: bool = True) -> str:
    """The italic caption line of artefact `name`: its recorded caption (unless not
    `with_caption`) and the parameters it came from (`<name>.params.json`, written by
    `scope_lib.notebook.nb.Context`); "" with no record."""
    path = folder / f"{name}{nb_params.RECORD_SUFFIX}"
    if not path.exists():
        return ""
    record = json.loads(path.read_text())
    caption = record.get("caption", "").strip() if with_caption else ""
    return "*" + " ".join(filter(None, [caption, nb_params.parameters_text(record) + "."])) + "*"


def build_results_page(figures_dir: str = "figures", *, header: str = "") -> Path:
    """Write `<figures_dir>/README.md`: the verdict rule and the power reached (from notebook
    04's `POWER_FILE`, when it exists) at the top, then every figure embedded, each with its
    caption and parameters (from `<name>.params.json`) and the verdicts its notebook saved.

    Only artefacts whose files exist are listed, so the page shows what the last run made. A
    folder inside `variants/` says at the top that it holds a parameter variant.
    """
    folder = resolve_figures_dir(figures_dir)
    parts = ["# Results at `tiny` scale", "",
             "The route world (`tiny`, shipped in `worlds/tiny_routes/`) for every section but Table 2, which runs on the code world (`tiny_code`, `worlds/tiny_code/`).", "",
             "Every figure and table below was produced by the numbered notebooks (`python3 -m scope_lib.bootstrap "
             "notebooks`); each verdict line judges one claim of the paper on this run's own numbers, with the "
             "paper's effect size beside ours.", "", verdict.RULE_TEXT, ""]
    if folder.parent.name == nb_params.VARIANTS_FOLDER:
        parts += [f"**Parameter variant `{folder.name}`**: the notebooks below ran with parameters off their "
                  "defaults (each figure names them); the results at the notebooks' defaults are the ones "
                  "in the `figures/` folder above this one.", ""]
    power = folder / POWER_FILE
    if power.exists():
        parts += [power_text(json.loads(power.read_text())), ""]
    if header:
        parts += [header, ""]

    def captioned(name: str, with_caption: bool = True) -> list[str]:
        caption = artefact_caption(folder, name, with_caption=with_caption)
        return [caption, ""] if caption else []

    for prefixes, notebook, title in RESULTS_PAGE:
        def matching(pattern):
            return sorted({p for prefix in prefixes for p in folder.glob(f"{prefix}*{pattern}")})

        claims = matching(".claims.md")
        images = matching(".png")
        tables = [p for p in matching(".md") if not p.name.endswith(".claims.md")]
        if not (claims or images or tables):
            continue
        parts += [f"## {title}", "", f"Notebook `notebooks/{notebook}_*.ipynb`.", ""]
        if notebook in SECTION_NOTES:
            parts += [SECTION_NOTES[notebook], ""]
        for image in images:
            parts += [f"![{image.stem}]({image.name})", ""] + captioned(image.stem)
        # A paper table, or the tables of a section without figures, is shown itself; long-format
        # dumps and a figure's data stay linked only.
        for table in tables:
            if "long" not in table.stem and (not images or table.stem.startswith("table")):
                parts += [f"**{table.stem}**", "", table.read_text().strip(), ""] + captioned(table.stem)
        for claim_file in claims:
            parts += [claim_file.read_text().strip(), ""] + captioned(claim_file.name[: -len(".claims.md")], with_caption=False)
        if tables:
            parts += ["Tables: " + ", ".join(f"[{t.stem}]({t.name})" for t in tables), ""]
    page = folder / "README.md"
    page.write_text("\n".join(parts))
    return page
