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
# # 00 · Setup: the tiny world
#
# Loads the `tiny` scale's tokenizer, teacher and student — Llama causal LMs pretrained by the
# project on a synthetic verifiable math task — and measures them with the evaluator at the
# paper's evaluation settings scaled down (k samples, temperature 0.6): accuracy per held-out
# difficulty tier. The default world is the route world (`scope_lib.worlds.routes`): it is shipped in
# `worlds/tiny_routes/` and checked against its SHA-256 manifest on load, so every CPU runs the
# same weights; nothing is built here (`python -m scope_lib.worlds.rebuild tiny_routes` rebuilds
# it from nothing). Its teacher re-derives: after its worked lines it writes `Start with S.` and
# works the problem again, which is how it repairs a student's flawed prefix. The world's
# preconditions record (`data/world_tiny_routes/`), measured on the base student before any
# method ran, is shown at the end. Every later notebook starts from these models. (The chain
# world of the first runs is the scale `tiny_chain`, built at run time on the CPU at hand.)

# %% [markdown]
# The committed results, shown before anything runs

# %%
from scope_lib.notebook import nb

nb.show_committed("00_setup_tiny_world")

# %% tags=["parameters"]
SCALE = "tiny"  # smoke: "tiny_routes_smoke"
SMOKE = False  # True: a seconds-sized run; each parameter left at its default takes its smoke value
EVAL_K = 16  # smoke: 4
FIGURES_DIR = "figures"

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display

from scope_lib.notebook import nb
from scope_lib.evaluate import evaluate
from scope_lib.experiments.grid import experiment_config
from scope_lib.common.plotting import display_name, legend_outside, markdown_table, method_palette
from scope_lib.rollout import Sampling
from scope_lib.world import WorldSpec, load_world

ctx = nb.setup("00_setup_tiny_world", globals())
cfg = experiment_config(SCALE, "scope", 0, **{"eval.k": EVAL_K})
start = time.time()
world = load_world(WorldSpec.from_config(cfg))
print(f"{world.description}: loaded in {time.time() - start:.1f} s"
      + (" (every file matched worlds/tiny_routes/MANIFEST.sha256)" if cfg.model.student == "tiny_routes" else ""))
sizes = {name: sum(p.numel() for p in model.parameters()) for name, model in (("teacher", world.teacher), ("student", world.student))}
example = world.train_problems[0]
print(f"teacher {sizes['teacher'] / 1e6:.2f}M params, student {sizes['student'] / 1e6:.2f}M params, vocabulary {len(world.tokenizer)}")
print("--- an example prompt and its ground-truth solution ---")
print(world.format_prompt(example) + (example.solution or ""))

# %% [markdown]
# ## Generates and saves the calibration table and figure

# %%
e = cfg.eval
results = {name: evaluate(model, world.tokenizer, world.eval_sets, k=e.k, sampling=Sampling.from_config(e),
                          format_prompt=world.format_prompt, seed=e.seed, progress=False)
           for name, model in (("teacher", world.teacher), ("student", world.student))}
rows = []
for name, result in results.items():
    for eval_set, row in result.summary().items():
        rows.append({"model": name, "eval_set": eval_set, f"avg@{e.k}": row[f"avg@{e.k}"], f"pass@{e.k}": row[f"pass@{e.k}"]})
calibration = pd.DataFrame(rows)
ctx.save_table(calibration, "nb00_calibration")
display(Markdown(markdown_table(calibration.assign(model=calibration.model.map(display_name)), index=False)))

# Bars: Avg@k from 0; a dash on each bar: Pass@k of the same model, in the model's colour. One legend outside the axes.
sets = list(world.eval_sets)
tiers = calibration[calibration.eval_set.isin(sets)].assign(avg=lambda d: 100 * d[f"avg@{e.k}"],
                                                           top=lambda d: 100 * d[f"pass@{e.k}"],
                                                           who=lambda d: d.model.map(display_name))
