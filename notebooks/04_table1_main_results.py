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
# # 04 · Table 1: main results
#
# Base student, GRPO, KD, OPD and SCOPE, each trained with several seeds, evaluated with
# k samples per problem on every held-out eval set: Avg@k and Pass@k, mean and 95% confidence
# interval over seeds, and the relative change versus OPD (the paper's headline comparison).
# OPD runs twice: as in the paper (`opd`, one rollout per prompt, Table 3) and matched in
# rollouts (`opd_g8`, G = 8 per prompt like SCOPE), so SCOPE's edge cannot come from seeing
# more rollouts. The runs land in the run registry (`runs/`), so notebooks 05-08 reuse them.
#
# Every claim is judged by the rule at the top of the results page: per-seed paired
# differences (runs with the same seed share prompt order and eval problems) and their 95%
# interval over seeds; against the base student, evaluated once, a bootstrap over seeds and
# problems. The summary quantity is the mean over the eval sets of Avg@k or Pass@k at the
# largest k.

# %% [markdown]
# The committed results, shown before anything runs

# %%
from scope_lib.notebook import nb

nb.show_committed("04_table1_main_results")

# %% tags=["parameters"]
SCALE = "tiny"  # smoke: "tiny_routes_smoke"
SMOKE = False  # True: a seconds-sized run; each parameter left at its default takes its smoke value
SEEDS = [0, 1, 2, 3, 4]  # smoke: [0, 1]
METHODS = ["grpo", "kd", "opd", "opd_g8", "hybrid", "scope"]
PAIR_SEEDS = []  # more seeds for OPD and SCOPE only: the SCOPE − OPD comparison's power
EVAL_K = 16  # smoke: 4
FIGURES_DIR = "figures"

# %%
import pandas as pd
from IPython.display import Markdown, display

from scope_lib.notebook import nb, report, verdict
from scope_lib.experiments.grid import run_grid
from scope_lib.common.plotting import display_name, markdown_table, per_seed_panels

ctx = nb.setup("04_table1_main_results", globals())
df, results = run_grid(SCALE, METHODS, SEEDS, **{"eval.k": EVAL_K})
pair_seeds = [s for s in PAIR_SEEDS if s not in SEEDS]
if pair_seeds:  # SCOPE and OPD only: the comparison the power target is about
    pair_df, pair_results = run_grid(SCALE, [v for v in ("opd", "scope") if v in METHODS], pair_seeds,
                                     include_base=False, **{"eval.k": EVAL_K})
    df = pd.concat([df, pair_df], ignore_index=True)
    results.update(pair_results)
summary = report.seed_summary(df)
sets = [s for s in df.eval_set.unique() if s != "average"] + ["average"]
order = ["base"] + METHODS

# %% [markdown]
# ## Generates and saves Table 1

# %%
avg_table, pass_table = (t.rename(index=display_name) for t in report.method_tables(summary, order, sets))
ctx.save_table(avg_table, "table1_main_results_avg")
ctx.save_table(pass_table, "table1_main_results_pass")
ctx.save_table(summary, "table1_main_results_long")
seed_counts = df[df.variant != "base"].groupby("variant")["seed"].nunique().to_dict()
display(Markdown(f"**Avg@{EVAL_K}** (%, mean ± 95% CI over seeds: "
                 + ", ".join(f"{display_name(v)} {n}" for v, n in seed_counts.items()) + ")\n\n" + markdown_table(avg_table)))
display(Markdown(f"**Pass@{EVAL_K}** (%)\n\n" + markdown_table(pass_table)))

# %% [markdown]
# ## The same numbers per seed
# One dot per seed (mean over the eval sets), the mean and its 95% t interval over seeds (the
# interval of the table and of the verdict rule); the base student, evaluated once, is the dashed line.

