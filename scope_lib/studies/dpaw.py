"""DPAW weights (Eq. 4 and 5) on real rollouts of the base student: tables and figures.

Data in, tables and figures out, no prose (the captions live beside notebook 03 in
`notebooks/captions/`, its check lines in `scope_lib.notebook.claims`). The steps, in the order
notebook 03 runs them:

1. `sample_scored_groups`: sample `group_size` rollouts per training prompt from the base
   student (the batch SCOPE weights at its first step), grade them, score every rollout
   under the student (`PPL_S`, Eq. 4) and the incorrect ones under the teacher (`PPL_T`,
   Eq. 5); the teacher's score of a correct row stays NaN, as in the trainer.
2. `rollout_table`: one row per rollout with its PPLs, its path size and its weights from
   `scope_lib.weights` at every tau: the paper's Eq. 4 (`w_S`), the released scripts'
   reversed student sign (`w_S released`) and Eq. 5 (`w_T`).
3. `weight_stats_table` (table `eq45_weight_stats`), `concordance_table` (the order checks)
   and `direction_shares` (the paper's student direction against the released sign).
4. `weight_distributions_figure` and `direction_figure` draw the two figures with seaborn;
   `regime_table` and `regime_figure` put this run's ESS fraction beside the committed records.

Weights are shown and compared as `w * n` (`n` the rollout's path size in its group): 1 is
uniform, and `w * n` is the released code's mean-one normalisation of the same weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from scope_lib import pipeline, weight_records
from scope_lib.problem import Problem
from scope_lib.teacher import LocalTeacher
from scope_lib.weights import student_weights, teacher_weights, weight_stats
from scope_lib.common.plotting import legend_outside, point_interval
from scope_lib.studies.preconditions import eq4_regime_table

STUDENT, RELEASED, TEACHER = "w_S", "w_S released", "w_T"  # weight column prefixes
# (label, weight prefix, path is the correct one, PPL column) of the rows of `weight_stats_table`.
PATHS = (("student (Eq. 4, paper)", STUDENT, True, "ppl_student"),
         ("student (released sign)", RELEASED, True, "ppl_student"),
         ("teacher (Eq. 5)", TEACHER, False, "ppl_teacher"))
DIRECTION_LABELS = {STUDENT: "paper: PPL_S^(+1/tau)", RELEASED: "released code: PPL_S^(-1/tau)"}
def weight_column(prefix: str, tau: float) -> str:
    """Name of the column holding weights `prefix` (STUDENT, RELEASED or TEACHER) at `tau`."""
    if prefix not in (STUDENT, RELEASED, TEACHER):
        raise ValueError(f"prefix: expected one of {STUDENT!r}, {RELEASED!r}, {TEACHER!r}, got {prefix!r}")
    return f"{prefix} tau={float(tau):g}"


def _check_taus(taus: Sequence[float]) -> list[float]:
    values = [float(t) for t in taus]
    if not values or any(not np.isfinite(t) or t <= 0 for t in values):
        raise ValueError(f"taus: expected one or more positive finite temperatures, got {list(taus)!r}")
    return values


# ---------------------------------------------------------------------------------------------
# sampling, grading, scoring


@dataclass
class ScoredGroups:
    """Graded and scored rollouts, `group_size` adjacent rows per problem."""

    problems: list[Problem]
    texts: list[str]
    group: torch.Tensor  # (N,) int64: index of the row's problem in `problems`
    correct: torch.Tensor  # (N,) bool
    student_s: torch.Tensor  # (N,) student's length-normalised log-prob of its own rollout
    teacher_s: torch.Tensor  # (N,) teacher's on the incorrect rows, NaN on the correct ones


def sample_scored_groups(student, teacher, tokenizer, problems: Sequence[Problem],
                         format_prompt: Callable[[Problem], str], *, group_size: int, temperature: float,
                         top_p: float, top_k: int, max_new_tokens: int, batch_size: int, seed: int) -> ScoredGroups:
    """Sample `group_size` rollouts per problem from `student` (`pipeline.score_rollouts` with
    the given settings and seed), grade them against the gold answers, and score them: every
    row under the student, the incorrect rows under `teacher` (teacher scores NaN elsewhere)."""
    problems = list(problems)
    if not problems:
        raise ValueError("problems: expected at least one problem")
    if teacher is None:
        raise ValueError("teacher: this study needs the teacher model in process (teacher.backend: local)")
    sampling = pipeline.Sampling(temperature=temperature, top_p=top_p, top_k=top_k, max_new_tokens=max_new_tokens,
                                 batch_size=batch_size)
    scored = pipeline.score_rollouts(student, tokenizer, problems, format_prompt=format_prompt, group_size=group_size,
                                     sampling=sampling, seed=seed, teacher=LocalTeacher(teacher),
                                     teacher_rows=pipeline.incorrect_rows, score_student=True)
    # NaN on correct rows: never read by Eq. 5
    return ScoredGroups(problems, list(scored.rollouts.texts), scored.rollouts.group, scored.correct,
                        scored.student_seq_logp(), scored.teacher_seq_logp())


def rollout_table(scored: ScoredGroups, taus: Sequence[float]) -> pd.DataFrame:
    """One row per rollout: group, correct, text, ppl_student, ppl_teacher (NaN on correct
    rows), path_size (rollouts of its group on its path) and, per tau, the weights
    `w_S tau=..` (Eq. 4), `w_T tau=..` (Eq. 5) and `w_S released tau=..` (reversed sign),
    from `scope_lib.weights` with `normalize="sum"` (each group's path sums to 1)."""
    taus = _check_taus(taus)
    s_student, s_teacher, correct, group = scored.student_s, scored.teacher_s, scored.correct, scored.group
    frame = pd.DataFrame({
        "group": group.numpy(), "correct": correct.numpy(), "text": scored.texts,
        "ppl_student": torch.exp(-s_student).numpy(), "ppl_teacher": torch.exp(-s_teacher).numpy(),
    })
    frame["path_size"] = frame.groupby(["group", "correct"])["group"].transform("size")
    for tau in taus:
        frame[weight_column(STUDENT, tau)] = student_weights(s_student, correct, group, tau).numpy()
        frame[weight_column(TEACHER, tau)] = teacher_weights(s_teacher, correct, group, tau).numpy()
        frame[weight_column(RELEASED, tau)] = student_weights(s_student, correct, group, tau, direction="reversed").numpy()
    return frame


def _check_frame(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"frame: expected a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"frame: missing columns {missing} (a `rollout_table` has them)")


# ---------------------------------------------------------------------------------------------
# summaries


def weight_stats_table(rollouts: pd.DataFrame, taus: Sequence[float]) -> pd.DataFrame:
    """Table `eq45_weight_stats`: per tau and path, `scope_lib.weights.weight_stats` over the
    groups with >= 2 rollouts on the path, plus `max_rel` (the largest `w * n`) and
    `log_ppl_spread` (mean over groups of the within-group standard deviation of log PPL on
    the path, ddof 0). Index (tau, path)."""
    taus = _check_taus(taus)
    _check_frame(rollouts, ["group", "correct", "path_size", "ppl_student", "ppl_teacher"])
    correct = torch.tensor(rollouts["correct"].to_numpy(), dtype=torch.bool)
    group = torch.tensor(rollouts["group"].to_numpy())
    shared = torch.tensor(rollouts["path_size"].to_numpy() >= 2)
    rows = []
    for tau in taus:
        for path, prefix, on_correct, ppl in PATHS:
            column = weight_column(prefix, tau)
            _check_frame(rollouts, [column])
            on_rows = (correct if on_correct else ~correct) & shared
            stats = weight_stats(torch.tensor(rollouts[column].to_numpy()), on_rows, group)
            members = rollouts[on_rows.numpy()]
            rel = members[column] * members["path_size"]
            spread = np.log(members[ppl]).groupby(members["group"]).std(ddof=0).mean()
            rows.append({"tau": tau, "path": path, **stats, "max_rel": rel.max() if len(rel) else np.nan,
                         "log_ppl_spread": spread})
    return pd.DataFrame(rows).set_index(["tau", "path"])


def relative_ppl(frame: pd.DataFrame, column: str) -> pd.Series:
    """PPL in `column` over the geometric mean PPL of the rows of its group in `frame` (pass
    the rows of one path: the geometric mean is taken over them)."""
    _check_frame(frame, ["group", column])
    log_ppl = np.log(frame[column])
    return np.exp(log_ppl - log_ppl.groupby(frame["group"]).transform("mean"))


def concordance(frame: pd.DataFrame, weight: str, ppl: str) -> float:
    """Share of within-group pairs whose weights are ordered like their PPLs (1: increasing,
    0: decreasing); pairs with equal PPL are skipped. NaN without any pair."""
    _check_frame(frame, ["group", weight, ppl])
    agree = total = 0
    for _, members in frame.groupby("group"):
        w, p = members[weight].to_numpy(), members[ppl].to_numpy()
        i, j = np.triu_indices(len(w), k=1)
        keep = p[i] != p[j]
        agree += int((np.sign(w[i] - w[j]) == np.sign(p[i] - p[j]))[keep].sum())
        total += int(keep.sum())
    return agree / total if total else float("nan")


def concordance_table(rollouts: pd.DataFrame, taus: Sequence[float]) -> pd.DataFrame:
    """`concordance` per tau (index) of Eq. 4 weights with the student's PPL on the correct
    path and of Eq. 5 weights with the teacher's PPL on the incorrect path."""
    taus = _check_taus(taus)
    _check_frame(rollouts, ["correct"])
    on_student, on_teacher = rollouts[rollouts["correct"]], rollouts[~rollouts["correct"]]
    table = pd.DataFrame({
        "student path, Eq. 4": {t: concordance(on_student, weight_column(STUDENT, t), "ppl_student") for t in taus},
        "teacher path, Eq. 5": {t: concordance(on_teacher, weight_column(TEACHER, t), "ppl_teacher") for t in taus},
    })
    table.index.name = "tau"
    return table


@dataclass
class DirectionShares:
    """The weight share of each group's hardest correct rollout (highest PPL_S) at one tau,
    averaged over the groups with >= 2 correct rollouts."""

    paper: float  # under Eq. 4
    released: float  # under the released reversed sign
    uniform: float  # 1 / n
    hardest: pd.DataFrame  # the hardest rollout of each such group (rows of the rollout table)
    single_text_share: float  # share of these groups whose correct rollouts are one text


def direction_shares(rollouts: pd.DataFrame, tau: float) -> DirectionShares:
    """Mean weight share of the hardest correct rollout under the paper's and the released
    student sign, and under uniform weights (NaN without a group with >= 2 correct rollouts)."""
    paper, released = weight_column(STUDENT, tau), weight_column(RELEASED, tau)
    _check_frame(rollouts, ["group", "correct", "path_size", "ppl_student", "text", paper, released])
    multi = rollouts[rollouts["correct"] & (rollouts["path_size"] >= 2)]
    hardest = multi.loc[multi.groupby("group")["ppl_student"].idxmax()]
    single = (multi.groupby("group")["text"].nunique() == 1).mean()
    return DirectionShares(hardest[paper].mean(), hardest[released].mean(), (1.0 / hardest["path_size"]).mean(),
                           hardest, float(single))


def most_concentrated_groups(frame: pd.DataFrame, weight: str, n: int) -> list:
    """Up to `n` groups of `frame` (the rows of one path) with the lowest effective sample size
    fraction `(sum w)^2 / (sum w^2) / members` of `weight`, lowest first (ties: smaller group
    id first). Only groups with >= 2 rows count: a lone rollout always has ESS 1."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n: expected a non-negative int, got {n!r}")
    _check_frame(frame, ["group", weight])
    ess = weight_records.ess_table(frame[weight].astype(float), frame["group"])
    ess_frac = ess.loc[ess["n"] >= 2, "ess_frac"].sort_index(kind="stable")
    return ess_frac.sort_values(kind="stable").index[:n].tolist()


def group_view(rollouts: pd.DataFrame, group_id, tau: float) -> pd.DataFrame:
    """The rollouts of one group with their PPLs and weights at `tau`, text on one line, rounded."""
    columns = ["correct", "ppl_student", "ppl_teacher", weight_column(STUDENT, tau), weight_column(RELEASED, tau),
               weight_column(TEACHER, tau), "text"]
    _check_frame(rollouts, ["group", *columns])
    members = rollouts[rollouts["group"] == group_id][columns].copy()
    if members.empty:
        raise ValueError(f"group_id: no rollout has group {group_id!r}")
    members["text"] = members["text"].str.replace("\n", " / ", regex=False)
    return members.round(3)


STUDENT_PATH, TEACHER_PATH = PATHS[0][0], PATHS[2][0]


def ess_by_tau(weight_table: pd.DataFrame) -> pd.DataFrame:
    """The ESS fraction of a `weight_stats_table`, one row per tau and one column per path."""
    _check_frame(weight_table, ["ess_frac"])
    return weight_table["ess_frac"].unstack("path")


def sharpens(weight_table: pd.DataFrame) -> dict[str, bool]:
    """Per path, whether the ESS fraction rises strictly with tau (Appendix C.2: a smaller tau
    sharpens the weights, a larger one flattens them towards uniform)."""
    ess = ess_by_tau(weight_table).sort_index()
    return {path: bool(np.all(np.diff(ess[path].to_numpy()) > 0)) for path in ess.columns}


# ---------------------------------------------------------------------------------------------
# figures


def _log_axes_if_wide(ax, x: pd.Series, y: pd.Series) -> None:
    """Log axes when the data span more than 3x (power laws are lines there); a narrower span
    stays linear, where log ticks would crowd into unreadable labels."""
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda value, _: f"{value:g}")  # 0.5, 1, 2 rather than 5x10^-1
    # minor ticks labelled at 2 and 5 times a power of ten only, so labels never crowd
    some = FuncFormatter(lambda value, _: f"{value:g}" if round(value / 10 ** np.floor(np.log10(value))) in (2, 5) else "")
    for axis, values in (("x", x), ("y", y)):
        if len(values) and values.min() > 0 and values.max() / values.min() > 3:
            getattr(ax, f"set_{axis}scale")("log")
            getattr(ax, f"{axis}axis").set_major_formatter(plain)
            # over more than two decades even the 2s and 5s crowd: decades alone are labelled
            wide = values.max() / values.min() > 100
            getattr(ax, f"{axis}axis").set_minor_formatter(FuncFormatter(lambda *_: "") if wide else some)


def _long_weights(frame: pd.DataFrame, prefixes: Sequence[str], taus: Sequence[float], ppl: str) -> pd.DataFrame:
    """Rows of `frame` with >= 2 members on their path, one per weight column: group, rel_ppl
    (`relative_ppl` on `ppl`), weights ("w_S", ...), tau and w_rel = w * n."""
    multi = frame[frame["path_size"] >= 2]
    rel = relative_ppl(multi, ppl) if len(multi) else pd.Series(dtype=float)
    parts = [pd.DataFrame({"group": multi["group"], "rel_ppl": rel, "weights": prefix, "tau": tau,
                           "w_rel": multi[weight_column(prefix, tau)] * multi["path_size"]})
             for prefix in prefixes for tau in taus]
    return pd.concat(parts, ignore_index=True)


def weight_distributions_figure(rollouts: pd.DataFrame, taus: Sequence[float], title: str):
    """Eq. 4 (correct path, left) and Eq. 5 (incorrect path, right) weights `w * n` of the
    groups with >= 2 rollouts on the path: their distribution per tau (seaborn ECDF, top) and
    against the rollout's PPL over the geometric mean of its path (bottom), where the weights
    follow `(relative PPL)^(+-1/tau)` up to the group normalisation (dashed)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    taus = _check_taus(taus)
    colors = dict(zip(taus, plt.cm.plasma(np.linspace(0.1, 0.8, len(taus)))))
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for col, (on_correct, prefix, ppl, sign, title_col) in enumerate((
        (True, STUDENT, "ppl_student", +1, "Eq. 4: correct path, student PPL"),
        (False, TEACHER, "ppl_teacher", -1, "Eq. 5: incorrect path, teacher PPL"),
    )):
        data = _long_weights(rollouts[rollouts["correct"] == on_correct], [prefix], taus, ppl)
        top, bottom = axes[0, col], axes[1, col]
        top.set(title=title_col, xlabel="weight × path size (1 = uniform)", ylabel="share of rollouts (ECDF)")
        bottom.set(xlabel="PPL / geometric mean PPL of the path", ylabel="weight × path size")
        if data.empty:
            for ax in (top, bottom):
                ax.text(0.5, 0.5, "no group has ≥ 2 rollouts on this path", ha="center", transform=ax.transAxes)
            continue
        for tau in taus:
            part = data[data["tau"] == tau]
            sns.ecdfplot(part, x="w_rel", color=colors[tau], label=f"τ = {tau:g}", ax=top)
            sns.scatterplot(part, x="rel_ppl", y="w_rel", color=colors[tau], s=12, alpha=0.5, linewidth=0, ax=bottom)
            grid = np.geomspace(max(part["rel_ppl"].min(), 1e-3), part["rel_ppl"].max() + 1e-9, 50)
            bottom.plot(grid, grid ** (sign / tau), "--", color=colors[tau], linewidth=1)
        top.axvline(1.0, color="grey", linestyle=":", linewidth=1)
        _log_axes_if_wide(bottom, data["rel_ppl"], data["w_rel"])
    fig.suptitle(title)
    fig.tight_layout()
    if any(ax.get_legend_handles_labels()[1] for ax in axes[0]):
        # one entry per tau (the ECDFs above, the points and dashes below in its colour), then what
        # the markers of the bottom row are
        handles = [plt.Line2D([], [], color=colors[tau]) for tau in taus] + [
            plt.Line2D([], [], color="grey", marker="o", markersize=4, alpha=0.6, linestyle="none"),
            plt.Line2D([], [], color="grey", linestyle="--", linewidth=1)]
        labels = [f"τ = {tau:g}" for tau in taus] + ["one rollout (bottom)", r"Eq. 4/5: (relative PPL)$^{\pm 1/\tau}$"]
        legend_outside(fig, handles, labels, title="weight temperature", alignment="left")
    return fig


def direction_figure(rollouts: pd.DataFrame, tau: float, title: str, *, highlight: int = 4):
    """The paper's student direction against the released sign at one tau, on one y scale
    symmetric about 1 (uniform) and at least 0.5 to 1.5, so a few-percent effect looks like one.

    Left: the hardest correct rollout of each group with >= 2 correct rollouts, its `w * n`
    under each sign (one point per group), with the mean over groups and its 95% t interval
    (`plotting.point_interval`). Right: every such rollout's `w * n` against its PPL over the
    path's geometric mean, both signs; the `highlight` groups with the most concentrated paper
    weights (`most_concentrated_groups`) are joined by lines. Returns (figure, summary of the
    left panel: mean, low, high and n per sign)."""
    import matplotlib.pyplot as plt

    shares = direction_shares(rollouts, tau)
    correct = rollouts[rollouts["correct"]]
    data = _long_weights(correct, [STUDENT, RELEASED], [tau], "ppl_student")
    data["sign"] = data["weights"].map(DIRECTION_LABELS)
    palette = dict(zip(DIRECTION_LABELS.values(), ("#d62728", "#1f77b4")))
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.4), width_ratios=[1, 1.6], sharey=True)
    summary = pd.DataFrame(columns=["sign", "mean", "low", "high", "n"])
    if data.empty:
        for ax in (left, right):
            ax.text(0.5, 0.75, "no group has ≥ 2 correct rollouts", ha="center", transform=ax.transAxes)
        half = 0.5
    else:
        hardest = shares.hardest
        points = pd.concat([pd.DataFrame({"sign": label, "w_rel": hardest[weight_column(prefix, tau)]
                                          * hardest["path_size"]}) for prefix, label in DIRECTION_LABELS.items()])
        summary = point_interval(left, points, x="sign", y="w_rel", hue="sign", palette=palette)
        for label, part in data.groupby("sign", sort=False):
            right.scatter(part["rel_ppl"], part["w_rel"], s=14, alpha=0.4, linewidth=0, color=palette[label], label=label)
        for g in most_concentrated_groups(correct[correct["path_size"] >= 2], weight_column(STUDENT, tau), highlight):
            for label, part in data[data["group"] == g].groupby("sign"):
                part = part.sort_values("rel_ppl")
                right.plot(part["rel_ppl"], part["w_rel"], "-", color=palette[label], linewidth=0.9, alpha=0.8)
        half = max(0.5, 1.1 * float(np.nanmax(np.abs(data["w_rel"].to_numpy() - 1.0))))
        _log_axes_if_wide(right, data["rel_ppl"], pd.Series(dtype=float))  # x only: y stays symmetric about 1
    for ax in (left, right):
        ax.axhline(1.0, color="black", linestyle=":", linewidth=1, label="uniform (w · n = 1)")
    left.set_ylim(1.0 - half, 1.0 + half)
    left.set(xlabel="", ylabel="student weight × path size (1 = uniform)",
             title="hardest correct rollout per group:\nper group, mean and 95% t interval")
    left.set_xticks(left.get_xticks(), [t.get_text().replace(": ", ":\n") for t in left.get_xticklabels()])
    right.set(xlabel="student PPL / geometric mean PPL of the correct path", title="every correct rollout")
    fig.suptitle(title)
    legend_outside(right)
    fig.tight_layout()
    return fig, summary


