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
# # 03 · Eq. 4 and 5: DPAW weights on real rollouts
#
# SCOPE routes each rollout of a group by its reward and weights it within its path:
#
# - Eq. 4, correct path: `w_S_i = PPL_S(y_i)^(1/tau) / sum_j PPL_S(y_j)^(1/tau)` with the
#   student's own (`pi_old`) perplexity, so correct rollouts the student found *hard* weigh more;
# - Eq. 5, incorrect path: `w_T_i = PPL_T(y_i)^(-1/tau) / sum_j PPL_T(y_j)^(-1/tau)` with the
#   teacher's perplexity, so failures the teacher finds *plausible* (recoverable, notebook 02)
#   weigh more.
#
# This notebook samples groups of `G` rollouts from the base student on training prompts (the
# batch SCOPE weights at its first step), grades them, scores the incorrect ones with the
# teacher, and computes the weights with `scope_lib.weights` at several `tau`. It also puts the
# paper's student direction next to the authors' released scripts, which use the reversed
# sign `PPL_S^(-1/tau)`.
#
# Nothing here is a claim of the paper's results: the verdict lines at the end are **checks**
# that the weights `scope_lib.weights` returns have the properties Eq. 4-5 prescribe (order in
# PPL, sharpening with a smaller tau, the released sign reversing Eq. 4), measured on real
# rollouts of the configured world.

# %% tags=["parameters"]
SCALE = "tiny"  # "tiny" (CPU, minutes), "smol", or "paper" (expects GPUs and the HF hub)
SMOKE = False  # True: a seconds-sized run on the smoke world (the tests use it)
SEED = 0  # rollout sampling
NUM_PROMPTS = 256  # training prompts, one group each
GROUP_SIZE = 8  # G rollouts per prompt (Table 3)
TAUS = [0.5, 1.0, 2.0]  # weight temperatures (Fig. 6)
INTERACTIVE = False  # True: an ipywidgets slider over groups (needs a live Jupyter frontend)
SHOW_GROUPS = 3  # groups printed in the static view
FIGURES_DIR = "figures"  # relative to the repository root

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display

from scope_lib import plotting
from scope_lib.experiments import experiment_config
from scope_lib.rollout import generate_rollouts
from scope_lib.teacher import LocalTeacher
from scope_lib.verify import grade_batch
from scope_lib.weights import sequence_logp, student_weights, teacher_weights, weight_stats
from scope_lib.world import load_world