# %%
fig = per_seed_panels(df, METHODS, EVAL_K, f"Table 1 per seed ({ctx.scale_label}, {len(SEEDS)} seed(s), k = {EVAL_K})")
ctx.savefig(fig, "table1_main_results", caption=f"Dots: the {len(SEEDS)} seed(s); diamonds and bars: mean and 95% t "
            "interval over seeds (as the table and the verdict lines); dashed: the base student (one evaluation).");

# %% [markdown]
# ## Verdicts (saved for the results page)
# The paper's numbers are its Table 1, average column, R1-Distill-1.5B student with the
# Skywork-OR1-7B teacher (the Qwen3 pair in brackets where it differs in sign or size).

# %%
avg = {v: report.per_seed(df, v, "avg@k") for v in METHODS}
top = {v: report.per_seed(df, v, "pass@k") for v in METHODS}
A, P = f"Avg@{EVAL_K}", f"Pass@{EVAL_K}"
OPD_NOTE = {"opd": "OPD (G = 1, as in the paper)", "opd_g8": "OPD (G = 8, as many rollouts as SCOPE)"}
lines = [f"Scale `{ctx.scale_label}`, {len(SEEDS)} seed(s), k = {EVAL_K}; "
         f"summary quantity: the mean over the eval sets of each seed's {A} or {P}."]
for opd in [v for v in ("opd", "opd_g8") if v in METHODS]:
    paper = "+5.54% relative (Avg@32 55.2 vs 52.3; +6.21% with Qwen3)" if opd == "opd" else \
        "+5.54% relative against the paper's OPD at G = 1; the paper has no rollout-matched OPD"
    lines.append(report.compare(f"SCOPE − {OPD_NOTE[opd]} {A}", avg["scope"], avg[opd], "greater", paper, relative=True))
    paper = "+2.60% relative (Pass@32 75.0 vs 73.1; +4.83% with Qwen3)" if opd == "opd" else \
        "+2.60% relative against the paper's OPD at G = 1"
    lines.append(report.compare(f"SCOPE − {OPD_NOTE[opd]} {P}", top["scope"], top[opd], "greater", paper, relative=True))
for baseline, paper in (("grpo", "+11.29% relative (55.2 vs 49.6)"), ("kd", "+21.59% relative (55.2 vs 45.4)")):
    if baseline in METHODS:
        lines.append(report.compare(f"SCOPE − {display_name(baseline)} {A}", avg["scope"], avg[baseline], "greater", paper,
                                    relative=True))
if "hybrid" in METHODS:  # the RL-KD hybrid the paper cites (§5.2) but never runs: no paper number
    for metric, values in ((A, avg), (P, top)):
        lines.append(report.compare(f"SCOPE − {display_name('hybrid')} {metric}", values["scope"], values["hybrid"],
                                    "greater", "not in the paper (it cites KDRL-style hybrids, §5.2, without running one)",
                                    relative=True))
lines.append(report.compare_to_base(f"SCOPE − base student {P}", results, "scope", SEEDS, "greater",
                                    "+1.9 points (73.1 → 75.0; Qwen3 +9.4)", k=EVAL_K))
for baseline, paper in (("grpo", "-2.0 points (73.1 → 71.1; Qwen3 +1.2)"), ("kd", "-1.1 points (73.1 → 72.0; Qwen3 -2.4)")):
    if baseline in METHODS:
        lines.append(report.compare_to_base(f"{display_name(baseline)} − base student {P}", results, baseline, SEEDS, "less",
                                            paper, k=EVAL_K))

# The power reached: the SCOPE − OPD Avg@k difference in points, for the top of the results page.
power = report.save_power(verdict.paired_difference(avg["scope"], avg["opd"]), metric=A,
                          reference_mean=float(sum(avg["opd"].values()) / len(avg["opd"])), paper_relative=5.54,
                          figures_dir=ctx.figures_dir)
ctx.show_claims("table1_main_results", lines)
display(Markdown(report.power_text(power)))  # the results page prints it under the rule
