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
#
# The paradox is two claims, each judged by the rule at the top of the results page on one
# summary quantity per seed: OPD − base at k = 1 (Pass@1, i.e. Avg@k) should be positive and
# OPD − base at the largest k (Pass@K) negative. The base student is evaluated once, so the
# interval is a bootstrap over seeds and eval problems jointly, the base paired with every seed.

# %% tags=["parameters"]
SCALE = "tiny"
SMOKE = False
SEEDS = [0, 1, 2, 3, 4]
EVAL_K = 16
FIGURES_DIR = "figures"

# %%
import matplotlib.pyplot as plt

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
report.show_claims("fig1a_passk_paradox", [
    f"Scale `{SCALE}`{' (smoke)' if SMOKE else ''}, {len(seeds)} seed(s), k up to {eval_k}: OPD changes Pass@1 by "
    f"{gain_1:+.1f} points and Pass@{eval_k} by {gain_k:+.1f} points relative to the base student (means over seeds "
    f"and eval sets). The paradox needs both lines below reproduced.",
    report.compare_to_base("OPD − base student Pass@1", results, "opd", seeds, "greater",
                           "rises (Fig. 1a is AIME24: Avg@32 29.4 → 40.2 in Table 1, +10.8 points)", k=1),
    report.compare_to_base(f"OPD − base student Pass@{eval_k} (the largest k)", results, "opd", seeds, "less",
                           "-1.5 points (AIME24 Pass@32 76.5 → 75.0, Fig. 1a)", k=eval_k),
], figures_dir=FIGURES_DIR)
