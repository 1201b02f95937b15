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
# # 00 · Setup: the tiny world
#
# Builds (or loads from the cache) the `tiny` scale's tokenizer, teacher and student — Llama
# causal LMs pretrained by the project on a synthetic arithmetic-chain task — and measures
# them with the evaluator at the paper's evaluation settings scaled down (k samples,
# temperature 0.6): accuracy per held-out difficulty tier. Every later notebook starts from
# these models.

# %% tags=["parameters"]
SCALE = "tiny"
SMOKE = False
EVAL_K = 16
FIGURES_DIR = "figures"

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from scope_lib import report
from scope_lib.evaluate import evaluate
from scope_lib.experiments import experiment_config
from scope_lib.plotting import METHOD_COLORS, save_table, savefig, use_style
from scope_lib.world import load_world

use_style()
eval_k = 4 if SMOKE else EVAL_K
cfg = experiment_config(SCALE, "scope", 0, smoke=SMOKE, **{"eval.k": eval_k})
start = time.time()
world = load_world(cfg)
print(f"{world.description}: loaded or built in {time.time() - start:.1f} s")
sizes = {name: sum(p.numel() for p in model.parameters()) for name, model in (("teacher", world.teacher), ("student", world.student))}
example = world.train_problems[0]
print(f"teacher {sizes['teacher'] / 1e6:.2f}M params, student {sizes['student'] / 1e6:.2f}M params, vocabulary {len(world.tokenizer)}")
print("--- an example prompt and its ground-truth solution ---")
print(world.format_prompt(example) + (example.solution or ""))

# %% [markdown]
# ## Generates and saves the calibration table and figure

# %%
e = cfg.eval
results = {name: evaluate(model, world.tokenizer, world.eval_sets, k=e.k, format_prompt=world.format_prompt,
                          temperature=e.temperature, top_p=e.top_p, top_k=e.top_k, max_new_tokens=e.max_new_tokens,
                          batch_size=e.batch_size, seed=e.seed, progress=False)
           for name, model in (("teacher", world.teacher), ("student", world.student))}
rows = []
for name, result in results.items():
    for eval_set, row in result.summary().items():
        rows.append({"model": name, "eval_set": eval_set, f"avg@{e.k}": row[f"avg@{e.k}"], f"pass@{e.k}": row[f"pass@{e.k}"]})
calibration = pd.DataFrame(rows)
save_table(calibration, "nb00_calibration", figures_dir=FIGURES_DIR)
display(Markdown(calibration.to_markdown(index=False, floatfmt=".3f")))

sets = list(world.eval_sets)
fig, ax = plt.subplots(figsize=(7, 3.5))
x = np.arange(len(sets))
for offset, (name, color) in zip((-0.2, 0.2), (("teacher", "black"), ("student", METHOD_COLORS["base"]))):
    part = calibration[(calibration.model == name) & calibration.eval_set.isin(sets)]
    ax.bar(x + offset, 100 * part[f"avg@{e.k}"], width=0.4, color=color, label=f"{name} Avg@{e.k}")
    ax.scatter(x + offset, 100 * part[f"pass@{e.k}"], color=color, marker="_", s=400, label=f"{name} Pass@{e.k}")
ax.set_xticks(x, sets)
ax.set(ylabel="%", title=f"Tiny world calibration (k={e.k}, temperature {e.temperature})")
ax.legend(fontsize=8)
fig.tight_layout()
savefig(fig, "nb00_calibration", figures_dir=FIGURES_DIR)

# %%
avg = calibration[calibration.eval_set == "average"].set_index("model")
student_tiers = calibration[(calibration.model == "student") & calibration.eval_set.isin(sets)][f"avg@{e.k}"].to_numpy()
report.show_claims("nb00_calibration", [
    f"Scale `{SCALE}`{' (smoke)' if SMOKE else ''}: teacher Avg@{e.k} {100 * avg.loc['teacher', f'avg@{e.k}']:.1f}%, "
    f"base student Avg@{e.k} {100 * avg.loc['student', f'avg@{e.k}']:.1f}% (Pass@{e.k} {100 * avg.loc['student', f'pass@{e.k}']:.1f}%).",
    f"- The student's accuracy {'falls' if np.all(np.diff(student_tiers) <= 0) else 'does not fall monotonically'} with difficulty: "
    + ", ".join(f"{s} {100 * a:.1f}%" for s, a in zip(sets, student_tiers)) + ".",
    f"- Headroom for distillation: the teacher is {100 * (avg.loc['teacher', f'avg@{e.k}'] - avg.loc['student', f'avg@{e.k}']):.1f} points ahead on average.",
], figures_dir=FIGURES_DIR)
