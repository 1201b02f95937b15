# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
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

# %% [markdown]
# The committed results, shown before anything runs

# %%
from scope_lib.notebook import nb

nb.show_committed("06_fig4_passk_curves")

# %% tags=["parameters"]
SCALE = "tiny"  # smoke: "tiny_routes_smoke"
SMOKE = False  # True: a seconds-sized run; each parameter left at its default takes its smoke value
SEEDS = [0, 1, 2, 3, 4]  # smoke: [0]
METHODS = ["grpo", "kd", "opd", "opd_g8", "hybrid", "scope"]
EVAL_K = 16  # smoke: 4
FIGURES_DIR = "figures"

# %%
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from scope_lib.notebook import figure_data, nb, report
from scope_lib.experiments.grid import run_grid
from scope_lib.common.plotting import display_name, k_axis, method_palette, t_interval_within

ctx = nb.setup("06_fig4_passk_curves", globals())
df, results = run_grid(SCALE, METHODS, SEEDS, **{"eval.k": EVAL_K})
sets = [s for s in df.eval_set.unique() if s != "average"]
curves = pd.concat([report.pass_curves(results, v, s).assign(variant=v, eval_set=s or "average")
                    for s in sets + [None] for v in ["base"] + METHODS], ignore_index=True)
ctx.save_table(curves, "fig4_passk_curves");

# %% [markdown]
# ## Generates and saves Figure 4
# Mean over seeds of each seed's curve, drawn by seaborn. Only SCOPE and OPD (the paper's
# baseline) carry a band, the 95% t interval over seeds (the interval of the verdicts) clipped
# to 0-100; the other methods are their means, so the bands do not hide each other. The
# untrained student, evaluated once, is the dashed reference in both rows. GRPO's seeds spread
# so widely that it has its own row, its seeds as thin lines; each row has its own legend.

# %%
BANDED = ["opd", "scope"]  # SCOPE and the paper's baseline
per_seed = figure_data.pass_curves_long(results, ["base"] + METHODS).assign(pct=lambda d: 100 * d["pass@k"],
                                                                            method=lambda d: d.variant.map(display_name))
own_row = [v for v in METHODS if v == "grpo"]
rows = [[v for v in METHODS if v not in own_row]] + ([own_row] if own_row else [])
palette = method_palette(["base"] + METHODS)
fig, axes = plt.subplots(len(rows), len(sets) + 1, figsize=(2.9 * (len(sets) + 1) + 2.2, 2.9 * len(rows)), squeeze=False,
                         layout="constrained")
for row, variants in zip(axes, rows):
    for ax, eval_set in zip(row, sets + ["average"]):
        part = per_seed[per_seed.eval_set == eval_set]
        base = part[part.variant == "base"]
        ax.plot(base.k, base.pct, color=palette[display_name("base")], ls="--", lw=1.4, label=display_name("base"))
        for variant in variants:
            mine = part[part.variant == variant]
            sns.lineplot(mine, x="k", y="pct", color=palette[display_name(variant)], marker="o", ms=3, mew=0,
                         errorbar=t_interval_within(0, 100) if variant in BANDED else None, label=display_name(variant), ax=ax)
            for i, (_, one_seed) in enumerate(mine.groupby("seed") if variant in own_row else []):
                ax.plot(one_seed.k, one_seed.pct, lw=0.7, alpha=0.5, color=palette[display_name(variant)],
                        label=f"{display_name(variant)}, one seed" if i == 0 else "_one seed")
        k_axis(ax, range(1, EVAL_K + 1))
        ax.set(title=eval_set if variants == rows[0] else f"{eval_set}: {', '.join(map(display_name, own_row))}",
               ylabel="Pass@k (%)" if ax is row[0] else "", xlabel="k")
    handles, labels = row[0].get_legend_handles_labels()
    for ax in row:
        ax.get_legend().remove()
    row[-1].legend(handles, labels, loc="upper left", bbox_to_anchor=(1.04, 1.0), frameon=False, alignment="left",
                   title="mean over seeds;\n" + ("bands (SCOPE, OPD):\n95% t interval" if variants == rows[0] else
                                                 "thin lines: one seed each"))
fig.suptitle(f"Fig. 4: Pass@k against k ({ctx.scale_label}, {len(SEEDS)} seed(s))")
ctx.savefig(fig, "fig4_passk_curves", caption="Pass@k against k per eval set, mean over seeds; bands (SCOPE and OPD only): "
            "the 95% t interval over seeds, clipped to 0-100; dashed: the base student, evaluated once; GRPO in its own "
            "row with its seeds as thin lines.");

# %% [markdown]
# ## Verdicts (saved for the results page)
# Fig. 4 has no numbers in the paper's text; its Table 1 gives the average Pass@32 of the same
# runs (R1-Distill-1.5B student): SCOPE 75.0, OPD 73.1, KD 72.0, GRPO 71.1.

# %%
PAPER_PASS32 = {"grpo": "71.1", "kd": "72.0", "opd": "73.1", "opd_g8": "73.1 for OPD at G = 1"}  # no G = 8 OPD there
k_half = max(1, EVAL_K // 2)
area = {v: report.pass_area(results, v) for v in METHODS}
gain = {v: report.pass_gain(results, v, k_half, EVAL_K) for v in METHODS}
avg = curves[curves.eval_set == "average"].pivot(index="k", columns="variant", values="pass@k")
lines = [f"Scale `{ctx.scale_label}`, {len(SEEDS)} seed(s): mean Pass@k over k = 1..{EVAL_K} "
         + ", ".join(f"{display_name(v)} {100 * avg[v].mean():.1f}%" for v in ["base"] + METHODS)
         + f"; gain from k = {k_half} to {EVAL_K} " + ", ".join(f"{display_name(v)} {100 * (avg[v].iloc[-1] - avg[v].loc[k_half]):+.1f}"
                                                         for v in ["base"] + METHODS) + " points (means over seeds)."]
for baseline in [v for v in METHODS if v != "scope"]:
    lines.append(report.compare(f"SCOPE − {display_name(baseline)} mean Pass@k over k = 1..{EVAL_K}", area["scope"], area[baseline],
                                "greater", f"SCOPE above at every k (Fig. 4; Table 1 Pass@32 75.0 vs "
                                           f"{PAPER_PASS32.get(baseline, 'n/a')})"))
for baseline in [v for v in METHODS if v in ("grpo", "opd", "opd_g8")]:
    lines.append(report.compare(f"SCOPE − {display_name(baseline)} gain Pass@{EVAL_K} − Pass@{k_half}", gain["scope"], gain[baseline],
                                "greater", "SCOPE keeps rising up to k = 32, GRPO and OPD plateau (Fig. 4; no number "
                                           "in the text)"))
ctx.show_claims("fig4_passk_curves", lines);
