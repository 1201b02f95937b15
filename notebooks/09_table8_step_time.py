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
# # 09 · Table 8: per-step wall-clock time by component
#
# Seconds per training step spent in each component, with the paper's Table 8 names:
# `generation`, `old_logprob`, `reward`, `actor_update`, `teacher_scoring` and the whole
# `step`, from the trainer's own timers in the runs of notebook 04 (mean over steps and
# seeds). SCOPE scores only the incorrect rollouts with the teacher; OPD scores all of them.
# With `optim.old_logp_pass: when_needed` (the `tiny` preset: one update per rollout batch)
# the trainer takes pi_old from the update's own forward pass, so `old_logprob` reads 0;
# the paper's verl runs it as a separate pass (`always`).
#
# The paper's claim, that a SCOPE step costs more than a GRPO or OPD step and that the extra
# cost is teacher scoring, is judged by the rule at the top of the results page on one
# summary quantity per seed: the mean seconds per step (or per step in one component) over
# all logged steps, SCOPE relative to the baseline of the same seed, in %. Wall-clock time
# depends on the machine and on what else ran beside it: the main job trains its runs side by
# side on all cores, so these step times, and a verdict near zero, can change between two runs
# of the same code (SCOPE − GRPO did, between the records in `data/run_*`). The bench in the
# last section, whose methods take their steps in turn in one process, is the steadier
# comparison. That the timed components add up to no more than the step is a check of the
# trainer's timers.
#
# The last section reads the committed record of `bench/table8_speed.py`, which times GRPO,
# SCOPE synchronous, SCOPE with overlapped teacher scoring and OPD side by side in one process,
# and checks the project's speed targets against it.

# %% [markdown]
# The committed results, shown before anything runs

# %%
from scope_lib.notebook import nb

nb.show_committed("09_table8_step_time")

# %% tags=["parameters"]
SCALE = "tiny"  # smoke: "tiny_routes_smoke"
SMOKE = False  # True: a seconds-sized run; each parameter left at its default takes its smoke value
SEEDS = [0, 1, 2, 3, 4]  # smoke: [0]
METHODS = ["grpo", "opd", "scope"]
FIGURES_DIR = "figures"
BENCH_RECORD = "data/bench_table8/table8_bench.json"  # bench/table8_speed.py's record, relative to the repository

# %%
import matplotlib.pyplot as plt
import seaborn as sns
from IPython.display import Markdown, display

from scope_lib.notebook import figure_data, nb, report
from scope_lib.experiments.grid import experiment_config, run_histories
from scope_lib.common.plotting import display_name, legend_outside, markdown_table
from scope_lib.trainer import TIMERS

ctx = nb.setup("09_table8_step_time", globals())
histories = run_histories(SCALE, METHODS, SEEDS)
steps = figure_data.step_times(histories, TIMERS)

# %% [markdown]
# ## Generates and saves Table 8

# %%
table = steps.groupby("variant")[list(TIMERS) + ["rollouts"]].mean().loc[METHODS]
table["other"] = table["step"] - table[[t for t in TIMERS if t != "step"]].sum(axis=1)
ctx.save_table(table.round(4).rename(index=display_name), "table8_step_time")
display(Markdown(f"Seconds per step ({ctx.scale_label}, {len(SEEDS)} seed(s), {len(steps)} steps in all)\n\n"
                 + markdown_table(table.rename(index=display_name))))

fig, ax = plt.subplots(figsize=(8.5, 3.2))
components = [t for t in TIMERS if t != "step"] + ["other"]
colours = dict(zip(components, sns.color_palette("tab10", len(components))))  # fixed per component
# a component under 1% of the longest step is no visible bar: left out of the bars and the legend
visible = [c for c in components if table[c].max() >= 0.01 * table["step"].max()]
left_out = [c.replace("_", " ") for c in components if c not in visible]
shown = table[visible].rename(index=display_name, columns=lambda c: c.replace("_", " "))
shown.plot.barh(stacked=True, ax=ax, color=[colours[c] for c in visible])
ax.invert_yaxis()  # methods top to bottom in the table's order
ax.set(xlabel="seconds per step", ylabel="", title=f"Per-step time by component ({ctx.scale_label}, mean over steps and seeds)")
legend_outside(ax, title="component")
ctx.savefig(fig, "table8_step_time", caption="Seconds per training step by component (the trainer's timers), "
            "mean over steps and seeds; `other` is the step's untimed rest."
            + (f" Under 1% of the longest step, so not drawn (their seconds are in the table): {', '.join(left_out)}."
               if left_out else ""));

