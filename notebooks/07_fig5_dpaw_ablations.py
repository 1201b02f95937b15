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
# # 07 · Fig. 5: DPAW ablations
#
# Full SCOPE against its five ablations (DESIGN section 2): no DPAW (uniform weights on both
# paths, routing kept), no student weight, reversed student weight (`PPL_S^(-1/tau)`, what the
# authors' released scripts run), no teacher weight, reversed teacher weight. Avg@k and
# Pass@k averaged over the eval sets, mean and 95% CI over seeds.

# %% tags=["parameters"]
SCALE = "tiny"
SMOKE = False
SEEDS = [0, 1, 2]
EVAL_K = 16
FIGURES_DIR = "figures"

# %%
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

from scope_lib import report
from scope_lib.experiments import ABLATIONS, run_grid
from scope_lib.plotting import METHOD_COLORS, save_table, savefig, use_style

use_style()
seeds = SEEDS[:1] if SMOKE else SEEDS
eval_k = 4 if SMOKE else EVAL_K
variants = ["scope", *ABLATIONS]
df, results = run_grid(SCALE, variants, seeds, smoke=SMOKE, include_base=False, **{"eval.k": eval_k})
summary = report.seed_summary(df)
avg = summary[summary.eval_set == "average"].set_index("variant").loc[variants]

# %% [markdown]
# ## Generates and saves Figure 5

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
for ax, metric in zip(axes, ["avg@k", "pass@k"]):
    x = np.arange(len(variants))
    ax.bar(x, 100 * avg[metric], yerr=100 * avg[f"{metric}_ci"].fillna(0), color=[METHOD_COLORS[v] for v in variants], capsize=3)
    ax.set_xticks(x, [v.replace("_", "\n") for v in variants], fontsize=8)
    ax.set(ylabel=f"{metric.replace('k', str(eval_k))} (%)", title=f"{metric.replace('k', str(eval_k))}, mean over eval sets")
    low = 100 * (avg[metric] - avg[f"{metric}_ci"].fillna(0)).min()
    ax.set_ylim(max(0, low - 5), None)
fig.suptitle(f"DPAW ablations ({SCALE}, {len(seeds)} seed(s))")
fig.tight_layout()
savefig(fig, "fig5_dpaw_ablations", figures_dir=FIGURES_DIR)
save_table(summary, "fig5_dpaw_ablations", figures_dir=FIGURES_DIR)

# %%
def cell(v, m):
    return float(avg.loc[v, m]), float(avg.loc[v, f"{m}_ci"])
lines = [f"Scale `{SCALE}`{' (smoke)' if SMOKE else ''}, {len(seeds)} seed(s), k = {eval_k}."]
for ablation in ABLATIONS:
    for metric in ("avg@k", "pass@k"):
        verdict = report.separated(cell("scope", metric), cell(ablation, metric))
        lines.append(report.claim(f"removing or reversing a weight ({ablation}) lowers {metric.replace('k', str(eval_k))}", verdict,
                                  f"SCOPE {100 * cell('scope', metric)[0]:.1f} ± {100 * cell('scope', metric)[1]:.1f} vs "
                                  f"{100 * cell(ablation, metric)[0]:.1f} ± {100 * cell(ablation, metric)[1]:.1f}"))
report.show_claims("fig5_dpaw_ablations", lines, figures_dir=FIGURES_DIR)
