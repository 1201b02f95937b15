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
# # 07 · Fig. 5: DPAW ablations
#
# Full SCOPE against every DPAW ablation in `scope_lib.experiments.grid.ABLATIONS`. Each changes one
# weighting choice and keeps the reward routing (correct rollouts to MLE, incorrect ones to
# distillation). "Switched off" means weight 1 for every rollout of that path, the paper's
# "standard uniform weighting" as the authors' released code implements it:
#
# - w/o DPAW (`no_dpaw`): both paths weight 1 per rollout (the paper's ablation of that name);
# - w/o DPAW (1/n weights) (`no_dpaw_normalized`): both paths 1/n per rollout, so each path of
#   each prompt sums to 1 as under DPAW; not in the paper: it keeps DPAW's group normalisation
#   and drops only the perplexity weights, so the normalisation's share of the effect is
#   measured on its own;
# - w/o student weight (`no_student_weight`): correct path weight 1 per rollout, teacher
#   weights (Eq. 5) kept;
# - reversed student weight (`reversed_student_weight`): correct path weighted by
#   `PPL_S^(-1/tau)` instead of Eq. 4's `PPL_S^(+1/tau)` (the sign of the authors' released
#   scripts);
# - w/o teacher weight (`no_teacher_weight`): incorrect path weight 1 per rollout, student
#   weights (Eq. 4) kept;
# - reversed teacher weight (`reversed_teacher_weight`): incorrect path weighted by
#   `PPL_T^(+1/tau)` instead of Eq. 5's `PPL_T^(-1/tau)`.
#
# Each claim is judged by the rule at the top of the results page: SCOPE − ablation per seed
# (paired by seed), in points of Avg@k and of Pass@k at the largest k, both averaged over the
# eval sets, with the 95% t interval over seeds.

# %% [markdown]
# The committed results, shown before anything runs

# %%
from scope_lib.notebook import nb

nb.show_committed("07_fig5_dpaw_ablations")

# %% tags=["parameters"]
SCALE = "tiny"  # smoke: "tiny_routes_smoke"
SMOKE = False  # True: a seconds-sized run; each parameter left at its default takes its smoke value
SEEDS = [0, 1, 2, 3, 4]  # smoke: [0]
EVAL_K = 16  # smoke: 4
FIGURES_DIR = "figures"

# %%
import matplotlib.pyplot as plt

from scope_lib.notebook import nb, report
from scope_lib.experiments.grid import ABLATIONS, run_grid
from scope_lib.common.plotting import display_name, method_color, metric_label, point_interval, variant_ticks

ctx = nb.setup("07_fig5_dpaw_ablations", globals())
variants = ["scope", *ABLATIONS]
df, results = run_grid(SCALE, variants, SEEDS, include_base=False, **{"eval.k": EVAL_K})
summary = report.seed_summary(df)
ctx.save_table(summary, "fig5_dpaw_ablations");

# %% [markdown]
# ## Generates and saves Figure 5
# Dots: each seed's value. Diamonds and bars: the mean over seeds with its 95% t interval (the
# interval the verdicts use), drawn by seaborn from the per-seed values. Dotted: SCOPE's mean.

# %%
seed_rows = df[df.eval_set == "average"]
fig, axes = plt.subplots(1, 2, figsize=(13, 4.4), layout="constrained")
for ax, metric in zip(axes, ["avg@k", "pass@k"]):
    point_interval(ax, seed_rows, x="variant", y=metric, hue="variant", order=variants, scale=100, clip=(0, 100))
    ax.axhline(100 * seed_rows.loc[seed_rows.variant == "scope", metric].mean(), color=method_color("scope"), ls=":", lw=1)
    variant_ticks(ax, variants)
    name = metric_label(metric, EVAL_K)
    ax.set(xlabel="", ylabel=f"{name} (%)", title=f"{name}, mean over the eval sets")
fig.suptitle(f"Fig. 5: DPAW ablations ({ctx.scale_label}, {len(SEEDS)} seed(s))")
ctx.savefig(fig, "fig5_dpaw_ablations", caption=f"Avg@{EVAL_K} and Pass@{EVAL_K}, mean over the eval sets, per DPAW "
            "ablation: dots are single seeds, diamonds and bars the mean over seeds and its 95% t interval; dotted: "
            "SCOPE's mean.");

# %% [markdown]
# ## Verdicts (saved for the results page)
# The paper's effects (Sec. 4.3, AIME24/25 at k = 32), written as SCOPE − ablation like ours;
# where the text gives no number it says what the paper states.

# %%
NO_NUMBER = "lower (Fig. 5; no number in the text)"
PAPER = {  # ablation: (Avg@k effect, Pass@k effect)
    "no_dpaw": (NO_NUMBER, "+5.2 points (AIME25 Pass@32: SCOPE 50.9, w/o DPAW 45.7)"),
    "no_dpaw_normalized": ("not in the paper (the project's variant)",) * 2,
    "no_student_weight": (NO_NUMBER, "+3.8 points (AIME24 Pass@32: SCOPE 77.9, w/o student weight 74.1)"),
    "reversed_student_weight": ("reversing it 'also hurts' (Fig. 5; no number in the text)",) * 2,
    "no_teacher_weight": ("removing it 'compromises overall accuracy' (Fig. 5; no number in the text)",) * 2,
    "reversed_teacher_weight": ("+4.1 points (AIME24 Avg@32: SCOPE 42.7, reversed teacher weight 38.6)", NO_NUMBER),
}
missing = set(ABLATIONS) - set(PAPER)
assert not missing, f"experiments.ABLATIONS has ablations this notebook does not describe: {sorted(missing)}"
per_seed = {(v, m): report.per_seed(df, v, m) for v in variants for m in ("avg@k", "pass@k")}
names = {"avg@k": f"Avg@{EVAL_K}", "pass@k": f"Pass@{EVAL_K}"}
lines = [f"Scale `{ctx.scale_label}`, {len(SEEDS)} seed(s), k = {EVAL_K}; summary quantity: each "
         "seed's Avg@k and Pass@k at the largest k, mean over the eval sets."]
for ablation in ABLATIONS:
    for metric, paper in zip(("avg@k", "pass@k"), PAPER[ablation]):
        lines.append(report.compare(f"SCOPE − {display_name(ablation)} {names[metric]}", per_seed["scope", metric],
                                    per_seed[ablation, metric], "greater", paper))
if {"no_dpaw", "no_dpaw_normalized"} <= set(ABLATIONS):  # the group normalisation on its own
    for metric in ("avg@k", "pass@k"):
        lines.append(report.compare(f"{display_name('no_dpaw_normalized')} − {display_name('no_dpaw')} {names[metric]} "
                                    "(group normalisation alone)",
                                    per_seed["no_dpaw_normalized", metric], per_seed["no_dpaw", metric], "greater",
                                    "not measured; App. A.3 argues the group normalisation stabilises the updates"))
ctx.show_claims("fig5_dpaw_ablations", lines);
