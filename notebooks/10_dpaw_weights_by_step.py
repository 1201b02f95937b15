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

# %% [markdown]
# The committed results, shown before anything runs

# %%
from scope_lib.notebook import nb

nb.show_committed("10_dpaw_weights_by_step")

# %% tags=["parameters"]
SCALE = "tiny"  # smoke: "tiny_routes_smoke"
SMOKE = False  # True: a seconds-sized run; each parameter left at its default takes its smoke value
METHOD = "scope"  # scope, a DPAW ablation (no_dpaw, ...) or scope_tau<value>: the variants with weights
SEED = 0
STEPS = None  # steps of the static panel, e.g. [1, 20, 40]; None: first, middle and last
INTERACTIVE = False  # True: an ipywidgets slider over steps (needs a live Jupyter frontend)
TOP_GROUPS = 3  # most concentrated groups shown per step
FIGURES_DIR = "figures"

# %%
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display

from scope_lib.notebook import nb, report
from scope_lib import weight_records as wr
from scope_lib.experiments.grid import experiment_config
from scope_lib.common.plotting import display_name
from scope_lib.experiments.registry import get_run

ctx = nb.setup("10_dpaw_weights_by_step", globals())
run = get_run(experiment_config(SCALE, METHOD, SEED))
records = wr.read_weight_records(run.path)
long = wr.path_rows(records)
if long.empty:
    raise ValueError(f"METHOD {METHOD!r} records no DPAW weights: choose scope, a DPAW ablation or scope_tau<value>")
# The two paths by what they hold: Eq. 4 weights the correct rollouts, Eq. 5 the incorrect ones
PATH_LABELS = {"student": "correct rollouts (Eq. 4, student weights)", "teacher": "incorrect rollouts (Eq. 5, teacher weights)"}
PATH_COLORS = {PATH_LABELS["student"]: "#d62728", PATH_LABELS["teacher"]: "#1f77b4"}
long = long.assign(rollouts=long["path"].map(PATH_LABELS))
ess = wr.ess_by_step(records).assign(rollouts=lambda d: d["path"].map(PATH_LABELS))
all_steps = sorted(records["step"].unique().tolist())
steps = wr.pick_steps(all_steps, STEPS)
display(Markdown(f"**{run.path.name}**: {len(all_steps)} steps, {len(records)} rollouts, "
                 f"{records['correct'].mean():.1%} correct; static panel at steps {steps}."))


# %% [markdown]
# ## Chosen steps: weights per path, and the ESS over training
# One row per step: the histogram and the ECDF of `w · n / sum w` per path, with one x range and
# one set of bins for every step of the run, so the rows compare. Beside them, once, the mean ESS fraction per
# step, on an axis fitted to its values, with the chosen steps marked.

# %%
def draw_steps(chosen: list[int]):
    """The figure of the steps in `chosen` (see the cell above); returns it."""
    weighed = long[long["n"] >= 2]  # a lone member always weighs 1
    shown = weighed[weighed["step"].isin(chosen)]
    # one x range for every step of the run, so the rows (and the slider's steps) compare
    low, high = (min(weighed["rel_weight"].min(), 0.95), max(weighed["rel_weight"].max(), 1.05)) if len(weighed) else (0.5, 1.5)
    bins = np.linspace(low, high, 31)
    fig = plt.figure(figsize=(14, 2.9 * len(chosen) + 1.2), layout="constrained")
    grid = fig.add_gridspec(len(chosen), 3)
    first = {}
    for i, step in enumerate(chosen):
        hist_ax = fig.add_subplot(grid[i, 0], sharex=first.get("hist"), sharey=first.get("hist"))
        ecdf_ax = fig.add_subplot(grid[i, 1], sharex=first.get("hist"))
        first.setdefault("hist", hist_ax)
        part = shown[shown["step"] == step]
        if part.empty:
            hist_ax.text(0.5, 0.5, "no group has ≥ 2 rollouts on a path", ha="center", transform=hist_ax.transAxes)
        else:
            common = dict(x="rel_weight", hue="rollouts", hue_order=list(PATH_COLORS), palette=PATH_COLORS, legend=False)
            sns.histplot(part, **common, bins=bins, element="step", stat="density", common_norm=False, ax=hist_ax)
            sns.ecdfplot(part, **common, ax=ecdf_ax)
        last = i == len(chosen) - 1
        for ax, ylabel in ((hist_ax, "density"), (ecdf_ax, "share of rollouts (ECDF)")):
            ax.axvline(1.0, color="grey", linestyle=":", linewidth=1)
            ax.set(xlim=(low, high), title=f"step {step}", ylabel=ylabel,
                   xlabel="weight × n / path sum (1 = uniform)" if last else "")
    ess_ax = fig.add_subplot(grid[:, 2])
    sns.lineplot(ess, x="step", y="ess_frac", hue="rollouts", hue_order=list(PATH_COLORS), palette=PATH_COLORS,
                 marker="o", markersize=4, legend=False, ax=ess_ax)
    for step in chosen:
        ess_ax.axvline(step, color="black", linestyle="--", linewidth=1)
    lowest = float(ess["ess_frac"].min()) if ess["ess_frac"].notna().any() else 0.0
    margin = max(0.1 * (1 - lowest), 0.002)
    ess_ax.set(ylim=(lowest - margin, 1 + margin), xlabel="training step", ylabel="ESS fraction (1 = uniform)",
               title="mean ESS fraction over training")
    ess_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles = [plt.Line2D([], [], color=color, lw=2) for color in PATH_COLORS.values()]
    fig.legend(handles + [plt.Line2D([], [], color="black", ls="--", lw=1)], list(PATH_COLORS) + ["step shown"],
               loc="outside lower center", ncols=3, frameon=False)
    fig.suptitle(f"DPAW weights by step ({ctx.scale_label}, {display_name(METHOD)}, seed {SEED})")
    return fig


def show_top_groups(step: int) -> pd.DataFrame:
    """The TOP_GROUPS most concentrated (group, path) pairs of `step`, rollout by rollout, with texts."""
    top = wr.top_group_rollouts(run.path, records, step, TOP_GROUPS)
    view = top[["group", "path", "ess_frac", "rel_weight", "log_ppl", "question", "text"]].copy()
    view["path"] = view["path"].map(PATH_LABELS)
    view["text"] = view["text"].str.replace("\n", " / ", regex=False)
    with pd.option_context("display.max_colwidth", None):  # whole questions and texts
        display(Markdown(f"**Step {step}: the {TOP_GROUPS} most concentrated groups** (lowest ESS fraction)"),
                view.round(3))
    return top.assign(step=step)


# %% [markdown]
# ## Step through training (generates and saves `nb10_weights_by_step`)

# %%
if INTERACTIVE:
    import ipywidgets as widgets

    def show(step: int) -> None:
        draw_steps([step])
        plt.show()
        show_top_groups(step)

    slider = widgets.SelectionSlider(options=all_steps, value=all_steps[0], description="step")
    display(widgets.interactive(show, step=slider))
fig = draw_steps(steps)
ctx.savefig(fig, "nb10_weights_by_step", caption="Per chosen step: histogram and ECDF of each path's weights relative "
            "to uniform (groups with ≥ 2 rollouts on the path; one x range and one set of bins for every step); right: "
            "the mean ESS fraction per step over training, the chosen steps dashed.")
plt.show()
tops = pd.concat([show_top_groups(step) for step in steps], ignore_index=True)
ctx.save_table(tops[["step", "group", "path", "ess_frac", "rollout_id", "weight", "rel_weight", "log_ppl", "question",
                     "text"]], "nb10_weights_by_step");

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
]);
