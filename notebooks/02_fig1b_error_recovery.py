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
# # 02 · Fig. 1b, Tables 6, 7, 9-12: can the teacher recover from a flawed student prefix?
#
# The paper's motivating experiment (Sec. 2; Appendix C.1 and C.4). Incorrect student
# rollouts are scored by the teacher, split into quartiles of teacher perplexity
# (`PPL_T = exp(-mean log pi_T)` over the response tokens, Eq. 23; Q1 = lowest), truncated at
# the newline nearest to 20/40/60/80 % of their length, and completed by the teacher several
# times. The recovery rate is the share of completions that reach the gold answer.
#
# The paper's claims, checked below with the numbers this run computes:
# 1. low-PPL prefixes (Q1) recover more often than high-PPL ones (Q4) at every truncation
#    ratio, by up to +19.4 points (Fig. 1b, Table 7);
# 2. recovery falls as more of the flawed trajectory is kept; even Q1 ends near 35 % at 0.8;
# 3. the highest-PPL rollouts are degenerate (collapse, loops, false premises; Tables 9-12).
#
# The logic lives in `scope_lib.recovery`; this notebook runs it and draws the artefacts.
# At the `tiny` scale the student and teacher are the project's own small models on the
# tiny task of the configured world (named below), so the numbers are about that world, not
# about DeepSeek-R1-Distill-1.5B and Skywork-OR1-7B. On a tiny task every incorrect rollout
# also has a diagnosed first error, so recovery is reported both over all prefixes (as in the
# paper) and split by whether the kept prefix already holds that error.
#
# **Verdicts.** The study runs once, with no seeds to pair, so each claim is judged on a
# bootstrap interval over the incorrect rollouts (the unit of the study: a prefix's
# completions are correlated), under the same three outcomes as the rule at the top of the
# results page: reproduced if the 95% interval excludes 0 in the paper's direction,
# contradicted if it excludes 0 in the other, inconclusive otherwise.

# %% tags=["parameters"]
SCALE = "tiny"  # "tiny" (CPU, minutes), "smol", or "paper" (expects GPUs and the HF hub)
SMOKE = False  # True: a seconds-sized run on the smoke world (the tests use it)
SEED = 0  # student sampling, teacher completions and bootstrap
NUM_PROBLEMS = 512  # training problems sampled (paper: 2,000 from DeepMath)
SAMPLES_PER_PROBLEM = 4  # student rollouts per problem (paper: 4)
COMPLETIONS_PER_PREFIX = 4  # teacher completions per truncated prefix
RATIOS = [0.2, 0.4, 0.6, 0.8]  # truncation ratios (Fig. 1b, Table 7)
NUM_CASES = 4  # case studies shown (Tables 9-12)
FIGURES_DIR = "figures"  # relative to the repository root

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display

from scope_lib import plotting, recovery, report
from scope_lib.experiments import experiment_config
from scope_lib.world import load_world

# Derived values (papermill does not recompute them, so they live here, not above).
num_problems = 12 if SMOKE else NUM_PROBLEMS
samples_per_problem = 2 if SMOKE else SAMPLES_PER_PROBLEM
completions_per_prefix = 2 if SMOKE else COMPLETIONS_PER_PREFIX
n_boot = 200 if SMOKE else 2000  # bootstrap resamples for the 95 % intervals
cfg = experiment_config(SCALE, "scope", SEED, smoke=SMOKE)
scale_label = f"{SCALE} (smoke world)" if SMOKE else SCALE
device = "cuda" if torch.cuda.is_available() else "cpu"
if device == "cpu" and SCALE == "tiny":
    # The tiny models are too small to gain from a second thread; on a shared 2-core machine one
    # thread generated 5x faster than two (measured), since idle-spinning threads fight for cores.
    torch.set_num_threads(1)
if SCALE.startswith("paper"):
    print("paper scale: expects GPUs and the Hugging Face hub (the models are downloaded by load_world)")
plotting.use_style()

