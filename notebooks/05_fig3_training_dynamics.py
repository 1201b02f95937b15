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

# %% [markdown]
# The committed results, shown before anything runs

# %%
from scope_lib.notebook import nb

nb.show_committed("05_fig3_training_dynamics")

# %% tags=["parameters"]
SCALE = "tiny"  # smoke: "tiny_routes_smoke"
SMOKE = False  # True: a seconds-sized run; each parameter left at its default takes its smoke value
SEEDS = [0, 1, 2, 3, 4]  # smoke: [0]
METHODS = ["grpo", "opd", "hybrid", "scope"]
SMOOTH = 5  # smoke: 1
FIGURES_DIR = "figures"

# %%
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import MaxNLocator

from scope_lib.notebook import nb, report
from scope_lib.experiments.grid import run_histories
from scope_lib.common.plotting import band, display_name, legend_outside, method_color

ctx = nb.setup("05_fig3_training_dynamics", globals())
histories = run_histories(SCALE, METHODS, SEEDS)

# %% [markdown]
# ## Generates and saves Figure 3
# Each seed's curve is smoothed by a trailing moving average over `SMOOTH` steps; the line is the
# mean over seeds and the band its 95% t interval over seeds (the interval the verdict rule uses),
# clipped to the metric's range.

# %%
inf = float("inf")
# (metric, axis label, factor to the axis unit, the metric's upper limit in that unit); all start at 0
panels = [("entropy", "token entropy (nats)", 1, inf), ("accuracy", "rollout accuracy (%)", 100, 100.0),
          ("response_length", "response length (tokens)", 1, inf)]
fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.5))
curves = {metric: report.step_curves(histories, metric, smooth=SMOOTH) for metric, *_ in panels}
for ax, (metric, label, factor, highest) in zip(axes, panels):
    for variant in METHODS:
        part = curves[metric][curves[metric].variant == variant]
        ax.plot(part.step, factor * part[metric], color=method_color(variant), label=display_name(variant))
        band(ax, part.step, factor * part["low"], factor * part["high"], clip=(0.0, highest), color=method_color(variant))
    ax.set(xlabel="training step", ylabel=label)
    ax.set_ylim(0, 102 if highest == 100.0 else None)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
fig.suptitle(f"Fig. 3: training dynamics ({ctx.scale_label}, {len(SEEDS)} seed(s), moving average over {SMOOTH} step(s))")
legend_outside(fig, title="mean over seeds;\nband: 95% t interval", alignment="left")
ctx.savefig(fig, "fig3_training_dynamics", caption=f"Mean over {len(SEEDS)} seed(s) of each seed's {SMOOTH}-step "
            "moving average; band: 95% t interval over seeds (as the verdict lines), clipped to the metric's range.")
ctx.save_table(pd.concat([c.rename(columns={m: "value"}).assign(metric=m) for m, c in curves.items()], ignore_index=True),
               "fig3_training_dynamics");

# %%
entropy_change = {v: report.history_change(histories, v, "entropy") for v in METHODS}
mean_accuracy = {v: report.history_mean(histories, v, "accuracy") for v in METHODS}
mean_over_seeds = {name: {v: sum(d.values()) / len(d) for v, d in values.items()}
                   for name, values in (("entropy", entropy_change), ("accuracy", mean_accuracy))}
lines = [f"Scale `{ctx.scale_label}`, {len(SEEDS)} seed(s): entropy change from the first to the "
         "last fifth of training " + ", ".join(f"{display_name(v)} {e:+.3f}" for v, e in mean_over_seeds["entropy"].items())
         + " nats; mean rollout accuracy over training " + ", ".join(f"{display_name(v)} {100 * a:.1f}%" for v, a in mean_over_seeds["accuracy"].items())
         + " (means over seeds)."]
for other in [v for v in METHODS if v != "grpo"]:
    lines.append(report.compare(f"GRPO − {display_name(other)} entropy change (last fifth − first fifth of steps)",
                                entropy_change["grpo"], entropy_change[other], "less",
                                "GRPO's entropy decays, OPD's and SCOPE's stay up (Fig. 3a; no number in the text)",
                                scale=1.0, unit=" nats", digits=3))
for other in [v for v in METHODS if v != "scope"]:
    lines.append(report.compare(f"SCOPE − {display_name(other)} rollout accuracy, mean over all steps",
                                mean_accuracy["scope"], mean_accuracy[other], "greater",
                                "SCOPE above GRPO and OPD throughout training (Fig. 3b-c; no number in the text)"))
ctx.show_claims("fig3_training_dynamics", lines);