def regime_table(weight_table: pd.DataFrame, tau: float, label: str, note: str, records_root=None) -> pd.DataFrame:
    """This run's ESS fraction at `tau` on both paths (from `weight_stats_table`), then the committed
    records of `scope_lib.studies.preconditions.eq4_regime_table` (the Eq. 4 regime side by side)."""
    ess = ess_by_tau(weight_table)
    if tau not in ess.index:
        raise ValueError(f"tau: {tau!r} is not among the weight table's temperatures {list(ess.index)}")
    own = pd.DataFrame([{"model": label, "path": path, "ess_frac@tau=1": float(ess.loc[tau, column]),
                         "source": "this notebook's rollouts", "note": note}
                        for path, column in (("student (Eq. 4)", STUDENT_PATH), ("teacher (Eq. 5)", TEACHER_PATH))])
    return pd.concat([own, eq4_regime_table(records_root)], ignore_index=True)


def regime_figure(regime: pd.DataFrame):
    """One point per measured row of `regime_table` on the ESS axis, coloured by path (with a
    legend naming each colour's path)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    shown = regime.dropna(subset=["ess_frac@tau=1"]).iloc[::-1]
    fig, ax = plt.subplots(figsize=(8.5, 0.45 * len(shown) + 1.2), layout="constrained")
    paths = list(dict.fromkeys(shown["path"]))
    colors = dict(zip(paths, sns.color_palette("colorblind", len(paths))))
    rows = np.arange(len(shown))
    for path in dict.fromkeys(shown["path"].iloc[::-1]):  # the legend lists the paths as the rows first show them, top down
        mask = (shown["path"] == path).to_numpy()
        ax.scatter(shown["ess_frac@tau=1"][mask], rows[mask], color=colors[path], s=60, zorder=3, label=path)
    ax.legend(title="weights", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_yticks(range(len(shown)), [f"{m} · {p}" for m, p in zip(shown["model"], shown["path"])])
    ax.axvline(1.0, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("ESS fraction of the DPAW weights at tau = 1 (1 = uniform)")
    ax.set_title("The Eq. 4 regime: how concentrated the weights are")
    return fig
