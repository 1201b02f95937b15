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
# # 10 · DPAW weights, step by step
#
# The trainer records, for every step, each rollout's group and reward, pi_old's and the
# teacher's length-normalised log-perplexity, and the Eq. 4 (correct path) and Eq. 5
# (incorrect path) weights the loss used (`scope_lib/weight_records.py`). This notebook reads
# the records of one run that notebook 04 trains (the same run registry; trained now if it is
# missing) and steps through training:
#
# - the distribution of each path's weights, shown as `w · n / sum w` (1 = uniform in a
#   group's path of `n` rollouts, whatever the normalisation);
# - the groups whose weights are most concentrated (lowest ESS fraction), with their texts;
# - the ESS fraction `(sum w)^2 / (n sum w^2)` over training, mean over groups with ≥ 2
#   rollouts on the path.
#
# With `INTERACTIVE = True` in a live notebook a slider picks the step; executed headlessly
# (papermill) it draws a static panel of `STEPS`. The lines at the end are **checks** of the
# implementation, not claims of the paper.

# %% tags=["parameters"]
SCALE = "tiny"
SMOKE = False
METHOD = "scope"  # scope, a DPAW ablation (no_dpaw, ...) or scope_tau<value>: the variants with weights
SEED = 0
STEPS = None  # steps of the static panel, e.g. [1, 20, 40]; None: first, middle and last
INTERACTIVE = False  # True: an ipywidgets slider over steps (needs a live Jupyter frontend)
TOP_GROUPS = 3  # most concentrated groups shown per step
FIGURES_DIR = "figures"

# %%
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display

from scope_lib import nb, report
from scope_lib import weight_records as wr
from scope_lib.experiments import experiment_config
from scope_lib.runs import get_run

ctx = nb.setup("10_dpaw_weights_by_step", globals())
run = get_run(experiment_config(SCALE, METHOD, SEED, smoke=SMOKE))
records = wr.read_weight_records(run.path)
long = wr.path_rows(records)
if long.empty:
    raise ValueError(f"METHOD {METHOD!r} records no DPAW weights: choose scope, a DPAW ablation or scope_tau<value>")
ess = wr.ess_by_step(records)
all_steps = sorted(records["step"].unique().tolist())
steps = wr.pick_steps(all_steps, STEPS)
PATH_COLORS = {"student": "#d62728", "teacher": "#1f77b4"}
display(Markdown(f"**{run.path.name}**: {len(all_steps)} steps, {len(records)} rollouts, "
                 f"{records['correct'].mean():.1%} correct; static panel at steps {steps}."))


# %% [markdown]
# ## One step: weights per path, and the ESS over training

# %%
def draw_step(step: int, axes) -> None:
    """Histogram and ECDF of `w · n / sum w` per path at `step`; the ESS fraction over steps."""
    part = long[(long["step"] == step) & (long["n"] >= 2)]  # a lone member always weighs 1
    if part.empty:
        axes[0].text(0.5, 0.5, "no group has ≥ 2 rollouts on a path", ha="center", transform=axes[0].transAxes)
    else:
        sns.histplot(part, x="rel_weight", hue="path", palette=PATH_COLORS, element="step", stat="density",
                     common_norm=False, ax=axes[0])
        sns.ecdfplot(part, x="rel_weight", hue="path", palette=PATH_COLORS, ax=axes[1])
    for ax in axes[:2]:
        ax.axvline(1.0, color="grey", linestyle=":", linewidth=1)
        ax.set(xlabel="weight × n / path sum (1 = uniform)", title=f"step {step}")
    sns.lineplot(ess, x="step", y="ess_frac", hue="path", palette=PATH_COLORS, marker="o", ax=axes[2])
    axes[2].axvline(step, color="black", linestyle="--", linewidth=1)
    axes[2].set(ylabel="ESS fraction (1 = uniform)", title="ESS over training", ylim=(0, 1.02))
    axes[2].xaxis.set_major_locator(MaxNLocator(integer=True))