# Derived values (papermill does not recompute them, so they live here, not above).
num_prompts = 6 if SMOKE else NUM_PROMPTS
group_size = min(GROUP_SIZE, 4) if SMOKE else GROUP_SIZE
taus = [float(t) for t in TAUS]
tau_ref = 1.0 if 1.0 in taus else taus[len(taus) // 2]  # the paper's default, for single-tau views
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
TAU_COLORS = dict(zip(taus, plt.cm.plasma(np.linspace(0.1, 0.8, len(taus)))))

# %% [markdown]
# ## Rollouts, rewards, perplexities
# Sampled with the training rollout settings of the config (`rollout.*`), as the trainer does;
# `PPL_S` from the student's log-probs of its own rollouts, `PPL_T` from the teacher's, scored
# only on the incorrect rows (the trainer scores nothing else for SCOPE).

# %%
world = load_world(cfg)
world.student.to(device)
world.teacher.to(device)
problems = world.train_problems[:num_prompts]
batch = generate_rollouts(
    world.student, world.tokenizer, [world.format_prompt(p) for p in problems], num_samples=group_size,
    temperature=cfg.rollout.temperature, top_p=cfg.rollout.top_p, top_k=cfg.rollout.top_k,
    max_new_tokens=cfg.rollout.max_new_tokens, batch_size=cfg.rollout.batch_size, seed=SEED,
)
group = batch.group
correct = torch.tensor(grade_batch(batch.texts, [problems[int(g)].answer for g in group]), dtype=torch.bool)
student_s = sequence_logp(LocalTeacher(world.student).score(batch.input_ids, batch.attention_mask), batch.response_mask)
teacher_s = torch.full_like(student_s, float("nan"))  # NaN on correct rows: never read by Eq. 5
wrong = (~correct).nonzero().squeeze(-1)
if len(wrong):
    teacher_s[wrong] = sequence_logp(
        LocalTeacher(world.teacher).score(batch.input_ids[wrong], batch.attention_mask[wrong]), batch.response_mask[wrong]
    )

rollouts = pd.DataFrame({
    "group": group.numpy(), "correct": correct.numpy(), "text": batch.texts,
    "ppl_student": torch.exp(-student_s).numpy(), "ppl_teacher": torch.exp(-teacher_s).numpy(),
})
rollouts["path_size"] = rollouts.groupby(["group", "correct"])["group"].transform("size")
for tau in taus:
    rollouts[f"w_S tau={tau:g}"] = student_weights(student_s, correct, group, tau).numpy()
    rollouts[f"w_T tau={tau:g}"] = teacher_weights(teacher_s, correct, group, tau).numpy()
    rollouts[f"w_S released tau={tau:g}"] = student_weights(student_s, correct, group, tau, direction="reversed").numpy()

per_group = rollouts.groupby("group")["correct"].agg(["sum", "size"])
mixed = int(((per_group["sum"] > 0) & (per_group["sum"] < per_group["size"])).sum())
display(Markdown(
    f"**{world.description}** — {num_prompts} prompts × G = {group_size}: {len(rollouts)} rollouts, "
    f"accuracy {rollouts['correct'].mean():.1%}. {mixed} groups have both paths; "
    f"{int((per_group['sum'] >= 2).sum())} have ≥ 2 correct rollouts (where Eq. 4 can differ from uniform) and "
    f"{int((per_group['size'] - per_group['sum'] >= 2).sum())} have ≥ 2 incorrect ones (Eq. 5)."
))

# %% [markdown]
# ## Weight statistics per tau (table `eq45_weight_stats`)
# Over the groups with ≥ 2 rollouts on the path (a lone member always gets weight 1):
# `max`: the largest weight; `max_rel`: the largest `w · n` (1 = uniform); `ess_frac`:
# effective sample size `(sum w)^2 / sum w^2` over the path's size, averaged over groups
# (1 = uniform, 1/n = all weight on one rollout); `entropy`: weight entropy over `log(n)`;
# `log_ppl_spread`: the mean within-group standard deviation of `log PPL` on the path, the
# spread the softmax has to work with.

# %%
shared = torch.tensor(rollouts["path_size"].to_numpy() >= 2)
stat_rows = []
for tau in taus:
    for path, column, on_path, ppl in (("student (Eq. 4, paper)", f"w_S tau={tau:g}", correct, "ppl_student"),
                                       ("student (released sign)", f"w_S released tau={tau:g}", correct, "ppl_student"),
                                       ("teacher (Eq. 5)", f"w_T tau={tau:g}", ~correct, "ppl_teacher")):
        rows = on_path & shared
        stats = weight_stats(torch.tensor(rollouts[column].to_numpy()), rows, group)
        members = rollouts[rows.numpy()]
        rel = members[column] * members["path_size"]
        spread = np.log(members[ppl]).groupby(members["group"]).std(ddof=0).mean()
        stat_rows.append({"tau": tau, "path": path, **stats, "max_rel": rel.max() if len(rel) else np.nan,
                          "log_ppl_spread": spread})
weight_table = pd.DataFrame(stat_rows).set_index(["tau", "path"])
plotting.save_table(weight_table, "eq45_weight_stats", figures_dir=FIGURES_DIR)
display(weight_table)

# %%
ess = weight_table["ess_frac"].unstack("path")
sharpening = {path: bool(np.all(np.diff(ess[path].to_numpy()) > 0)) for path in ess.columns}
display(Markdown(
    f"**Weight statistics** ({scale_label}). The ESS fraction of the student path (Eq. 4) is "
    + ", ".join(f"{ess.iloc[i, ess.columns.get_loc('student (Eq. 4, paper)')]:.3f} at tau = {t:g}" for i, t in enumerate(ess.index))
    + "; of the teacher path (Eq. 5) "
    + ", ".join(f"{ess.iloc[i, ess.columns.get_loc('teacher (Eq. 5)')]:.3f} at tau = {t:g}" for i, t in enumerate(ess.index))
    + ". Appendix C.2 says a smaller tau sharpens the weights and a larger one flattens them towards OPD's "
    f"uniform weighting: the ESS rises with tau on the student path: **{sharpening['student (Eq. 4, paper)']}**, "
    f"on the teacher path: **{sharpening['teacher (Eq. 5)']}**. At tau = {taus[0]:g} the largest weight is "
    f"{weight_table.loc[(taus[0], 'student (Eq. 4, paper)'), 'max_rel']:.2f}× uniform on the student path and "
    f"{weight_table.loc[(taus[0], 'teacher (Eq. 5)'), 'max_rel']:.2f}× on the teacher path. How far the weights "
    f"move from uniform is set by the within-group spread of log PPL: "
    f"{weight_table.loc[(tau_ref, 'student (Eq. 4, paper)'), 'log_ppl_spread']:.3f} for the student's PPL of "
    f"correct rollouts, {weight_table.loc[(tau_ref, 'teacher (Eq. 5)'), 'log_ppl_spread']:.3f} for the teacher's "
    "PPL of incorrect ones."
))

# %% [markdown]
# ## Eq. 4/5 weight distributions (generates and saves `eq45_dpaw_weights`)
# Weights are shown times the path size `n` (`w · n`, 1 = uniform): the per-path sum-to-one
# weights of groups with different path sizes become comparable, and `w · n` is exactly the
# released code's mean-one normalisation. The scatter plots use groups with ≥ 2 members on the
# path, against each rollout's PPL relative to the geometric mean of its path, where
# Eq. 4/5 predict `w · n ≈ (relative PPL)^(±1/tau)` (dashed).

# %%
def log_axes_if_wide(ax, x: pd.Series, y: pd.Series) -> None:
    """Log axes when the data span more than 3x (power laws are lines there); a narrower span
    stays linear, where log ticks would crowd into unreadable labels."""
    for axis, values in (("x", x), ("y", y)):
        if len(values) and values.min() > 0 and values.max() / values.min() > 3:
            getattr(ax, f"set_{axis}scale")("log")


def relative_ppl(frame: pd.DataFrame, column: str) -> pd.Series:
    """PPL over the geometric mean PPL of the rollout's path in its group."""
    log_ppl = np.log(frame[column])
    return np.exp(log_ppl - log_ppl.groupby(frame["group"]).transform("mean"))


on_student = rollouts[rollouts["correct"]].copy()
on_teacher = rollouts[~rollouts["correct"]].copy()
on_student["rel_ppl"] = relative_ppl(on_student, "ppl_student")
on_teacher["rel_ppl"] = relative_ppl(on_teacher, "ppl_teacher")

fig, axes = plt.subplots(2, 2, figsize=(11, 8))
for col, (frame, prefix, title, sign) in enumerate((
    (on_student, "w_S", "Eq. 4: correct path, student PPL", +1),
    (on_teacher, "w_T", "Eq. 5: incorrect path, teacher PPL", -1),
)):
    multi = frame[frame["path_size"] >= 2]
    for tau in taus:
        scaled = multi[f"{prefix} tau={tau:g}"] * multi["path_size"]
        if len(scaled):
            axes[0, col].hist(scaled, bins=30, histtype="step", linewidth=1.8, color=TAU_COLORS[tau], label=f"tau = {tau:g}")
            axes[1, col].scatter(multi["rel_ppl"], scaled, s=9, alpha=0.5, color=TAU_COLORS[tau], label=f"tau = {tau:g}")
            grid = np.geomspace(max(multi["rel_ppl"].min(), 1e-3), multi["rel_ppl"].max() + 1e-9, 50)
            axes[1, col].plot(grid, grid ** (sign / tau), "--", color=TAU_COLORS[tau], linewidth=1)
    axes[0, col].axvline(1.0, color="grey", linestyle=":", linewidth=1)
    axes[0, col].set(title=title, xlabel="weight × path size (1 = uniform)", ylabel="rollouts")
    axes[1, col].set(xlabel="PPL / geometric mean PPL of the path", ylabel="weight × path size")
    if len(multi):
        scaled_all = pd.concat([multi[f"{prefix} tau={tau:g}"] * multi["path_size"] for tau in taus])
        log_axes_if_wide(axes[1, col], multi["rel_ppl"], scaled_all)
        axes[0, col].legend()
    else:
        for ax in axes[:, col]:
            ax.text(0.5, 0.5, "no group has ≥ 2 rollouts on this path", ha="center", transform=ax.transAxes)
fig.suptitle(f"DPAW weights on base-student rollouts ({scale_label}, G = {group_size})")
fig.tight_layout()
plotting.savefig(fig, "eq45_dpaw_weights", figures_dir=FIGURES_DIR)
plt.show()


# %%
def concordance(frame: pd.DataFrame, weight: str, ppl: str) -> float:
    """Share of within-group pairs whose weights are ordered like their PPLs (1: increasing,
    0: decreasing); pairs with equal PPL are skipped. NaN without any pair."""
    agree = total = 0
    for _, members in frame.groupby("group"):
        w, p = members[weight].to_numpy(), members[ppl].to_numpy()
        i, j = np.triu_indices(len(w), k=1)
        keep = p[i] != p[j]
        agree += int((np.sign(w[i] - w[j]) == np.sign(p[i] - p[j]))[keep].sum())
        total += int(keep.sum())
    return agree / total if total else float("nan")


conc = pd.DataFrame({
    "student path, Eq. 4": {tau: concordance(on_student, f"w_S tau={tau:g}", "ppl_student") for tau in taus},
    "teacher path, Eq. 5": {tau: concordance(on_teacher, f"w_T tau={tau:g}", "ppl_teacher") for tau in taus},
})
conc.index.name = "tau"
display(conc)
display(Markdown(
    f"**Eq. 4/5 weights** ({scale_label}). Of the within-group pairs of rollouts with different PPL, the student "
    f"weight is ordered like the student's PPL in {conc['student path, Eq. 4'].min():.1%} (lowest over tau) and "
    f"the teacher weight is ordered like the teacher's PPL in {conc['teacher path, Eq. 5'].max():.1%} (highest "
    "over tau): the increasing (Eq. 4) and decreasing (Eq. 5) relations the paper prescribes, checked on the "
    "weights `scope_lib.weights` returned. In the scatter plots the points follow the dashed "
    "`(relative PPL)^(±1/tau)` curves up to the group's normalisation."
))

# %% [markdown]
# ## The paper's student direction vs the released code's (generates and saves `eq4_student_direction_paper_vs_released`)
# Same groups, same tau; left `PPL_S^(+1/tau)` (paper, Eq. 4), right `PPL_S^(-1/tau)` (the
# authors' shipped scripts). Lines join the rollouts of the six groups with the most distinct
# correct solutions.

# %%
multi_s = on_student[on_student["path_size"] >= 2]
distinct = multi_s.groupby("group")["text"].nunique()
examples = distinct.sort_values(ascending=False, kind="stable").index[:6].tolist()  # the most varied groups
fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
for ax, column, title in ((axes[0], f"w_S tau={tau_ref:g}", "paper: PPL_S^(+1/tau)"),
                          (axes[1], f"w_S released tau={tau_ref:g}", "released code: PPL_S^(-1/tau)")):
    ax.scatter(multi_s["rel_ppl"], multi_s[column] * multi_s["path_size"], s=9, alpha=0.35, color="grey")
    for g in examples:
        members = multi_s[multi_s["group"] == g].sort_values("rel_ppl")
        ax.plot(members["rel_ppl"], members[column] * members["path_size"], "o-", markersize=4, linewidth=1.2)
    ax.axhline(1.0, color="black", linestyle=":", linewidth=1)
    ax.set(title=title, xlabel="student PPL / geometric mean PPL of the correct path")
    if len(multi_s):
        log_axes_if_wide(ax, multi_s["rel_ppl"], multi_s[column] * multi_s["path_size"])
    else:
        ax.text(0.5, 0.5, "no group has ≥ 2 correct rollouts", ha="center", transform=ax.transAxes)
axes[0].set_ylabel("student weight × path size (1 = uniform)")
fig.suptitle(f"Eq. 4 student-guided weight, tau = {tau_ref:g}: paper vs released sign ({scale_label})")
fig.tight_layout()
plotting.savefig(fig, "eq4_student_direction_paper_vs_released", figures_dir=FIGURES_DIR)
plt.show()

# %%
hardest = multi_s.loc[multi_s.groupby("group")["ppl_student"].idxmax()]
share_paper = hardest[f"w_S tau={tau_ref:g}"].mean()
share_released = hardest[f"w_S released tau={tau_ref:g}"].mean()
share_uniform = (1.0 / hardest["path_size"]).mean()
display(Markdown(
    f"**Paper vs released student direction** ({scale_label}, tau = {tau_ref:g}, {len(hardest)} groups with "
    f"≥ 2 correct rollouts). The correct rollout the student found hardest (highest PPL_S) gets on average "
    f"{share_paper:.3f} of its group's correct-path weight under the paper's Eq. 4 "
    f"({100 * (share_paper / share_uniform - 1):+.1f} % relative to uniform), {share_released:.3f} under the "
    f"released sign ({100 * (share_released / share_uniform - 1):+.1f} %), and {share_uniform:.3f} under uniform "
    f"weighting. So the paper's direction {'up-weights' if share_paper > share_uniform else 'does not up-weight'} "
    f"the capability-boundary rollouts it argues for and the released sign "
    f"{'down-weights' if share_released < share_uniform else 'does not down-weight'} them, reinforcing what the "
    f"student already does confidently. The size of the effect follows the spread of PPL_S within a group: here "
    f"{(distinct == 1).mean():.0%} of these groups have a single distinct correct text (identical solutions, "
    f"equal PPL, uniform weights), so the two directions differ "
    f"{'only slightly' if abs(share_paper - share_released) < 0.05 * share_uniform else 'clearly'} on this task. "
    "The teacher path (Eq. 5) has the same sign in the paper and the released code."
))

# %% [markdown]
# ## Inspect groups
# With `INTERACTIVE = True` in a live notebook a slider steps through the groups; executed
# headlessly (papermill, the tests) the first `SHOW_GROUPS` groups are printed instead.

# %%
view_columns = ["correct", "ppl_student", "ppl_teacher", f"w_S tau={tau_ref:g}", f"w_S released tau={tau_ref:g}",
                f"w_T tau={tau_ref:g}", "text"]


def group_view(group_id: int) -> pd.DataFrame:
    members = rollouts[rollouts["group"] == group_id][view_columns].copy()
    members["text"] = members["text"].str.replace("\n", " / ", regex=False)
    return members.round(3)


group_ids = sorted(rollouts["group"].unique())
if INTERACTIVE:
    import ipywidgets as widgets

    slider = widgets.IntSlider(min=0, max=len(group_ids) - 1, value=0, description="group")

    def show(index: int) -> None:
        g = group_ids[index]
        display(Markdown(f"**{problems[g].question}** (gold {problems[g].answer})"), group_view(g))

    display(widgets.interactive(show, index=slider))
else:
    for g in group_ids[:SHOW_GROUPS]:
        display(Markdown(f"**group {g}: {problems[g].question}** (gold {problems[g].answer})"), group_view(g))

# %% [markdown]
# ## Checks (saved for the results page, `figures/README.md`)

# %%
from scope_lib import report

monotone_known = bool(conc.notna().all().all())
# Without spread in PPL (identical rollouts: ESS 1 at every tau, equal shares) there is nothing to check.
ess_spread = bool(ess.notna().all().all() and (ess < 1.0 - 1e-12).any().all())
direction_spread = not pd.isna(share_paper) and abs(share_paper - share_released) > 1e-12
report.show_claims("eq45_dpaw_weights", [
    f"Scale `{scale_label}`: {len(rollouts)} base-student rollouts, {num_prompts} groups of G = {group_size}. "
    f"At tau = {tau_ref:g} the ESS fraction is {ess.loc[tau_ref, 'student (Eq. 4, paper)']:.3f} on the student path "
    f"and {ess.loc[tau_ref, 'teacher (Eq. 5)']:.3f} on the teacher path (1 = uniform weights).",
    report.check(
        "Eq. 4 weights grow with the student's PPL and Eq. 5 weights shrink with the teacher's PPL within each group",
        bool(conc["student path, Eq. 4"].min() == 1.0 and conc["teacher path, Eq. 5"].max() == 0.0) if monotone_known else None,
        f"concordant pairs: student {conc['student path, Eq. 4'].min():.1%}, teacher {1 - conc['teacher path, Eq. 5'].max():.1%} (reversed)"
        if monotone_known else "no group has two rollouts with different PPL on both paths",
    ),
    report.check(
        "a smaller tau sharpens the weights and a larger tau flattens them towards uniform (ESS fraction rises with tau)",
        bool(all(sharpening.values())) if ess_spread else None,
        "ESS fraction, student path: " + ", ".join(f"{v:.3f} at tau = {t:g}" for t, v in ess["student (Eq. 4, paper)"].items())
        + "; teacher path: " + ", ".join(f"{v:.3f} at tau = {t:g}" for t, v in ess["teacher (Eq. 5)"].items()),
    ),
    report.check(
        "the released code's student sign reverses Eq. 4: the hardest correct rollout gets more than uniform weight "
        "under Eq. 4 and less under the released sign",
        bool(share_paper > share_uniform > share_released) if direction_spread else None,
        f"its weight share at tau = {tau_ref:g}: paper {share_paper:.3f}, released {share_released:.3f}, "
        f"uniform {share_uniform:.3f}",
    ),
], figures_dir=FIGURES_DIR)
