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
# SCOPE keep it up, and SCOPE's accuracy rises fastest.

# %% tags=["parameters"]
SCALE = "tiny"
SMOKE = False
SEEDS = [0, 1, 2]
METHODS = ["grpo", "opd", "scope"]
SMOOTH = 5
FIGURES_DIR = "figures"

# %%
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

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
ent = report.step_curves(histories, "entropy")
acc = report.step_curves(histories, "accuracy")
window = max(1, len(ent[ent.variant == METHODS[0]]) // 5)  # first and last fifth of training


def change(frame, metric, variant):
    part = frame[frame.variant == variant][metric]
    return float(part.tail(window).mean() - part.head(window).mean())


d_ent = {v: change(ent, "entropy", v) for v in METHODS}
d_acc = {v: change(acc, "accuracy", v) for v in METHODS}
report.show_claims("fig3_training_dynamics", [
    f"Scale `{SCALE}`{' (smoke)' if SMOKE else ''}: change from the first to the last fifth of training — entropy "
    + ", ".join(f"{v} {d_ent[v]:+.3f}" for v in METHODS) + "; rollout accuracy "
    + ", ".join(f"{v} {100 * d_acc[v]:+.1f} pts" for v in METHODS) + ".",
    report.claim("GRPO's entropy falls more than OPD's and SCOPE's", bool(d_ent["grpo"] < min(d_ent["opd"], d_ent["scope"])),
                 ", ".join(f"{v} {d_ent[v]:+.3f}" for v in METHODS)),
    report.claim("SCOPE's rollout accuracy rises the most", bool(d_acc["scope"] >= max(d_acc.values())),
                 ", ".join(f"{v} {100 * d_acc[v]:+.1f}" for v in METHODS)),
], figures_dir=FIGURES_DIR)
