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
# # 04 · Table 1: main results
#
# Base student, GRPO, KD, OPD and SCOPE, each trained with several seeds, evaluated with
# k samples per problem on every held-out eval set: Avg@k and Pass@k, mean and 95% confidence
# interval over seeds, and the relative change versus OPD (the paper's headline comparison).
# The runs land in the run registry (`runs/`), so notebooks 05-08 reuse them.

# %% tags=["parameters"]
SCALE = "tiny"
SMOKE = False
SEEDS = [0, 1, 2]
METHODS = ["grpo", "kd", "opd", "scope"]
EVAL_K = 16
FIGURES_DIR = "figures"

# %%
from IPython.display import Markdown, display

from scope_lib import report
from scope_lib.experiments import run_grid
from scope_lib.plotting import save_table

seeds = SEEDS[:1] if SMOKE else SEEDS
eval_k = 4 if SMOKE else EVAL_K
df, results = run_grid(SCALE, METHODS, seeds, smoke=SMOKE, **{"eval.k": eval_k})
summary = report.seed_summary(df)
sets = [s for s in df.eval_set.unique() if s != "average"] + ["average"]
order = ["base"] + METHODS
print(f"scale={SCALE} smoke={SMOKE} seeds={seeds} k={eval_k}")

# %% [markdown]
# ## Generates and saves Table 1

# %%
avg_table = report.wide_table(summary, "avg@k", order, sets)
pass_table = report.wide_table(summary, "pass@k", order, sets)
relative = report.relative_change(summary, "avg@k").reindex(order)
avg_table["Δ vs OPD (avg, %)"] = [f"{v:+.1f}" for v in relative]
save_table(avg_table, "table1_main_results_avg", figures_dir=FIGURES_DIR)
save_table(pass_table, "table1_main_results_pass", figures_dir=FIGURES_DIR)
save_table(summary, "table1_main_results_long", figures_dir=FIGURES_DIR)
display(Markdown(f"**Avg@{eval_k}** (%, mean ± 95% CI over {len(seeds)} seed(s))\n\n" + avg_table.to_markdown()))
display(Markdown(f"**Pass@{eval_k}** (%)\n\n" + pass_table.to_markdown()))

# %%
avg = summary[summary.eval_set == "average"].set_index("variant")
def cell(variant, metric):
    return float(avg.loc[variant, metric]), float(avg.loc[variant, f"{metric}_ci"])
lines = [f"Scale `{SCALE}`{' (smoke)' if SMOKE else ''}, {len(seeds)} seed(s), k = {eval_k}."]
for metric in ("avg@k", "pass@k"):
    best = avg[metric].drop("base").idxmax()
    lines.append(f"- Best {metric.replace('k', str(eval_k))} on average: **{best}** ({100 * avg.loc[best, metric]:.1f}%).")
lines.append(report.claim(
    "SCOPE has the best Avg@k, above OPD", report.separated(cell("scope", "avg@k"), cell("opd", "avg@k")),
    f"SCOPE {100 * cell('scope', 'avg@k')[0]:.1f} ± {100 * cell('scope', 'avg@k')[1]:.1f} vs OPD "
    f"{100 * cell('opd', 'avg@k')[0]:.1f} ± {100 * cell('opd', 'avg@k')[1]:.1f}; relative change {relative['scope']:+.1f}%"))
lines.append(report.claim(
    "SCOPE keeps Pass@k at least at the base student's level while GRPO lowers it",
    report.separated(cell("scope", "pass@k"), cell("grpo", "pass@k")),
    f"Pass@{eval_k}: base {100 * cell('base', 'pass@k')[0]:.1f}, GRPO {100 * cell('grpo', 'pass@k')[0]:.1f}, "
    f"OPD {100 * cell('opd', 'pass@k')[0]:.1f}, SCOPE {100 * cell('scope', 'pass@k')[0]:.1f}"))
report.show_claims("table1_main_results", lines, figures_dir=FIGURES_DIR)