# %%
share = table["teacher_scoring"] / table["step"]
optim = experiment_config(SCALE, "scope", SEEDS[0]).optim
# the trainer's rule: pi_old from the update's own pass only with one update per rollout batch
from_update = optim.old_logp_pass == "when_needed" and optim.mini_batch_prompts >= optim.prompts_per_step
seconds = {(v, timer): report.history_mean(histories, v, f"time/{timer}") for v in METHODS for timer in TIMERS}
lines = [
    "Share of the step spent scoring with the teacher: " + ", ".join(f"{display_name(m)} {100 * share[m]:.1f}%" for m in METHODS)
    + f"; SCOPE scores only its incorrect rollouts, OPD every rollout ({table.loc['scope', 'rollouts']:.0f} vs "
    f"{table.loc['opd', 'rollouts']:.0f} rollouts per step). Summary quantity: each seed's mean seconds per step.",
    report.compare("SCOPE − GRPO seconds per step", seconds["scope", "step"], seconds["grpo", "step"], "greater",
                   "+39.8% relative (Table 8: 641.9 vs 459.0 s)", relative=True),
    report.compare("SCOPE − OPD seconds per step", seconds["scope", "step"], seconds["opd", "step"], "greater",
                   "+182.2% relative (Table 8: 641.9 vs 227.5 s)", relative=True),
    report.compare("SCOPE − OPD teacher-scoring seconds per step", seconds["scope", "teacher_scoring"],
                   seconds["opd", "teacher_scoring"], "greater", "+541.0% relative (Table 8: 200.0 vs 31.2 s)",
                   relative=True),
    report.check("the timed components add up to no more than the whole step, for every method",
                 bool((table["other"] >= -1e-6 * table["step"]).all()),
                 "untimed rest per step: " + ", ".join(f"{display_name(m)} {table.loc[m, 'other']:.4f} s" for m in METHODS)),
    report.check("`old_logprob` is 0 when pi_old comes from the update's own pass, and positive otherwise",
                 bool((table["old_logprob"] == 0).all() if from_update else (table["old_logprob"] > 0).all()),
                 f"`optim.old_logp_pass` is `{optim.old_logp_pass}` with "
                 + ("one update per rollout batch: pi_old comes from the update's forward pass (verl runs it as its own pass)"
                    if from_update else "pi_old recomputed in its own pass before the updates, as in verl")),
]
ctx.show_claims("table8_step_time", lines);

# %% [markdown]
# ## Synchronous against overlapped teacher scoring (bench)
#
# `bench/table8_speed.py` runs GRPO, SCOPE synchronous, SCOPE with overlapped teacher scoring
# (`teacher.overlap`: a worker thread scores each finished generation batch while the next one
# is generated) and OPD (G = 1) side by side in one process, their steps interleaved, and keeps
# the median of each component over the steps after a warm-up. Its record (`BENCH_RECORD`)
# holds the numbers, the world, the machine, its load average, the date and the command; the
# numbers below are read from it, never typed. Each bar stacks a variant's median components
# (medians need not add up to the median step, the black tick). The hatched bar under the
# overlapped step is the scoring worker's busy time: it runs beside generation, so it is not a
# part of the step. The lines check the project's speed targets (benchmark targets,
# not claims of the paper): the overlapped SCOPE step at most 1.05x GRPO's, and the DPAW weight
# computation (Eq. 4-5, timed alone after the synchronous step) under 1% of a SCOPE step.

# %%
import json
from pathlib import Path