# The paper's numbers, quoted for comparison (Appendix C.1, Tables 6 and 7).
PAPER_TABLE6 = pd.DataFrame(
    {"ppl_mean": [1.361, 1.565, 1.710, 2.383, 1.755], "nll_mean": [0.305, 0.448, 0.536, 0.688, 0.494]},
    index=["Q1 (lowest PPL)", "Q2", "Q3", "Q4 (highest PPL)", "Overall"],
)
PAPER_TABLE7 = pd.DataFrame(
    [[64.9, 59.7, 54.0, 45.4], [55.8, 53.2, 50.1, 40.2], [44.8, 43.1, 41.0, 34.5], [35.8, 35.3, 32.6, 28.6]],
    index=pd.Index([0.2, 0.4, 0.6, 0.8], name="ratio"), columns=list(recovery.BUCKET_NAMES),
)
PAPER_TABLE7["Q1-Q4 gap"] = [19.4, 15.6, 10.3, 7.2]  # as printed (from unrounded rates)


def pct(x: float) -> str:
    return "n/a" if pd.isna(x) else f"{100 * x:.1f} %"


def points(x: float) -> str:
    return "n/a" if pd.isna(x) else f"{100 * x:+.1f}"


# %% [markdown]
# ## Run the study
# Student rollouts at the evaluation temperature (Table 4), the incorrect ones scored and
# bucketed, then every prefix completed by the teacher (one progress bar).

# %%
world = load_world(cfg)
if world.teacher is None:
    raise ValueError("this notebook needs the teacher in process (teacher.backend: local)")
world.student.to(device)
world.teacher.to(device)
# The task's own first-error diagnosis (`first_error` of scope_lib.routes or scope_lib.tasks); off
# the tiny scale (world.task None) the chain diagnosis finds no worked steps in the problems and
# returns None, so no prefix is split.
diagnose = world.task.first_error if world.task is not None else recovery.first_chain_error
task_text = (world.task.__doc__ or "").strip().splitlines()[0] if world.task is not None else "no tiny task"
started = time.perf_counter()
study = recovery.recovery_study(
    world.student, world.teacher, world.tokenizer, world.train_problems[:num_problems], world.format_prompt,
    samples_per_problem=samples_per_problem, ratios=RATIOS, completions_per_prefix=completions_per_prefix,
    temperature=cfg.eval.temperature, top_p=cfg.eval.top_p, top_k=cfg.eval.top_k,
    max_new_tokens=cfg.eval.max_new_tokens, batch_size=cfg.eval.batch_size, seed=SEED, diagnose=diagnose,
)
seconds = time.perf_counter() - started
rates, cases = study.rates, study.cases
display(Markdown(
    f"**{world.description}** ({task_text}) — {num_problems} problems × {samples_per_problem} samples = "
    f"{study.num_rollouts} student rollouts, accuracy {pct(study.student_accuracy)}; "
    f"{study.num_incorrect} incorrect rollouts studied; {study.num_teacher_prompts} distinct prefixes × "
    f"{completions_per_prefix} teacher completions; {seconds:.0f} s on {device}."
))

# %% [markdown]
# ## Table 6: teacher perplexity of the incorrect rollouts, per quartile bucket

# %%
table6 = recovery.bucket_stats(-cases["nll"].to_numpy(), cases["bucket"].to_numpy())
plotting.save_table(table6, "table6_ppl_buckets", figures_dir=FIGURES_DIR)
display(table6)

# %%
q1_ppl, q4_ppl = table6["ppl_mean"].iloc[0], table6["ppl_mean"].iloc[3]
paper_spread = PAPER_TABLE6["ppl_mean"].iloc[3] / PAPER_TABLE6["ppl_mean"].iloc[0]
display(Markdown(
    f"**Table 6** ({scale_label}, {study.num_incorrect} incorrect rollouts). Mean teacher PPL rises from "
    f"{q1_ppl:.3f} in Q1 to {q4_ppl:.3f} in Q4 (Q4/Q1 = {q4_ppl / q1_ppl:.2f}; the paper: "
    f"{PAPER_TABLE6['ppl_mean'].iloc[0]:.3f} to {PAPER_TABLE6['ppl_mean'].iloc[3]:.3f}, Q4/Q1 = {paper_spread:.2f}); "
    f"NLL per token from {table6['nll_mean'].iloc[0]:.3f} to {table6['nll_mean'].iloc[3]:.3f} "
    f"(paper: {PAPER_TABLE6['nll_mean'].iloc[0]:.3f} to {PAPER_TABLE6['nll_mean'].iloc[3]:.3f}). "
    f"The overall mean PPL is {table6['ppl_mean'].loc['Overall']:.3f} (paper: {PAPER_TABLE6['ppl_mean'].loc['Overall']:.3f}); "
    f"the Q4 tail reaches PPL {table6['ppl_max'].iloc[3]:.2f}. The ordering holds by construction; "
    "what matters is the spread between buckets, which the recovery rates below test."
))

