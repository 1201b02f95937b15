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

# %% [markdown]
# The committed results, shown before anything runs

# %%
from scope_lib.notebook import nb

nb.show_committed("01_fig1a_passk_paradox")

# %% tags=["parameters"]
SCALE = "tiny"  # smoke: "tiny_routes_smoke"
SMOKE = False  # True: a seconds-sized run; each parameter left at its default takes its smoke value
SEEDS = [0, 1, 2, 3, 4]  # smoke: [0]
EVAL_K = 16  # smoke: 4
FIGURES_DIR = "figures"

# %%
import matplotlib.pyplot as plt
import seaborn as sns

from scope_lib.notebook import nb, report
from scope_lib.experiments.grid import run_grid
from scope_lib.common.plotting import band, display_name, k_axis, legend_outside, method_color, same_jitter

ctx = nb.setup("01_fig1a_passk_paradox", globals())
df, results = run_grid(SCALE, ["opd"], SEEDS, **{"eval.k": EVAL_K})
# the base student's evaluation does not depend on the training seed: one entry serves every seed
curves = {"base": report.pass_curves(results, "base"), "opd": report.pass_curves(results, "opd")}

# %% [markdown]
# ## Generates and saves Figure 1a
# Left: Pass@k, mean over seeds; OPD's band is the 95% t interval over seeds, the base student's
# (evaluated once) a bootstrap over its eval problems. Right: OPD − base at each k: one dot per
# seed, and the interval of the verdict lines below (a bootstrap over seeds and problems jointly).

# %%
fig, (ax, ax_gain) = plt.subplots(1, 2, figsize=(10, 4))
for name, curve in curves.items():
    ax.plot(curve.k, 100 * curve["pass@k"], marker="o", markersize=3, color=method_color(name), label=display_name(name))
    band(ax, curve.k, 100 * curve.low, 100 * curve.high, clip=(0, 100), color=method_color(name))
shown = k_axis(ax, curves["opd"].k)
ax.set(xlabel="k (samples per problem)", ylabel="Pass@k (%)", title="Pass@k, mean over eval sets")
ax.set_ylim(max(ax.get_ylim()[0], 0), min(ax.get_ylim()[1], 100))  # a rate stays in [0, 100]
gains, per_seed = report.base_gains(results, "opd", SEEDS, shown)
with same_jitter():  # the same dots on every redraw
    sns.stripplot(per_seed.assign(points=100 * per_seed.gain), x="k", y="points", ax=ax_gain, color=method_color("opd"),
                  alpha=0.5, jitter=0.1)
ax_gain.errorbar(range(len(gains)), 100 * gains["mean"], yerr=[100 * (gains["mean"] - gains.low), 100 * (gains.high - gains["mean"])],
                 fmt="D", color="black", capsize=4)
ax_gain.axhline(0, color="black", lw=0.8)
ax_gain.set(xlabel="k", ylabel="OPD − base (points)", title="Gain of OPD over the base student")
fig.suptitle(f"Fig. 1a, the Pass@k paradox ({ctx.scale_label}, {len(SEEDS)} seed(s))")
handles, labels = ax.get_legend_handles_labels()
handles += [plt.Line2D([], [], color=method_color("opd"), alpha=0.5, marker="o", linestyle="none"),
            plt.Line2D([], [], color="black", marker="D", linestyle="none")]
legend_outside(fig, handles, labels + ["OPD − base, one seed", "mean, 95% interval"])
ctx.savefig(fig, "fig1a_passk_paradox", caption=f"Left: mean over {len(SEEDS)} seed(s); OPD band: 95% t interval over "
            "seeds; base band: 95% bootstrap over eval problems. Right: dots are seeds, diamonds and bars the mean "
            "and the 95% seed x problem bootstrap interval of the verdict lines.")
table = curves["base"][["k"]].assign(base=curves["base"]["pass@k"], opd=curves["opd"]["pass@k"])
ctx.save_table(table.assign(gain=table.opd - table.base), "fig1a_passk_paradox");

# %%
gain_1, gain_k = 100 * float(table.opd.iloc[0] - table.base.iloc[0]), 100 * float(table.opd.iloc[-1] - table.base.iloc[-1])
ctx.show_claims("fig1a_passk_paradox", [
    f"Scale `{ctx.scale_label}`, {len(SEEDS)} seed(s), k up to {EVAL_K}: OPD changes Pass@1 by "
    f"{gain_1:+.1f} points and Pass@{EVAL_K} by {gain_k:+.1f} points relative to the base student (means over seeds "
    f"and eval sets). The paradox needs both lines below reproduced.",
    report.compare_to_base("OPD − base student Pass@1", results, "opd", SEEDS, "greater",
                           "rises (Fig. 1a is AIME24: Avg@32 29.4 → 40.2 in Table 1, +10.8 points)", k=1),
    report.compare_to_base(f"OPD − base student Pass@{EVAL_K} (the largest k)", results, "opd", SEEDS, "less",
                           "-1.5 points (AIME24 Pass@32 76.5 → 75.0, Fig. 1a)", k=EVAL_K),
]);