record_path = Path(BENCH_RECORD) if Path(BENCH_RECORD).is_absolute() else nb.REPO_ROOT / BENCH_RECORD
if not record_path.exists():
    bench_lines = [report.check("speed targets (bench)", None, f"no bench record at `{record_path}`; "
                                "make it with `nice -n 5 python bench/table8_speed.py --steps 10 --out "
                                "data/bench_table8` on an otherwise idle machine")]
else:
    bench = json.loads(record_path.read_text())
    bench_table = figure_data.bench_table(bench)
    ctx.save_table(bench_table.round(4), "table8_bench_step_time")
    n_teacher, n_student = (bench["parameters"][k] / 1e6 for k in ("teacher", "student"))
    run = (f"world `{bench['world']}` (teacher {n_teacher:.2f}M, student {n_student:.2f}M parameters), medians of "
           f"{bench['counted_steps']} interleaved steps, run {bench['date']} by `{bench['command']}`"
           + (" (smoke setting: its numbers measure nothing)" if bench.get("smoke") else ""))
    display(Markdown(f"Median seconds per step from `{record_path.name}`: {run}.\n\n" + markdown_table(bench_table)))

    fig, ax = plt.subplots(figsize=(8.5, 3.4))
    parts = bench["components"]
    part_colours = dict(zip(parts, sns.color_palette("tab10", len(parts))))  # fixed per component
    drawn = [c for c in parts if bench_table[c].max() >= 0.01 * bench_table["step"].max()]  # the 1% rule above
    not_drawn = [c.replace("_", " ") for c in parts if c not in drawn]
    bench_table[drawn].rename(index={"OPD (G=1)": display_name("opd")}, columns=lambda c: c.replace("_", " ")).plot.barh(
        stacked=True, ax=ax, width=0.55, color=[part_colours[c] for c in drawn])
    over = list(bench_table.index).index("SCOPE (overlapped)")
    ax.barh(over + 0.4, bench_table.loc["SCOPE (overlapped)", figure_data.BENCH_WORKER], height=0.2, color="none",
            edgecolor="0.3", hatch="///", label="scoring worker (in parallel)")
    ax.scatter(bench_table["step"], range(len(bench_table)), marker="|", s=400, color="black", zorder=3, label="step")
    target = figure_data.SPEED_TARGETS["overlapped_step_ratio"]
    ax.axvline(target * bench_table.loc["GRPO", "step"], color="0.4", ls="--", lw=1, label=f"{target:.2f}x GRPO's step")
    ax.invert_yaxis()
    ax.set(xlabel="median seconds per step", ylabel="", title=f"Bench: synchronous vs overlapped scoring ({bench['world']})")
    legend_outside(ax, title="component")
    ctx.savefig(fig, "table8_bench_overlap", caption=f"Median seconds per step by component, {run}. Hatched: the "
                "overlapped teacher-scoring worker's busy time, beside the step; dashed: the 1.05x GRPO target."
                + (f" Under 1% of the longest step, so not drawn (their seconds are in the table): {', '.join(not_drawn)}."
                   if not_drawn else ""))

    where = f"{figure_data.bench_machine_text(bench)}; {run}"
    sync_s, over_s = bench_table.loc["SCOPE (synchronous)", "step"], bench_table.loc["SCOPE (overlapped)", "step"]
    bench_lines = [f"Bench: SCOPE synchronous / GRPO step = {bench_table.loc['SCOPE (synchronous)', 'step / GRPO']:.3f}x, "
                   f"SCOPE overlapped / GRPO = {bench_table.loc['SCOPE (overlapped)', 'step / GRPO']:.3f}x, OPD / GRPO = "
                   f"{bench_table.loc['OPD (G=1)', 'step / GRPO']:.3f}x; the overlap changes SCOPE's step by "
                   f"{over_s - sync_s:+.3f} s. The lines below check the project's speed targets, not claims of the paper."]
    for t in figure_data.speed_targets(bench):
        limits = f"; what limits it: {figure_data.overlap_limits(bench)}" if t["met"] is False and "overlapped" in t["name"] else ""
        bench_lines.append(report.check(f"speed target: {t['name']}", t["met"], f"{t['verdict']} (machine: {where}){limits}"))
ctx.show_claims("table8_bench_overlap", bench_lines);
