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
# # 01 · Fig. 1a: the Pass@k paradox
#
# The paper's motivation: on-policy distillation on *all* rollouts (OPD) raises Pass@1 but
# lowers Pass@k at large k, because dense teacher supervision narrows the student's
# distribution. Here: the base student against OPD, Pass@k for k = 1..K averaged over the
# held-out eval sets, mean and 95% band over seeds. The OPD runs are shared with notebook 04.

# %% tags=["parameters"]
SCALE = "tiny"
SMOKE = False
SEEDS = [0, 1, 2]
EVAL_K = 16
FIGURES_DIR = "figures"

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from scope_lib import report
from scope_lib.experiments import run_grid
from scope_lib.plotting import METHOD_COLORS, save_table, savefig, use_style

use_style()
seeds = SEEDS[:1] if SMOKE else SEEDS
eval_k = 4 if SMOKE else EVAL_K
df, results = run_grid(SCALE, ["opd"], seeds, smoke=SMOKE, **{"eval.k": eval_k})
# the base student's evaluation does not depend on the training seed: one entry serves every seed
curves = {"base": report.pass_curves(results, "base"), "opd": report.pass_curves(results, "opd")}

# %% [markdown]
# ## Generates and saves Figure 1a

# %%
fig, (ax, ax_delta) = plt.subplots(1, 2, figsize=(10, 4))
for name, curve in curves.items():
    ax.plot(curve.k, 100 * curve["pass@k"], marker="o", color=METHOD_COLORS[name], label=name.upper() if name == "opd" else "base student")
    if curve["low"].notna().all():
        ax.fill_between(curve.k, 100 * curve.low, 100 * curve.high, color=METHOD_COLORS[name], alpha=0.2)
ax.set(xscale="log", xlabel="k", ylabel="Pass@k (%)", title=f"Pass@k, mean over eval sets ({SCALE})")
ax.legend()
delta = 100 * (curves["opd"]["pass@k"] - curves["base"]["pass@k"])
ax_delta.axhline(0, color="black", lw=0.8)
ax_delta.bar(curves["opd"].k.astype(str), delta, color=[METHOD_COLORS["opd"] if d >= 0 else METHOD_COLORS["base"] for d in delta])
ax_delta.set(xlabel="k", ylabel="OPD − base (points)", title="Gain of OPD over the base student")
fig.tight_layout()
savefig(fig, "fig1a_passk_paradox", figures_dir=FIGURES_DIR)
table = curves["base"][["k"]].assign(base=curves["base"]["pass@k"], opd=curves["opd"]["pass@k"], gain=delta / 100)
save_table(table, "fig1a_passk_paradox", figures_dir=FIGURES_DIR)

# %%
gain_1, gain_k = float(delta.iloc[0]), float(delta.iloc[-1])
paradox = gain_1 > 0 and gain_k < 0
report.show_claims("fig1a_passk_paradox", [
    f"Scale `{SCALE}`{' (smoke)' if SMOKE else ''}, {len(seeds)} seed(s), k up to {eval_k}: OPD changes Pass@1 by "
    f"{gain_1:+.1f} points and Pass@{eval_k} by {gain_k:+.1f} points relative to the base student.",
    report.claim("OPD raises Pass@1 while lowering Pass@k at large k (the Pass@k paradox)", paradox if gain_1 > 0 else None,
                 f"Pass@1 {100 * curves['base']['pass@k'].iloc[0]:.1f} → {100 * curves['opd']['pass@k'].iloc[0]:.1f}, "
                 f"Pass@{eval_k} {100 * curves['base']['pass@k'].iloc[-1]:.1f} → {100 * curves['opd']['pass@k'].iloc[-1]:.1f}"),
], figures_dir=FIGURES_DIR)
