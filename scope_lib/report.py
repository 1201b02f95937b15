"""Tables and sentences the notebooks build from measured results (never from typed numbers).

`seed_summary` turns the tidy rows of `experiments.run_grid` into mean and 95% confidence
interval over seeds; `relative_change` adds Table 1's "relative gain vs OPD";
`pass_curves` gives Fig. 4's mean Pass@k curve with a band; `step_curves` gives Fig. 3's
per-step training curves; `claim` writes one verdict line for the results page.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scope_lib.plotting import mean_ci


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


def relative_change(summary: pd.DataFrame, metric: str, reference: str = "opd", eval_set: str = "average") -> pd.Series:
    """Relative change of `metric` on `eval_set` versus `reference`, in percent, per variant."""
    part = summary[summary.eval_set == eval_set].set_index("variant")[metric]
    if reference not in part.index:
        raise ValueError(f"reference variant {reference!r} has no {metric} on {eval_set!r}")
    return 100 * (part - part[reference]) / part[reference]


def pass_curves(results: dict, variant: str, eval_set: str | None = None) -> pd.DataFrame:
    """Mean Pass@k over seeds (and CI band) for k = 1..K; eval_set None averages the sets."""
    per_seed = []
    for (v, _seed), result in results.items():
        if v != variant:
            continue
        sets = [eval_set] if eval_set else list(result.correct)
        curves = [result.pass_at_k_curve(name) for name in sets]
        per_seed.append({k: float(np.mean([c[k] for c in curves])) for k in curves[0]})
    if not per_seed:
        raise ValueError(f"no results for variant {variant!r}")
    rows = []
    for k in per_seed[0]:
        mean, low, high = mean_ci(np.array([c[k] for c in per_seed]))
        # A t interval over 3 seeds can leave [0, 1]; a pass rate cannot.
        rows.append({"k": k, "pass@k": mean, "low": max(low, 0.0), "high": min(high, 1.0)})
    return pd.DataFrame(rows)


def step_curves(histories: dict[tuple[str, int], list[dict]], metric: str) -> pd.DataFrame:
    """Per-step mean and CI over seeds of a logged training metric, one row per (variant, step)."""
    rows = []
    variants = sorted({v for v, _ in histories})
    for variant in variants:
        runs = [h for (v, _), h in histories.items() if v == variant]
        steps = min(len(h) for h in runs)
        for i in range(steps):
            values = np.array([h[i].get(metric, np.nan) for h in runs], dtype=float)
            mean, low, high = mean_ci(values[np.isfinite(values)]) if np.isfinite(values).any() else (np.nan,) * 3
            rows.append({"variant": variant, "step": runs[0][i]["step"], metric: mean, "low": low, "high": high})
    return pd.DataFrame(rows)


def claim(text: str, holds: bool | None, evidence: str) -> str:
    """One results-page line: the paper's claim, whether the run reproduces it, and the numbers."""
    verdict = {True: "reproduced", False: "not reproduced", None: "inconclusive"}[holds]
    return f"- **{verdict}**: {text} ({evidence})"


def separated(a: tuple[float, float], b: tuple[float, float]) -> bool | None:
    """True if mean a > mean b with non-overlapping CIs, False if the reverse, None if they overlap.

    Each argument is (mean, ci half-width); a NaN half-width (one seed) counts as zero.
    """
    (ma, ca), (mb, cb) = a, b
    ca, cb = (0.0 if not np.isfinite(c) else c for c in (ca, cb))
    if ma - ca > mb + cb:
        return True
    if mb - cb > ma + ca:
        return False
    return None


def show_claims(name: str, lines: list[str], figures_dir: str = "figures") -> str:
    """Display the notebook's verdict lines and save them as `<name>.claims.md` for the results page."""
    from IPython.display import Markdown, display

    from scope_lib.plotting import resolve_figures_dir

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
]


def build_results_page(figures_dir: str = "figures", *, header: str = "") -> "Path":
    """Write `<figures_dir>/README.md`: every figure embedded, each with the verdicts its notebook saved.

    Only artefacts whose files exist are listed, so the page shows what the last run made.
    """
    from pathlib import Path

    from scope_lib.plotting import resolve_figures_dir

    folder = resolve_figures_dir(figures_dir)
    parts = ["# Results at `tiny` scale", "",
             "Every figure and table below was produced by the numbered notebooks (`python3 -m scope_lib.bootstrap "
             "notebooks`); each verdict line compares the run's own numbers with the paper's claim.", ""]
    if header:
        parts += [header, ""]
    for prefixes, notebook, title in RESULTS_PAGE:
        def matching(pattern):
            return sorted({p for prefix in prefixes for p in folder.glob(f"{prefix}*{pattern}")})

        claims = matching(".claims.md")
        images = matching(".png")
        tables = [p for p in matching(".md") if not p.name.endswith(".claims.md")]
        if not (claims or images or tables):
            continue
        parts += [f"## {title}", "", f"Notebook `notebooks/{notebook}_*.ipynb`.", ""]
        parts += [f"![{image.stem}]({image.name})" for image in images] + [""]
        if not images:  # a table artefact: show the table itself (long-format dumps stay linked only)
            for table in tables:
                if "long" not in table.stem:
                    parts += [f"**{table.stem}**", "", table.read_text().strip(), ""]
        for claim_file in claims:
            parts += [claim_file.read_text().strip(), ""]
        if tables:
            parts += ["Tables: " + ", ".join(f"[{t.stem}]({t.name})" for t in tables), ""]
    page = folder / "README.md"
    page.write_text("\n".join(parts))
    return Path(page)
