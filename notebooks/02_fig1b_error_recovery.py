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
# The logic lives in `scope_lib.studies.recovery` (the study), `scope_lib.studies.recovery_analysis` (tables,
# figures) and `scope_lib.notebook.claims` (verdicts); the figures' captions in
# `notebooks/captions/02_fig1b_error_recovery.md`. This notebook runs them and shows the artefacts.
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

# %% [markdown]
# The committed results, shown before anything runs

# %%
from scope_lib.notebook import nb

nb.show_committed("02_fig1b_error_recovery")

# %% tags=["parameters"]
SCALE = "tiny"  # smoke: "tiny_routes_smoke"; "tiny" (CPU, minutes), "smol", or "paper" (expects GPUs and the HF hub)
SMOKE = False  # True: a seconds-sized run; each parameter left at its default takes its smoke value
SEED = 0  # student sampling, teacher completions and bootstrap
NUM_PROBLEMS = 512  # smoke: 12; training problems sampled (paper: 2,000 from DeepMath)
SAMPLES_PER_PROBLEM = 4  # smoke: 2; student rollouts per problem (paper: 4)
COMPLETIONS_PER_PREFIX = 4  # smoke: 2; teacher completions per truncated prefix
RATIOS = [0.2, 0.4, 0.6, 0.8]  # truncation ratios (Fig. 1b, Table 7)
NUM_CASES = 4  # case studies shown (Tables 9-12)
N_BOOT = 2000  # smoke: 200; bootstrap resamples for the 95 % intervals
FIGURES_DIR = "figures"  # relative to the repository root

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

from scope_lib.notebook import nb, claims as study_claims
from scope_lib.studies import recovery
from scope_lib.studies import recovery_analysis as rs
from scope_lib.experiments.grid import experiment_config
from scope_lib.studies.recovery_analysis import pct, points
from scope_lib.rollout import Sampling
from scope_lib.world import WorldSpec, load_world

ctx = nb.setup("02_fig1b_error_recovery", globals())
# Derived values (papermill does not recompute them, so they live here, not above).
cfg = experiment_config(SCALE, "scope", SEED)
PAPER_TABLE6, PAPER_TABLE7 = rs.paper_table6(), rs.paper_table7()  # the paper's numbers (Appendix C.1)

# %% [markdown]
# ## Run the study
# Student rollouts at the evaluation temperature (Table 4), the incorrect ones scored and
# bucketed, then every prefix completed by the teacher (one progress bar). The first error of
# each rollout is diagnosed by the world's own tiny task (`first_error` of `scope_lib.worlds.routes`
# or `scope_lib.worlds.chain`); off the tiny scale no prefix is split.

# %%
world = load_world(WorldSpec.from_config(cfg), train_seed=SEED)  # SEED also draws the training pool
if world.teacher is None:
    raise ValueError("this notebook needs the teacher in process (teacher.backend: local)")
world.student.to(ctx.device)
world.teacher.to(ctx.device)
diagnose, task_text = rs.task_diagnosis(world.task)
started = time.perf_counter()
study = recovery.recovery_study(
    world.student, world.teacher, world.tokenizer, world.train_problems[:NUM_PROBLEMS], world.format_prompt,
    samples_per_problem=SAMPLES_PER_PROBLEM, ratios=RATIOS, completions_per_prefix=COMPLETIONS_PER_PREFIX,
    sampling=Sampling.from_config(cfg.eval, repetition_penalty=1.0), seed=SEED, diagnose=diagnose,
)
rates, cases = study.rates, study.cases
display(Markdown(
    f"**{world.description}** ({task_text}) — {NUM_PROBLEMS} problems × {SAMPLES_PER_PROBLEM} samples = "
    f"{study.num_rollouts} student rollouts, accuracy {pct(study.student_accuracy)}; "
    f"{study.num_incorrect} incorrect rollouts studied; {study.num_teacher_prompts} distinct prefixes × "
    f"{COMPLETIONS_PER_PREFIX} teacher completions; {time.perf_counter() - started:.0f} s on {ctx.device}."
))

# %% [markdown]
# ## Table 6: teacher perplexity of the incorrect rollouts, per quartile bucket

# %%
table6 = recovery.bucket_stats(-cases["nll"].to_numpy(), cases["bucket"].to_numpy())
ctx.save_table(table6, "table6_ppl_buckets")
display(table6)
q1_ppl, q4_ppl = table6["ppl_mean"].iloc[0], table6["ppl_mean"].iloc[3]
paper_ppl = PAPER_TABLE6["ppl_mean"]
display(Markdown(
    f"**Table 6** ({ctx.scale_label}, {study.num_incorrect} incorrect rollouts). Mean teacher PPL rises from "
    f"{q1_ppl:.3f} in Q1 to {q4_ppl:.3f} in Q4 (Q4/Q1 = {q4_ppl / q1_ppl:.2f}; the paper: "
    f"{paper_ppl.iloc[0]:.3f} to {paper_ppl.iloc[3]:.3f}, Q4/Q1 = {paper_ppl.iloc[3] / paper_ppl.iloc[0]:.2f}); "
    f"NLL per token from {table6['nll_mean'].iloc[0]:.3f} to {table6['nll_mean'].iloc[3]:.3f} "
    f"(paper: {PAPER_TABLE6['nll_mean'].iloc[0]:.3f} to {PAPER_TABLE6['nll_mean'].iloc[3]:.3f}). "
    f"The overall mean PPL is {table6['ppl_mean'].loc['Overall']:.3f} (paper: {paper_ppl.loc['Overall']:.3f}); "
    f"the Q4 tail reaches PPL {table6['ppl_max'].iloc[3]:.2f}. The ordering holds by construction; "
    "what matters is the spread between buckets, which the recovery rates below test."
))