# %% [markdown]
# ## Table 7: recovery rate (%) per truncation ratio and bucket

# %%
table7 = recovery.recovery_table(rates)
gaps = recovery.quartile_gap(rates, n_boot=n_boot, seed=SEED).set_index("ratio")
table7["gap 95% CI"] = [f"[{100 * lo:+.1f}, {100 * hi:+.1f}]" for lo, hi in zip(gaps["low"], gaps["high"])]
plotting.save_table(table7, "table7_recovery_rates", figures_dir=FIGURES_DIR, floatfmt=".1f")
display(table7)
display(Markdown("The paper's Table 7 (%):"), PAPER_TABLE7)

# %%
gap = gaps["gap"]
by_bucket = table7[list(recovery.BUCKET_NAMES)]
falling = [q for q in recovery.BUCKET_NAMES if (np.diff(by_bucket[q].dropna().to_numpy()) < 0).all()]
display(Markdown(
    f"**Table 7** ({scale_label}), all prefixes. The Q1−Q4 gap is "
    + ", ".join(f"{points(g)} [{points(lo)}, {points(hi)}] at {r:g}" for r, g, lo, hi in zip(gap.index, gap, gaps["low"], gaps["high"]))
    + " points (95 % bootstrap intervals; paper: " + ", ".join(f"{g:+.1f}" for g in PAPER_TABLE7['Q1-Q4 gap']) + "). "
    f"Recovery falls at every step for {len(falling)} of 4 buckets ({', '.join(falling) if falling else 'none'}); over "
    f"all rollouts from {table7['All'].iloc[0]:.1f} % at {min(RATIOS):g} to {table7['All'].iloc[-1]:.1f} % at "
    f"{max(RATIOS):g}. The verdicts, under one rule, are at the end of the notebook."
))

# %% [markdown]
# ## Fig. 1b (generates and saves `fig1b_error_recovery`)

# %%
curve = recovery.recovery_curve(rates, n_boot=n_boot, seed=SEED)
colors = plt.cm.viridis(np.linspace(0.0, 0.85, 4))
# Only this run's numbers are drawn; the paper's Table 7 is quoted in the text and table above.
fig, ax_run = plt.subplots(figsize=(6.0, 4.0))
for bucket, quartile in enumerate(recovery.BUCKET_NAMES):
    part = curve[curve["bucket"] == bucket].sort_values("ratio")
    label = {0: "Q1 (lowest PPL)", 3: "Q4 (highest PPL)"}.get(bucket, quartile)
    ax_run.plot(part["ratio"], 100 * part["recovery"], "o-", color=colors[bucket], label=label)
    ax_run.fill_between(part["ratio"], 100 * part["low"], 100 * part["high"], color=colors[bucket], alpha=0.15)
ax_run.set_title(f"this run: {scale_label} world, 95 % bootstrap CI")
ax_run.set_xlabel("truncation ratio (share of the flawed response kept)")
ax_run.set_xticks(RATIOS)
ax_run.set_ylabel("teacher recovery rate (%)")
ax_run.legend(title="teacher-PPL bucket")
fig.suptitle("Fig. 1b: error recovery from truncated incorrect student rollouts")
fig.tight_layout()
plotting.savefig(fig, "fig1b_error_recovery", figures_dir=FIGURES_DIR)
plt.show()

# %%
rho = recovery.rank_correlation(rates)
display(Markdown(
    f"**Fig. 1b** ({scale_label}): recovery rate against truncation ratio, one line per teacher-PPL "
    f"quartile, shaded 95 % intervals from resampling rollouts (the paper's Table 7 is printed above). "
    f"Q1 lies above Q4 at {int((gap > 0).sum())} of {len(gap)} ratios (the paper: all 4). Using every "
    f"rollout's PPL rather than its quartile, the Spearman correlation between teacher PPL and recovery is "
    + ", ".join(f"{v:+.2f} at {r:g}" for r, v in rho.items()) +
    " (negative = high-PPL prefixes recover less, the paper's claim)."
))

