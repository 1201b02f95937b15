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
# sign `PPL_S^(-1/tau)`. The steps, tables and figures live in `scope_lib.studies.dpaw`, the
# checks in `scope_lib.notebook.claims`, the captions in `notebooks/captions/03_eq45_dpaw_weights.md`;
# this notebook runs them and shows the artefacts.
#
# Nothing here is a claim of the paper's results: the verdict lines at the end are **checks**
# that the weights `scope_lib.weights` returns have the properties Eq. 4-5 prescribe (order in
# PPL, sharpening with a smaller tau, the released sign reversing Eq. 4), measured on real
# rollouts of the configured world.

# %% [markdown]
# The committed results, shown before anything runs

# %%
from scope_lib.notebook import nb

nb.show_committed("03_eq45_dpaw_weights")

# %% tags=["parameters"]
SCALE = "tiny"  # smoke: "tiny_routes_smoke"; "tiny" (CPU, minutes), "smol", or "paper" (expects GPUs and the HF hub)
SMOKE = False  # True: a seconds-sized run; each parameter left at its default takes its smoke value
SEED = 0  # rollout sampling
NUM_PROMPTS = 256  # smoke: 6; training prompts, one group each
GROUP_SIZE = 8  # smoke: 4; G rollouts per prompt (Table 3)
TAUS = [0.5, 1.0, 2.0]  # weight temperatures (Fig. 6)
INTERACTIVE = False  # True: an ipywidgets slider over groups (needs a live Jupyter frontend)
SHOW_GROUPS = 3  # groups printed in the static view (those with the most concentrated Eq. 4 weights)
FIGURES_DIR = "figures"  # relative to the repository root

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from scope_lib.studies import dpaw as dpaw_analysis
from scope_lib.notebook import nb, claims as study_claims
from scope_lib.studies.dpaw import STUDENT, weight_column
from scope_lib.experiments.grid import experiment_config
from scope_lib.world import WorldSpec, load_world

