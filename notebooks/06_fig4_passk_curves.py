# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · Fig. 4: Pass@k curves
#
# Pass@k for k = 1..K for every method, per eval set, mean over seeds with a 95% band. The
# paper's claims: SCOPE's Pass@k is above every baseline's, and it keeps rising with k
# (diversity scaling) where GRPO and OPD flatten. The runs and evaluations are the ones
# notebook 04 made (run registry), OPD both as in the paper (`opd`, G = 1) and matched in
# rollouts (`opd_g8`).
#
# Each claim is judged by the rule at the top of the results page on one summary quantity per
# seed, paired by seed and averaged over the eval sets: for "above at every k", the mean of
# Pass@k over k = 1..K (the area under the curve divided by K); for "keeps rising", the gain
# over the last doubling of k, Pass@K − Pass@(K/2).

# %% tags=["parameters"]
SCALE = "tiny"
SMOKE = False
SEEDS = [0, 1, 2, 3, 4]
METHODS = ["grpo", "kd", "opd", "opd_g8", "scope"]
EVAL_K = 16
FIGURES_DIR = "figures"

# %%
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

from scope_lib import figure_data, report
from scope_lib.experiments import run_grid
from scope_lib.plotting import METHOD_COLORS, mean_ci, save_table, savefig, use_style

use_style()
COLORS = {**METHOD_COLORS, "opd_g8": "#ffbb78"}  # light orange beside OPD's; plotting has no entry for it yet
seeds = SEEDS[:1] if SMOKE else SEEDS
eval_k = 4 if SMOKE else EVAL_K
df, results = run_grid(SCALE, METHODS, seeds, smoke=SMOKE, **{"eval.k": eval_k})
sets = [s for s in df.eval_set.unique() if s != "average"]
curves = pd.concat([report.pass_curves(results, v, s).assign(variant=v, eval_set=s or "average")
                    for s in sets + [None] for v in ["base"] + METHODS], ignore_index=True)
save_table(curves, "fig4_passk_curves", figures_dir=FIGURES_DIR)

# %% [markdown]
# ## Generates and saves Figure 4
# Mean over seeds with the 95% t interval over seeds (the interval of the verdicts), drawn by
# seaborn from each seed's curve and clipped to 0-100. GRPO's seeds spread so widely that its
# band would swamp the other methods' differences, so it has its own row (its seeds as thin
# lines), with the untrained student as the reference in both rows.

# %%
per_seed = figure_data.pass_curves_long(results, ["base"] + METHODS).assign(pct=lambda d: 100 * d["pass@k"])
own_row = [v for v in METHODS if v == "grpo"]
rows = [["base"] + [v for v in METHODS if v not in own_row]] + ([["base"] + own_row] if own_row else [])
fig, axes = plt.subplots(len(rows), len(sets) + 1, figsize=(2.9 * (len(sets) + 1) + 1.5, 2.9 * len(rows)),
                         squeeze=False, sharex=True, layout="constrained")
for row, variants in zip(axes, rows):
    for ax, eval_set in zip(row, sets + ["average"]):
        part = per_seed[per_seed.variant.isin(variants) & (per_seed.eval_set == eval_set)]
        sns.lineplot(part, x="k", y="pct", hue="variant", hue_order=variants, palette=COLORS, marker="o", ms=3, mew=0, legend=False,
                     errorbar=lambda v: tuple(min(max(x, 0.0), 100.0) for x in mean_ci(v)[1:]), ax=ax)
        for variant in own_row if variants[-1] in own_row else []:
            sns.lineplot(part[part.variant == variant], x="k", y="pct", units="seed", estimator=None, color=COLORS[variant],
                         lw=0.7, alpha=0.4, legend=False, ax=ax)
        ax.set(xscale="log", title=eval_set if variants[-1] not in own_row else f"{eval_set}: {', '.join(own_row)}",
               ylabel="Pass@k (%)" if ax is row[0] else "")
        ax.xaxis.set(major_locator=FixedLocator(sorted({2 ** i for i in range(eval_k.bit_length())} | {eval_k})),
                     major_formatter=ScalarFormatter(), minor_locator=NullLocator())
handles = [Line2D([], [], color=COLORS[v], marker="o", ms=3, label=v) for v in ["base"] + METHODS]
handles += [Line2D([], [], color=COLORS[v], lw=0.7, alpha=0.4, label=f"{v}, one seed") for v in own_row]
fig.legend(handles=handles, loc="outside right upper", title="mean over seeds,\nband: 95% t interval")
fig.suptitle(f"Pass@k curves ({SCALE}, {len(seeds)} seed(s))")
savefig(fig, "fig4_passk_curves", figures_dir=FIGURES_DIR)

# %% [markdown]
# ## Verdicts (saved for the results page)
# Fig. 4 has no numbers in the paper's text; its Table 1 gives the average Pass@32 of the same
# runs (R1-Distill-1.5B student): SCOPE 75.0, OPD 73.1, KD 72.0, GRPO 71.1.

# %%
PAPER_PASS32 = {"grpo": "71.1", "kd": "72.0", "opd": "73.1", "opd_g8": "73.1 for OPD at G = 1"}  # no G = 8 OPD there
k_half = max(1, eval_k // 2)
area = {v: report.pass_area(results, v) for v in METHODS}
gain = {v: report.pass_gain(results, v, k_half, eval_k) for v in METHODS}
avg = curves[curves.eval_set == "average"].pivot(index="k", columns="variant", values="pass@k")
lines = [f"Scale `{SCALE}`{' (smoke)' if SMOKE else ''}, {len(seeds)} seed(s): mean Pass@k over k = 1..{eval_k} "
         + ", ".join(f"{v} {100 * avg[v].mean():.1f}%" for v in ["base"] + METHODS)
         + f"; gain from k = {k_half} to {eval_k} " + ", ".join(f"{v} {100 * (avg[v].iloc[-1] - avg[v].loc[k_half]):+.1f}"
                                                         for v in ["base"] + METHODS) + " points (means over seeds)."]
for baseline in [v for v in METHODS if v != "scope"]:
    lines.append(report.compare(f"SCOPE − {baseline} mean Pass@k over k = 1..{eval_k}", area["scope"], area[baseline],
                                "greater", f"SCOPE above at every k (Fig. 4; Table 1 Pass@32 75.0 vs "
                                           f"{PAPER_PASS32.get(baseline, 'n/a')})"))
for baseline in [v for v in METHODS if v in ("grpo", "opd", "opd_g8")]:
    lines.append(report.compare(f"SCOPE − {baseline} gain Pass@{eval_k} − Pass@{k_half}", gain["scope"], gain[baseline],
                                "greater", "SCOPE keeps rising up to k = 32, GRPO and OPD plateau (Fig. 4; no number "
                                           "in the text)"))
report.show_claims("fig4_passk_curves", lines, figures_dir=FIGURES_DIR)