# %% [markdown]
# ## Recovery conditioned on the first error (table and figure `nb02_recovery_mechanism`)
# On a tiny task every incorrect rollout has a first wrong line (the task's own diagnosis), so
# each kept prefix either still lies before the error or already holds it. Recovering before
# the error only asks the teacher to finish a correct start; recovering after it asks the
# teacher to repair the student's mistake. The table gives, per truncation ratio, the share of
# prefixes in each case, the recovery rate and the Q1 − Q4 gap, with 95 % bootstrap intervals
# over rollouts, next to the unconditioned numbers (`all`).

# %%
conditions = report.recovery_conditions(rates, n_boot=n_boot, seed=SEED)
split = set(conditions["condition"]) != {"all"}
plotting.save_table(conditions, "nb02_recovery_mechanism", figures_dir=FIGURES_DIR, floatfmt=".3f")
shown = conditions.assign(
    share=100 * conditions["share"],
    recovery=[f"{100 * m:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]" for m, lo, hi in conditions[["recovery", "low", "high"]].to_numpy()],
    gap=[f"{points(g)} [{points(lo)}, {points(hi)}]" for g, lo, hi in conditions[["gap", "gap_low", "gap_high"]].to_numpy()],
).pivot(index="ratio", columns="condition", values=["share", "recovery", "gap"])
display(Markdown("Share of prefixes (%), recovery (%, 95 % CI) and Q1 − Q4 gap (points, 95 % CI) per condition:"), shown)
if split:
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for condition, color in zip(report.RECOVERY_CONDITIONS, ("black", "tab:red", "tab:blue")):
        part = conditions[(conditions["condition"] == condition) & (conditions["n"] > 0)]
        ax.plot(part["ratio"], 100 * part["recovery"], "o-", color=color, label=condition)
        ax.fill_between(part["ratio"], 100 * part["low"], 100 * part["high"], color=color, alpha=0.15)
    ax.set(xlabel="truncation ratio", ylabel="teacher recovery rate (%)", xticks=RATIOS,
           title=f"recovery by whether the prefix holds the first error ({scale_label})")
    ax.legend()
    fig.tight_layout()
    plotting.savefig(fig, "nb02_recovery_mechanism", figures_dir=FIGURES_DIR)
    plt.show()
    by = conditions.set_index(["condition", "ratio"])
    error_line = cases.groupby("bucket")["error_line"].mean()
    display(Markdown(
        "With the first error inside the prefix the teacher recovers "
        + ", ".join(f"{pct(by.loc[('error in prefix', r), 'recovery'])} at {r:g}" for r in RATIOS)
        + "; before it, " + ", ".join(f"{pct(by.loc[('error not yet in prefix', r), 'recovery'])} at {r:g}" for r in RATIOS)
        + ". The share of prefixes holding the error grows from "
        f"{pct(by.loc[('error in prefix', min(RATIOS)), 'share'])} at {min(RATIOS):g} to "
        f"{pct(by.loc[('error in prefix', max(RATIOS)), 'share'])} at {max(RATIOS):g}, so the unconditioned rate mixes "
        "the two cases in proportions that change with the ratio and with the bucket. The first error sits on line "
        f"{error_line.iloc[0]:.2f} on average in Q1 and line {error_line.iloc[-1]:.2f} in Q4 (0 = the first line)."
    ))
else:
    print("this task gives no first-error diagnosis: only the unconditioned recovery is reported")

# %% [markdown]
# ## Tables 9-12: case studies from the highest-PPL bucket

# %%
table9 = recovery.case_studies(cases, NUM_CASES)
plotting.save_table(table9, "table9_case_studies", figures_dir=FIGURES_DIR)
display(table9)

# %%
kinds = (cases.dropna(subset=["error_kind"]).groupby("bucket")["error_kind"].value_counts(normalize=True)
         .unstack(fill_value=0.0).rename(index=dict(enumerate(recovery.BUCKET_NAMES))))
text = (f"**Tables 9-12** ({scale_label}): the {len(table9)} incorrect rollouts with the highest teacher PPL "
        f"({table9['teacher PPL'].min():.2f} to {table9['teacher PPL'].max():.2f}; the Q4 median is "
        f"{table6['ppl_median'].iloc[3]:.2f}). ")