ctx = nb.setup("03_eq45_dpaw_weights", globals())
# Derived values (papermill does not recompute them, so they live here, not above).
taus = [float(t) for t in TAUS]
tau_ref = 1.0 if 1.0 in taus else taus[len(taus) // 2]  # the paper's default, for single-tau views
cfg = experiment_config(SCALE, "scope", SEED)

# %% [markdown]
# ## Rollouts, rewards, perplexities
# Sampled with the training rollout settings of the config (`rollout.*`), as the trainer does;
# `PPL_S` from the student's log-probs of its own rollouts, `PPL_T` from the teacher's, scored
# only on the incorrect rows (the trainer scores nothing else for SCOPE). The steps are
# `scope_lib.studies.dpaw.sample_scored_groups` and `rollout_table`.

# %%
world = load_world(WorldSpec.from_config(cfg), train_seed=SEED)  # SEED also draws the training pool
world.student.to(ctx.device)
world.teacher.to(ctx.device)
problems = world.train_problems[:NUM_PROMPTS]
scored = dpaw_analysis.sample_scored_groups(
    world.student, world.teacher, world.tokenizer, problems, world.format_prompt, group_size=GROUP_SIZE,
    temperature=cfg.rollout.temperature, top_p=cfg.rollout.top_p, top_k=cfg.rollout.top_k,
    max_new_tokens=cfg.rollout.max_new_tokens, batch_size=cfg.rollout.batch_size, seed=SEED,
)
rollouts = dpaw_analysis.rollout_table(scored, taus)
per_group = rollouts.groupby("group")["correct"].agg(["sum", "size"])
mixed = int(((per_group["sum"] > 0) & (per_group["sum"] < per_group["size"])).sum())
display(Markdown(
    f"**{world.description}** — {NUM_PROMPTS} prompts × G = {GROUP_SIZE}: {len(rollouts)} rollouts, "
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
weight_table = dpaw_analysis.weight_stats_table(rollouts, taus)
ctx.save_table(weight_table, "eq45_weight_stats")
display(weight_table)
ess, sharpening = dpaw_analysis.ess_by_tau(weight_table), dpaw_analysis.sharpens(weight_table)
student_path, teacher_path = dpaw_analysis.STUDENT_PATH, dpaw_analysis.TEACHER_PATH
display(Markdown(
    f"**Weight statistics** ({ctx.scale_label}). The ESS fraction of the student path (Eq. 4) is "
    + ", ".join(f"{v:.3f} at tau = {t:g}" for t, v in ess[student_path].items()) + "; of the teacher path (Eq. 5) "
    + ", ".join(f"{v:.3f} at tau = {t:g}" for t, v in ess[teacher_path].items())
    + ". Appendix C.2 says a smaller tau sharpens the weights and a larger one flattens them towards OPD's "
    f"uniform weighting: the ESS rises with tau on the student path: **{sharpening[student_path]}**, "
    f"on the teacher path: **{sharpening[teacher_path]}**. At tau = {taus[0]:g} the largest weight is "
    f"{weight_table.loc[(taus[0], student_path), 'max_rel']:.2f}× uniform on the student path and "
    f"{weight_table.loc[(taus[0], teacher_path), 'max_rel']:.2f}× on the teacher path. How far the weights "
    f"move from uniform is set by the within-group spread of log PPL: "
    f"{weight_table.loc[(tau_ref, student_path), 'log_ppl_spread']:.3f} for the student's PPL of "
    f"correct rollouts, {weight_table.loc[(tau_ref, teacher_path), 'log_ppl_spread']:.3f} for the teacher's "
    "PPL of incorrect ones."
))

# %% [markdown]
# ## Eq. 4/5 weight distributions (generates and saves `eq45_dpaw_weights`)
# Weights are shown times the path size `n` (`w · n`, 1 = uniform): the per-path sum-to-one
# weights of groups with different path sizes become comparable, and `w · n` is exactly the
# released code's mean-one normalisation. Groups with ≥ 2 members on the path only. Top: the
# distribution of `w · n` per tau (empirical CDF: a steeper step at 1 is flatter weighting).
# Bottom: `w · n` against each rollout's PPL relative to the geometric mean of its path, where
# Eq. 4/5 predict `w · n ≈ (relative PPL)^(±1/tau)` (dashed).

# %%
title = f"DPAW weights on base-student rollouts ({ctx.scale_label}, G = {GROUP_SIZE})"
fig = dpaw_analysis.weight_distributions_figure(rollouts, taus, title)
ctx.savefig(fig, "eq45_dpaw_weights", caption=ctx.caption("eq45_dpaw_weights"))
plt.show()
conc = dpaw_analysis.concordance_table(rollouts, taus)
display(conc)
display(Markdown(
    f"**Eq. 4/5 weights** ({ctx.scale_label}). Of the within-group pairs of rollouts with different PPL, the student "
    f"weight is ordered like the student's PPL in {conc['student path, Eq. 4'].min():.1%} (lowest over tau) and "
    f"the teacher weight is ordered like the teacher's PPL in {conc['teacher path, Eq. 5'].max():.1%} (highest "
    "over tau): the increasing (Eq. 4) and decreasing (Eq. 5) relations the paper prescribes, checked on the "
    "weights `scope_lib.weights` returned. In the scatter plots the points follow the dashed "
    "`(relative PPL)^(±1/tau)` curves up to the group's normalisation."
))

# %% [markdown]
# ## The paper's student direction vs the released code's (generates and saves `eq4_student_direction_paper_vs_released`)
# Same groups, same tau: `PPL_S^(+1/tau)` (paper, Eq. 4) against `PPL_S^(-1/tau)` (the
# authors' shipped scripts). Left: the weight of each group's hardest correct rollout (highest
# `PPL_S`), one point per group, with the mean over groups and its 95% t interval. Right: every
# correct rollout; lines join the rollouts of the groups whose paper weights are most
# concentrated (lowest ESS). Both panels share one y axis, symmetric about 1 (uniform) and at
# least 0.5 to 1.5 wide, so the size of the effect reads off the axis.

# %%
title = f"Eq. 4 student-guided weight, tau = {tau_ref:g}: paper vs released sign ({ctx.scale_label})"
fig, direction = dpaw_analysis.direction_figure(rollouts, tau_ref, title)
ctx.savefig(fig, "eq4_student_direction_paper_vs_released", caption=ctx.caption("eq4_student_direction_paper_vs_released"))
plt.show()
shares = dpaw_analysis.direction_shares(rollouts, tau_ref)
share_paper, share_released, share_uniform = shares.paper, shares.released, shares.uniform
display(Markdown(
    f"**Paper vs released student direction** ({ctx.scale_label}, tau = {tau_ref:g}, {len(shares.hardest)} groups with "
    f"≥ 2 correct rollouts). The correct rollout the student found hardest (highest PPL_S) gets on average "
    f"{share_paper:.3f} of its group's correct-path weight under the paper's Eq. 4 "
    f"({100 * (share_paper / share_uniform - 1):+.1f} % relative to uniform), {share_released:.3f} under the "
    f"released sign ({100 * (share_released / share_uniform - 1):+.1f} %), and {share_uniform:.3f} under uniform "
    f"weighting. So the paper's direction {'up-weights' if share_paper > share_uniform else 'does not up-weight'} "
    f"the capability-boundary rollouts it argues for and the released sign "
    f"{'down-weights' if share_released < share_uniform else 'does not down-weight'} them, reinforcing what the "
    f"student already does confidently. The size of the effect follows the spread of PPL_S within a group: here "
    f"{shares.single_text_share:.0%} of these groups have a single distinct correct text (identical solutions, "
    f"equal PPL, uniform weights), so the two directions differ "
    f"{'only slightly' if abs(share_paper - share_released) < 0.05 * share_uniform else 'clearly'} on this task. "
    "The teacher path (Eq. 5) has the same sign in the paper and the released code."
))

# %% [markdown]
# ## Inspect groups
# With `INTERACTIVE = True` in a live notebook a slider steps through the groups; executed
# headlessly (papermill, the tests) the `SHOW_GROUPS` groups with the most concentrated Eq. 4
# weights at the reference tau are printed instead (the first groups when no group has two
# correct rollouts).

# %%
def show_group(g: int) -> None:
    display(Markdown(f"**group {g}: {problems[g].question}** (gold {problems[g].answer})"),
            dpaw_analysis.group_view(rollouts, g, tau_ref))


group_ids = sorted(rollouts["group"].unique())
if INTERACTIVE:
    import ipywidgets as widgets

    slider = widgets.IntSlider(min=0, max=len(group_ids) - 1, value=0, description="group")
    display(widgets.interactive(lambda index: show_group(group_ids[index]), index=slider))
else:
    on_student = rollouts[rollouts["correct"]]
    shown = dpaw_analysis.most_concentrated_groups(on_student, weight_column(STUDENT, tau_ref), SHOW_GROUPS)
    for g in shown or group_ids[:SHOW_GROUPS]:
        show_group(g)

# %% [markdown]
# ## The Eq. 4 regime (generates and saves `eq4_regime`)
# How far from uniform DPAW's weights are where they have been measured, as the ESS fraction of
# each group's weights at tau = 1 (1 = uniform): this run's rollouts beside the committed records
# of the default world (`data/world_tiny_routes/preconditions.json`), the code world
# (`data/world_tiny_code/probes/student_path.json`) and SmolLM2-135M on GSM8K
# (`data/eq4_regime_smol/eq4_regime.json`), and the teacher-path ESS the paper's Table 6 implies
# (`scope_lib.studies.preconditions.eq4_regime_table`). A record that is missing shows as such, never as
# a number from elsewhere. Exact-answer text leaves the student path near uniform; free text is
# another regime, which is why notebook 08 measures SCOPE against `tau_student`.

# %%
regime = dpaw_analysis.regime_table(weight_table, tau_ref, f"this notebook's run, {ctx.scale_label}",
                                 f"{NUM_PROMPTS} groups of G = {GROUP_SIZE}")
ctx.save_table(regime, "eq4_regime")
ctx.savefig(dpaw_analysis.regime_figure(regime), "eq4_regime", caption=ctx.caption("eq4_regime"))
plt.show()
ctx.show_claims("eq4_regime", study_claims.regime_lines(regime));

# %% [markdown]
# ## Checks (saved for the results page, `figures/README.md`)

# %%
ctx.show_claims("eq45_dpaw_weights", study_claims.dpaw_check_lines(weight_table, conc, shares, tau_ref, intro=(
    f"Scale `{ctx.scale_label}`: {len(rollouts)} base-student rollouts, {NUM_PROMPTS} groups of G = {GROUP_SIZE}.")));