palette = method_palette(["teacher", "base"])  # the base student is the "student" of this table
fig, ax = plt.subplots(figsize=(7, 3.5))
sns.barplot(tiers, x="eval_set", y="avg", hue="who", hue_order=list(palette), order=sets, palette=palette, ax=ax,
            alpha=0.5, legend=False)
sns.stripplot(tiers, x="eval_set", y="top", hue="who", hue_order=list(palette), order=sets, palette=palette, ax=ax,
              dodge=True, jitter=False, marker="_", size=22, linewidth=2.5, legend=False)
handles, labels = [], []
for who, color in palette.items():
    handles += [plt.Rectangle((0, 0), 1, 1, facecolor=color, alpha=0.5),
                plt.Line2D([], [], color=color, marker="_", markersize=14, markeredgewidth=2.5, linestyle="none")]
    labels += [f"{who} Avg@{e.k} (bar)", f"{who} Pass@{e.k} (dash)"]
ax.set(xlabel="eval set (difficulty tier)", ylabel="accuracy (%)", ylim=(0, 102),
       title=f"Accuracy per tier ({ctx.scale_label}, k = {e.k}, temperature {e.temperature})")
legend_outside(ax, handles, labels)
ctx.savefig(fig, "nb00_calibration", caption=f"Bars: Avg@{e.k} per difficulty tier (one evaluation of each model); "
            f"dashes: Pass@{e.k} of the same model.");

# %% [markdown]
# ## Accuracy by problem kind, and the world's preconditions
#
# On the route task a problem is `both` (either written route stays in 0..99),
# `subfirst_only` (the in-order route passes 99, a value the student never wrote) or
# `inorder_only`. The preconditions record is regenerated by
# `python -m scope_lib.studies.preconditions tiny_routes --out data/world_tiny_routes`.

# %%
from pathlib import Path

import scope_lib

kinds = {p.id: p.meta.get("kind") for problems in world.eval_sets.values() for p in problems}
if any(kinds.values()):
    by_kind = []
    for name, result in results.items():
        correct = result.correct  # (problems, k) per eval set
        for eval_set, problems in world.eval_sets.items():
            for problem, row in zip(problems, correct[eval_set]):
                by_kind.append({"model": name, "kind": kinds[problem.id], "avg": float(np.mean(row))})
    kind_table = pd.DataFrame(by_kind).groupby(["kind", "model"])["avg"].mean().unstack("model")
    ctx.save_table(kind_table, "nb00_accuracy_by_kind")
    display(Markdown(f"**Avg@{e.k} by problem kind**\n\n" + markdown_table(kind_table.rename(columns=display_name))))
record = Path(scope_lib.__file__).resolve().parents[1] / "data" / f"world_{cfg.model.student}" / "preconditions.md"
if record.exists():  # the smoke world has none
    display(Markdown(record.read_text()))

# %%
avg = calibration[calibration.eval_set == "average"].set_index("model")
student_tiers = calibration[(calibration.model == "student") & calibration.eval_set.isin(sets)][f"avg@{e.k}"].to_numpy()
ctx.show_claims("nb00_calibration", [
    f"Scale `{ctx.scale_label}`: teacher Avg@{e.k} {100 * avg.loc['teacher', f'avg@{e.k}']:.1f}%, "
    f"base student Avg@{e.k} {100 * avg.loc['student', f'avg@{e.k}']:.1f}% (Pass@{e.k} {100 * avg.loc['student', f'pass@{e.k}']:.1f}%).",
    f"- The student's accuracy {'falls' if np.all(np.diff(student_tiers) <= 0) else 'does not fall monotonically'} with difficulty: "
    + ", ".join(f"{s} {100 * a:.1f}%" for s, a in zip(sets, student_tiers)) + ".",
    f"- Headroom for distillation: the teacher is {100 * (avg.loc['teacher', f'avg@{e.k}'] - avg.loc['student', f'avg@{e.k}']):.1f} points ahead on average.",
]);