if not kinds.empty:
    plotting.save_table(100 * kinds, "nb02_error_kinds", figures_dir=FIGURES_DIR, floatfmt=".1f")
    display((100 * kinds).round(1))
    top_q4 = kinds.loc["Q4"].idxmax() if "Q4" in kinds.index else "n/a"
    top_q1 = kinds.loc["Q1"].idxmax() if "Q1" in kinds.index else "n/a"
    text += (f"Their error kinds: {', '.join(table9['error type'].str.split(' [(]').str[0])}. The most common kind "
             f"is '{top_q1}' in Q1 and '{top_q4}' in Q4 (shares per bucket in the table above). The paper's "
             "high-PPL cases are degenerate text (digit overflow, loops, false premises); on the short tiny task "
             "the comparable signal is which mistakes the teacher finds least plausible.")
display(Markdown(text))

# %% [markdown]
# ## Verdicts (saved for the results page, `figures/README.md`)
# One bootstrap interval per claim, resampling incorrect rollouts (see the top). The Q1 − Q4
# gap is judged per truncation ratio against the paper's Table 7 gap at that ratio, over all
# prefixes (the paper's claim) and over the prefixes that hold the first error (the teacher
# must repair the mistake; the paper does not split). The fall with the ratio is judged on
# recovery at the largest ratio minus at the smallest, paired per rollout.

# %%
evidence = "one run, bootstrap over rollouts: {q1} in Q1, {q4} in Q4"
lines = [f"Scale `{scale_label}`: {study.num_incorrect} incorrect rollouts of {num_problems} problems, "
         f"{completions_per_prefix} teacher completions per prefix. Task: {task_text}"]
by = conditions.set_index(["condition", "ratio"])
for condition, label in (("all", "all prefixes"), ("error in prefix", "prefixes that hold the first error")):
    if condition not in by.index.get_level_values(0):
        continue
    for ratio in RATIOS:
        row = by.loc[(condition, ratio)]
        paper_gap = PAPER_TABLE7["Q1-Q4 gap"].get(ratio)
        paper = (f"{paper_gap:+.1f} points (Table 7" + (")" if condition == "all" else ", all prefixes; not split)")
                 if paper_gap is not None else "no Table 7 row at this ratio")
        lines.append(report.interval_claim(f"Q1 − Q4 recovery at ratio {ratio:g}, {label}", row["gap"], row["gap_low"],
                                           row["gap_high"], "greater", paper,
                                           evidence=evidence.format(q1=int(row["n_q1"]), q4=int(row["n_q4"]))))
drop, drop_low, drop_high, drop_n = report.recovery_drop(rates, n_boot=n_boot, seed=SEED)
paper_drop = PAPER_TABLE7[list(recovery.BUCKET_NAMES)].mean(axis=1)
lines.append(report.interval_claim(
    f"recovery at ratio {max(RATIOS):g} − at {min(RATIOS):g}, all prefixes", drop, drop_low, drop_high, "less",
    f"{paper_drop.iloc[-1] - paper_drop.iloc[0]:+.1f} points (Table 7, 0.8 − 0.2, mean of the four buckets: "
    f"{paper_drop.iloc[0]:.1f} → {paper_drop.iloc[-1]:.1f})",
    evidence=f"one run, paired per rollout, bootstrap over {drop_n} rollouts"))
best = curve[curve["ratio"] == max(RATIOS)].sort_values("recovery").iloc[-1]
lines.append(f"- At ratio {max(RATIOS):g} the best bucket ({best['quartile']}) recovers {pct(best['recovery'])} "
             f"[{pct(best['low'])}, {pct(best['high'])}] (paper: about 35 %); a level, not a comparison, so no verdict.")
lines.append("- Rank correlation of teacher PPL with recovery over all rollouts (supplementary, no verdict): Spearman "
             + ", ".join(f"{v:+.2f} at {r:g}" for r, v in rho.items()) + " (negative: high-PPL prefixes recover less).")
lines.append(report.check("mean teacher PPL rises from Q1 to Q4 (the quartile split itself)",
                          bool(np.all(np.diff(table6["ppl_mean"].iloc[:4].to_numpy()) > 0)),
                          ", ".join(f"{v:.3f}" for v in table6["ppl_mean"].iloc[:4])))
report.show_claims("fig1b_error_recovery", lines, figures_dir=FIGURES_DIR)
