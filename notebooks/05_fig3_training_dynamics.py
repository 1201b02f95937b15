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
# # 05 · Fig. 3: training dynamics
#
# Policy entropy and rollout accuracy per training step for GRPO, OPD and SCOPE (mean over
# seeds, 95% band), read from the runs' `metrics.jsonl` logs: the same runs as notebook 04,
# redrawn without retraining. The paper's claim: GRPO's entropy decays steadily while OPD and
# SCOPE keep it up, and SCOPE's accuracy is higher throughout training.
#
# Each claim is judged by the rule at the top of the results page on one summary quantity per
# seed, paired by seed: for entropy, its change over training (mean over the last fifth of the
# logged steps minus the mean over the first fifth); for accuracy, the mean rollout accuracy
# over all steps (the area under the curve divided by the steps).

# %% tags=["parameters"]
SCALE = "tiny"
SMOKE = False
SEEDS = [0, 1, 2, 3, 4]
METHODS = ["grpo", "opd", "scope"]
SMOOTH = 5
FIGURES_DIR = "figures"

# %%
import matplotlib.pyplot as plt
import pandas as pd

from scope_lib import report
from scope_lib.experiments import run_histories
from scope_lib.plotting import METHOD_COLORS, save_table, savefig, use_style

use_style()
seeds = SEEDS[:1] if SMOKE else SEEDS
smooth = 1 if SMOKE else SMOOTH
histories = run_histories(SCALE, METHODS, seeds, smoke=SMOKE)

# %% [markdown]
# ## Generates and saves Figure 3

# %%
panels = [("entropy", "token entropy (nats)"), ("accuracy", "rollout accuracy"), ("response_length", "response length (tokens)")]
fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.5))
tables = []
for ax, (metric, label) in zip(axes, panels):
    curves = report.step_curves(histories, metric)
    tables.append(curves.rename(columns={metric: "value"}).assign(metric=metric))
    for variant in METHODS:
        part = curves[curves.variant == variant]
        y = part[metric].rolling(smooth, min_periods=1).mean()
        ax.plot(part.step, y, color=METHOD_COLORS[variant], label=variant)
        if part["low"].notna().all():
            ax.fill_between(part.step, part["low"].rolling(smooth, min_periods=1).mean(),
                            part["high"].rolling(smooth, min_periods=1).mean(), color=METHOD_COLORS[variant], alpha=0.15)
    ax.set(xlabel="step", ylabel=label)
axes[0].legend()
fig.suptitle(f"Training dynamics ({SCALE}, {len(seeds)} seed(s), moving average over {smooth} steps)")
fig.tight_layout()
savefig(fig, "fig3_training_dynamics", figures_dir=FIGURES_DIR)
save_table(pd.concat(tables, ignore_index=True), "fig3_training_dynamics", figures_dir=FIGURES_DIR)

# %%
entropy_change = {v: report.history_change(histories, v, "entropy") for v in METHODS}
mean_accuracy = {v: report.history_mean(histories, v, "accuracy") for v in METHODS}
mean_over_seeds = {name: {v: sum(d.values()) / len(d) for v, d in values.items()}
                   for name, values in (("entropy", entropy_change), ("accuracy", mean_accuracy))}
lines = [f"Scale `{SCALE}`{' (smoke)' if SMOKE else ''}, {len(seeds)} seed(s): entropy change from the first to the "
         "last fifth of training " + ", ".join(f"{v} {e:+.3f}" for v, e in mean_over_seeds["entropy"].items())
         + " nats; mean rollout accuracy over training " + ", ".join(f"{v} {100 * a:.1f}%" for v, a in mean_over_seeds["accuracy"].items())
         + " (means over seeds)."]
for other in [v for v in METHODS if v != "grpo"]:
    lines.append(report.compare(f"GRPO − {other.upper()} entropy change (last fifth − first fifth of steps)",
                                entropy_change["grpo"], entropy_change[other], "less",
                                "GRPO's entropy decays, OPD's and SCOPE's stay up (Fig. 3a; no number in the text)",
                                scale=1.0, unit=" nats", digits=3))
for other in [v for v in METHODS if v != "scope"]:
    lines.append(report.compare(f"SCOPE − {other.upper()} rollout accuracy, mean over all steps",
                                mean_accuracy["scope"], mean_accuracy[other], "greater",
                                "SCOPE above GRPO and OPD throughout training (Fig. 3b-c; no number in the text)"))
report.show_claims("fig3_training_dynamics", lines, figures_dir=FIGURES_DIR)