def show_top_groups(step: int) -> pd.DataFrame:
    """The TOP_GROUPS most concentrated (group, path) pairs of `step`, rollout by rollout, with texts."""
    top = wr.top_group_rollouts(run.path, records, step, TOP_GROUPS)
    view = top[["group", "path", "ess_frac", "rel_weight", "log_ppl", "question", "text"]].copy()
    view["text"] = view["text"].str.replace("\n", " / ", regex=False)
    display(Markdown(f"**Step {step}: the {TOP_GROUPS} most concentrated groups** (lowest ESS fraction)"),
            view.round(3))
    return top.assign(step=step)


# %% [markdown]
# ## Step through training (generates and saves `nb10_weights_by_step`)

# %%
if INTERACTIVE:
    import ipywidgets as widgets

    def show(step: int) -> None:
        fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
        draw_step(step, axes)
        fig.tight_layout()
        plt.show()
        show_top_groups(step)

    slider = widgets.SelectionSlider(options=all_steps, value=all_steps[0], description="step")
    display(widgets.interactive(show, step=slider))
fig, axes = plt.subplots(len(steps), 3, figsize=(14, 3.4 * len(steps)), squeeze=False)
for row, step in zip(axes, steps):
    draw_step(step, row)
fig.suptitle(f"DPAW weights by step ({ctx.scale_label}, {METHOD}, seed {SEED})")
fig.tight_layout()
ctx.savefig(fig, "nb10_weights_by_step", caption="Per chosen step: histogram and ECDF of each path's weights "
            "relative to uniform (groups with ≥ 2 rollouts on the path), and the mean ESS fraction over training.")
plt.show()
tops = pd.concat([show_top_groups(step) for step in steps], ignore_index=True)
ctx.save_table(tops[["step", "group", "path", "ess_frac", "rollout_id", "weight", "rel_weight", "log_ppl", "question",
                     "text"]], "nb10_weights_by_step")

# %% [markdown]
# ## Checks (saved for the results page)

# %%
s = run.cfg.scope
sum_error = wr.path_sum_error(records, normalize=s.normalize, student_direction=s.student_direction,
                              teacher_direction=s.teacher_direction)
again = wr.eq45_weights(records, tau=s.tau, student_direction=s.student_direction,
                        teacher_direction=s.teacher_direction, normalize=s.normalize)
eq45_error = float((again - records[["student_weight", "teacher_weight"]]).abs().max().max())
size = wr.record_bytes(run.path)
checkpoint = wr.checkpoint_bytes(run.path)
reference, what = (checkpoint, "one checkpoint") if checkpoint else (
    (run.path / "final" / "model.safetensors").stat().st_size, "the final model's weights (no checkpoint kept)")
ess_at = ess.set_index(["step", "path"])["ess_frac"]
trend = "; ".join(f"{path} path " + " → ".join(f"{ess_at[(t, path)]:.3f} at step {t}" if (t, path) in ess_at.index
                                              else f"none at step {t}" for t in (all_steps[0], all_steps[-1]))
                  for path in wr.PATHS)
ctx.show_claims("nb10_weights_by_step", [
    f"Scale `{ctx.scale_label}`, {METHOD}, seed {SEED}: {len(all_steps)} recorded steps. Mean ESS fraction over groups "
    f"with ≥ 2 rollouts on the path: {trend}.",
    report.check("the recorded weights of every group and path sum as Eq. 4-5 prescribe "
                 f"(normalize {s.normalize!r}, directions {s.student_direction!r} / {s.teacher_direction!r})",
                 sum_error < 1e-4, f"largest deviation {sum_error:.2e}"),
    report.check("the recorded weights are Eq. 4-5 of the recorded log-PPLs (recomputed by scope_lib.weights)",
                 eq45_error < 1e-4, f"largest difference {eq45_error:.2e}"),
    report.check("the records take under 5% of a checkpoint per step", size["total_bytes_per_step"] < 0.05 * reference,
                 f"{size['weights_bytes_per_step'] / 1024:.1f} KiB of weights + texts "
                 f"{size['texts_bytes'] / size['steps'] / 1024:.1f} KiB per step, in all "
                 f"{(size['weights_bytes'] + size['texts_bytes']) / 1024:.0f} KiB, against {reference / 1024:.0f} KiB "
                 f"for {what} ({100 * size['total_bytes_per_step'] / reference:.2f}% per step, "
                 f"{100 * (size['weights_bytes'] + size['texts_bytes']) / reference:.1f}% in all)"),
])