# %% [markdown]
# ## Table 7: recovery rate (%) per truncation ratio and bucket

# %%
table7, gaps = rs.table7_with_gaps(rates, n_boot=N_BOOT, seed=SEED)
ctx.save_table(table7, "table7_recovery_rates", floatfmt=".1f")
display(table7, Markdown("The paper's Table 7 (%):"), PAPER_TABLE7)
gap = gaps["gap"]
falling = [q for q in recovery.BUCKET_NAMES if (np.diff(table7[q].dropna().to_numpy()) < 0).all()]
display(Markdown(
    f"**Table 7** ({ctx.scale_label}), all prefixes. The Q1−Q4 gap is "
    + ", ".join(f"{points(g)} [{points(lo)}, {points(hi)}] at {r:g}" for r, g, lo, hi in zip(gap.index, gap, gaps["low"], gaps["high"]))
    + " points (95 % bootstrap intervals; paper: " + ", ".join(f"{g:+.1f}" for g in PAPER_TABLE7['Q1-Q4 gap']) + "). "
    f"Recovery falls at every step for {len(falling)} of 4 buckets ({', '.join(falling) if falling else 'none'}); over "
    f"all rollouts from {table7['All'].iloc[0]:.1f} % at {min(RATIOS):g} to {table7['All'].iloc[-1]:.1f} % at "
    f"{max(RATIOS):g}. The verdicts, under one rule, are at the end of the notebook."
))

# %% [markdown]
# ## Fig. 1b (generates and saves `fig1b_error_recovery`)
# Only this run's numbers are drawn (the paper's Table 7 is printed above): per ratio and
# bucket the mean recovery with its 95 % bootstrap interval over rollouts, drawn by seaborn
# from the per-rollout rates.

# %%
curve = recovery.recovery_curve(rates, n_boot=N_BOOT, seed=SEED)
fig = rs.fig1b_figure(rates, RATIOS, n_boot=N_BOOT, seed=SEED, scale_label=ctx.scale_label)
ctx.savefig(fig, "fig1b_error_recovery", caption=ctx.caption("fig1b_error_recovery"))
plt.show()
rho = recovery.rank_correlation(rates)
display(Markdown(
    f"**Fig. 1b** ({ctx.scale_label}): recovery rate against truncation ratio, one line per teacher-PPL "
    f"quartile, 95 % intervals from resampling rollouts. Q1 lies above Q4 at {int((gap > 0).sum())} of {len(gap)} "
    f"ratios (the paper: all 4). Using every rollout's PPL rather than its quartile, the Spearman correlation between "
    "teacher PPL and recovery is " + ", ".join(f"{v:+.2f} at {r:g}" for r, v in rho.items()) +
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
conditions = rs.recovery_conditions(rates, n_boot=N_BOOT, seed=SEED)
ctx.save_table(conditions, "nb02_recovery_mechanism", floatfmt=".3f")
shown = conditions.assign(
    share=100 * conditions["share"],
    recovery=[f"{100 * m:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]" for m, lo, hi in conditions[["recovery", "low", "high"]].to_numpy()],
    gap=[f"{points(g)} [{points(lo)}, {points(hi)}]" for g, lo, hi in conditions[["gap", "gap_low", "gap_high"]].to_numpy()],
).pivot(index="ratio", columns="condition", values=["share", "recovery", "gap"])
display(Markdown("Share of prefixes (%), recovery (%, 95 % CI) and Q1 − Q4 gap (points, 95 % CI) per condition:"), shown)
fig = rs.mechanism_figure(rates, RATIOS, n_boot=N_BOOT, seed=SEED, scale_label=ctx.scale_label)
if fig is not None:
    ctx.savefig(fig, "nb02_recovery_mechanism", caption=ctx.caption("nb02_recovery_mechanism"))
    plt.show()
    display(Markdown(study_claims.mechanism_text(conditions, cases, RATIOS)))
else:
    print("this task gives no first-error diagnosis: only the unconditioned recovery is reported")

# %% [markdown]
# ## Tables 9-12: case studies from the highest-PPL bucket

# %%
table9 = recovery.case_studies(cases, NUM_CASES)
ctx.save_table(table9, "table9_case_studies")
display(table9)
kinds = rs.error_kind_shares(cases)
text = (f"**Tables 9-12** ({ctx.scale_label}): the {len(table9)} incorrect rollouts with the highest teacher PPL "
        f"({table9['teacher PPL'].min():.2f} to {table9['teacher PPL'].max():.2f}; the Q4 median is "
        f"{table6['ppl_median'].iloc[3]:.2f}). ")
if not kinds.empty:
    ctx.save_table(100 * kinds, "nb02_error_kinds", floatfmt=".1f")
    display((100 * kinds).round(1))
    top_q1, top_q4 = (kinds.loc[q].idxmax() if q in kinds.index else "n/a" for q in ("Q1", "Q4"))
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
# recovery at the largest ratio minus at the smallest, paired per rollout
# (`scope_lib.notebook.claims.recovery_lines`).

# %%
ctx.show_claims("fig1b_error_recovery", study_claims.recovery_lines(
    rates, conditions, curve, rho, table6, RATIOS, n_boot=N_BOOT, seed=SEED,
    intro=f"Scale `{ctx.scale_label}`: {study.num_incorrect} incorrect rollouts of {NUM_PROBLEMS} problems, "
          f"{COMPLETIONS_PER_PREFIX} teacher completions per prefix. Task: {task_text}"));
