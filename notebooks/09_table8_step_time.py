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
# # 09 · Table 8: per-step wall-clock time by component
#
# Seconds per training step spent in each component, with the paper's Table 8 names:
# `generation`, `old_logprob`, `reward`, `actor_update`, `teacher_scoring` and the whole
# `step`, from the trainer's own timers in the runs of notebook 04 (mean over steps and
# seeds). SCOPE scores only the incorrect rollouts with the teacher; OPD scores all of them.
# With `optim.old_logp_pass: when_needed` (the `tiny` preset: one update per rollout batch)
# the trainer takes pi_old from the update's own forward pass, so `old_logprob` reads 0;
# the paper's verl runs it as a separate pass (`always`).

# %% tags=["parameters"]
SCALE = "tiny"
SMOKE = False
SEEDS = [0, 1, 2]
METHODS = ["grpo", "opd", "scope"]
FIGURES_DIR = "figures"

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from scope_lib import report
from scope_lib.experiments import experiment_config, run_histories
from scope_lib.plotting import METHOD_COLORS, save_table, savefig, use_style
from scope_lib.trainer import TIMERS

use_style()
seeds = SEEDS[:1] if SMOKE else SEEDS
histories = run_histories(SCALE, METHODS, seeds, smoke=SMOKE)
rows = []
for (variant, seed), history in histories.items():
    for record in history:
        rows.append({"variant": variant, "seed": seed, "rollouts": record.get("n_correct", 0) + record.get("n_incorrect", 0),
                     **{name: record[f"time/{name}"] for name in TIMERS}})
steps = pd.DataFrame(rows)

# %% [markdown]
# ## Generates and saves Table 8

# %%
table = steps.groupby("variant")[list(TIMERS) + ["rollouts"]].mean().loc[METHODS]
table["other"] = table["step"] - table[[t for t in TIMERS if t != "step"]].sum(axis=1)
save_table(table.round(4), "table8_step_time", figures_dir=FIGURES_DIR)
display(Markdown(f"Seconds per step ({SCALE}{', smoke' if SMOKE else ''}, {len(seeds)} seed(s), {len(steps)} steps in all)\n\n"
                 + table.to_markdown(floatfmt=".3f")))

fig, ax = plt.subplots(figsize=(7, 3.5))
left = np.zeros(len(METHODS))
components = [t for t in TIMERS if t != "step"] + ["other"]
colors = plt.get_cmap("tab10")(np.arange(len(components)))
for component, color in zip(components, colors):
    ax.barh(METHODS, table[component], left=left, color=color, label=component)
    left += table[component].to_numpy()
ax.set(xlabel="seconds per step", title=f"Per-step time by component ({SCALE})")
ax.legend(fontsize=8, loc="lower right")
fig.tight_layout()
savefig(fig, "table8_step_time", figures_dir=FIGURES_DIR)

# %%
share = table["teacher_scoring"] / table["step"]
old_pass = experiment_config(SCALE, "scope", seeds[0], smoke=SMOKE).optim.old_logp_pass
report.show_claims("table8_step_time", [
    "Share of the step spent scoring with the teacher: " + ", ".join(f"{m} {100 * share[m]:.1f}%" for m in METHODS) + ".",
    f"- SCOPE's teacher scoring takes {table.loc['scope', 'teacher_scoring']:.3f} s per step against OPD's "
    f"{table.loc['opd', 'teacher_scoring']:.3f} s; SCOPE scores only incorrect rollouts, OPD every rollout "
    f"({table.loc['scope', 'rollouts']:.0f} vs {table.loc['opd', 'rollouts']:.0f} rollouts per step).",
    f"- `optim.old_logp_pass` is `{old_pass}`: "
    + ("pi_old comes from the update's forward pass, so `old_logprob` is 0 here (verl runs it as its own pass)."
       if old_pass == "when_needed" else "pi_old is recomputed in its own pass before each update, as in verl."),
], figures_dir=FIGURES_DIR)
