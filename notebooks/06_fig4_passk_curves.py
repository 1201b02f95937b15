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
# paper's claim: SCOPE's pass rate keeps rising with k (diversity scaling) where GRPO and OPD
# flatten. The runs and evaluations are the ones notebook 04 made (run registry).

# %% tags=["parameters"]
SCALE = "tiny"
SMOKE = False
SEEDS = [0, 1, 2]
METHODS = ["grpo", "kd", "opd", "scope"]
EVAL_K = 16
FIGURES_DIR = "figures"

# %%
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from scope_lib import report
from scope_lib.experiments import run_grid
from scope_lib.plotting import METHOD_COLORS, save_table, savefig, use_style

use_style()
seeds = SEEDS[:1] if SMOKE else SEEDS
eval_k = 4 if SMOKE else EVAL_K
df, results = run_grid(SCALE, METHODS, seeds, smoke=SMOKE, **{"eval.k": eval_k})
sets = [s for s in df.eval_set.unique() if s != "average"]

# %% [markdown]
# ## Generates and saves Figure 4

# %%
fig, axes = plt.subplots(1, len(sets) + 1, figsize=(3.2 * (len(sets) + 1), 3.4), sharey=False)
rows = []
for ax, eval_set in zip(axes, sets + [None]):
    for variant in ["base"] + METHODS:
        curve = report.pass_curves(results, variant, eval_set)
        ax.plot(curve.k, 100 * curve["pass@k"], color=METHOD_COLORS[variant], label=variant, marker=".")
        if curve["low"].notna().all():
            ax.fill_between(curve.k, 100 * curve.low, 100 * curve.high, color=METHOD_COLORS[variant], alpha=0.15)
        rows.append(curve.assign(variant=variant, eval_set=eval_set or "average"))
    ax.set(xscale="log", xlabel="k", title=eval_set or "average")
axes[0].set_ylabel("Pass@k (%)")
axes[-1].legend(fontsize=8)
fig.suptitle(f"Pass@k curves ({SCALE}, {len(seeds)} seed(s))")
fig.tight_layout()
savefig(fig, "fig4_passk_curves", figures_dir=FIGURES_DIR)
curves = pd.concat(rows, ignore_index=True)
save_table(curves, "fig4_passk_curves", figures_dir=FIGURES_DIR)

# %%
avg = curves[curves.eval_set == "average"].pivot(index="k", columns="variant", values="pass@k")
growth = 100 * (avg.iloc[-1] - avg.iloc[0])
best_k = avg.iloc[-1].drop("base").idxmax()
report.show_claims("fig4_passk_curves", [
    f"Scale `{SCALE}`{' (smoke)' if SMOKE else ''}: growth of average Pass@k from k=1 to k={eval_k} (points): "
    + ", ".join(f"{v} {growth[v]:+.1f}" for v in ["base"] + METHODS) + ".",
    report.claim(f"SCOPE has the highest Pass@{eval_k} of the trained methods", best_k == "scope",
                 f"best at k={eval_k}: {best_k} ({100 * avg.iloc[-1][best_k]:.1f}%); SCOPE {100 * avg.iloc[-1]['scope']:.1f}%"),
    report.claim("SCOPE's pass rate grows more with k than GRPO's and OPD's",
                 bool(growth["scope"] > max(growth["grpo"], growth["opd"])),
                 f"growth SCOPE {growth['scope']:+.1f}, GRPO {growth['grpo']:+.1f}, OPD {growth['opd']:+.1f}"),
], figures_dir=FIGURES_DIR)
