"""Per-seed data in long form for the seaborn figures of notebooks 06-09.

A figure that shows a mean over seeds with its interval over seeds draws both from the
per-seed values (seaborn aggregates them), not from pre-computed bounds. The helpers here turn
the runs' evaluations and training histories into one row per seed:

- `pass_curves_long`: Pass@k for k = 1..K per variant, seed and eval set (Fig. 4);
- `history_long`: one logged training metric per variant, seed and step (Fig. 6's ESS);
- `step_times`: the trainer's per-step timers per variant and seed (Table 8);

and (in `scope_lib.common.plotting`) `t_interval_within`, the 95% t interval over seeds clipped to a metric's range, for
seaborn's `errorbar`.

`report.pass_curves` and `report.step_curves` give the same means as tables; the tests check
that both agree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd


AVERAGE = "average"  # the eval-set name of the unweighted mean over the sets, as in run_grid's rows


def pass_curves_long(results: Mapping, variants: Sequence[str], *, average: bool = True) -> pd.DataFrame:
    """Pass@k for k = 1..K, one row per (variant, seed, eval_set, k), from `run_grid`'s
    `{(variant, seed): EvalResult}`.

    Columns: variant, seed, eval_set, k, pass@k (a fraction). With `average`, each seed also
    gets eval_set "average": the unweighted mean of its sets' curves, the quantity
    `report.pass_curves(results, variant)` averages over seeds.
    """
    rows = []
    for variant in variants:
        chosen = {seed: result for (name, seed), result in results.items() if name == variant}
        if not chosen:
            raise ValueError(f"results: no runs of variant {variant!r}; variants are {sorted({v for v, _ in results})}")
        for seed, result in chosen.items():
            curves = {name: result.pass_at_k_curve(name) for name in result.correct}
            if average:
                ks = next(iter(curves.values()))
                curves[AVERAGE] = {k: float(np.mean([curve[k] for curve in curves.values()])) for k in ks}
            rows += [{"variant": variant, "seed": seed, "eval_set": name, "k": k, "pass@k": value}
                     for name, curve in curves.items() for k, value in curve.items()]
    return pd.DataFrame(rows, columns=["variant", "seed", "eval_set", "k", "pass@k"])


def history_long(histories: Mapping[tuple[str, int], list[dict]], metric: str) -> pd.DataFrame:
    """One logged training metric, one row per (variant, seed, step) from `run_histories`'s
    `{(variant, seed): [record per step]}`.

    Steps where the metric is missing or not finite (e.g. a teacher-weight statistic at a step
    with no group of two incorrect rollouts) are left out. ValueError when no record of any
    run logs `metric`, naming the metrics it does log.
    """
    rows = []
    logged: set[str] = set()
    for (variant, seed), history in histories.items():
        for record in history:
            logged.update(record)
            value = record.get(metric)
            if value is not None and math.isfinite(float(value)):
                rows.append({"variant": variant, "seed": seed, "step": int(record["step"]), metric: float(value)})
    if metric not in logged:
        raise ValueError(f"metric: no run logs {metric!r}; logged metrics are {sorted(logged)}")
    return pd.DataFrame(rows, columns=["variant", "seed", "step", metric])


def step_times(histories: Mapping[tuple[str, int], list[dict]], timers: Sequence[str]) -> pd.DataFrame:
    """Seconds per step of each trainer timer, one row per (variant, seed, step record), with
    the rollouts the step graded (`n_correct` + `n_incorrect`, 0 where not logged).

    Columns: variant, seed, rollouts, then one per timer (read from `time/<timer>`).
    ValueError naming the run and step when a record lacks a timer.
    """
    rows = []
    for (variant, seed), history in histories.items():
        for record in history:
            missing = [name for name in timers if f"time/{name}" not in record]
            if missing:
                raise ValueError(f"histories: run ({variant!r}, {seed}) step {record.get('step')} "
                                 f"has no timer {missing}")
            rows.append({"variant": variant, "seed": seed,
                         "rollouts": record.get("n_correct", 0) + record.get("n_incorrect", 0),
                         **{name: record[f"time/{name}"] for name in timers}})
    return pd.DataFrame(rows, columns=["variant", "seed", "rollouts", *timers])


# --- Table 8 bench: bench/table8_speed.py's record (data/bench_table8/table8_bench.json) --------------

BENCH_VARIANTS = ("GRPO", "SCOPE (synchronous)", "SCOPE (overlapped)", "OPD (G=1)")  # the bench's rows, in order
BENCH_WORKER = "teacher_worker"  # the overlapped scoring worker's busy seconds (beside the step, not a part of it)
BENCH_DPAW = "dpaw"  # the DPAW weight computation (Eq. 4-5) alone, timed after the synchronous SCOPE step
# The step-time speed targets (Table 8): the overlapped SCOPE step at most 1.05x GRPO's; the weights under 1% of a SCOPE step.
SPEED_TARGETS = {"overlapped_step_ratio": 1.05, "dpaw_share": 0.01}


def bench_table(record: Mapping) -> pd.DataFrame:
    """The bench's median seconds per step, one row per variant (in BENCH_VARIANTS order):
    the record's `components`, then BENCH_WORKER, BENCH_DPAW, `step` and `step / GRPO`
    (the variant's median step over GRPO's). A component a variant does not time is NaN."""
    columns = [*record["components"], BENCH_WORKER, BENCH_DPAW, "step"]
    rows = {name: {c: record["variants"][name]["median_s"].get(c) for c in columns}
            for name in BENCH_VARIANTS if name in record["variants"]}
    if "GRPO" not in rows:
        raise ValueError(f"record: no GRPO variant to take ratios to; variants are {list(record['variants'])}")
    table = pd.DataFrame.from_dict(rows, orient="index", columns=columns).astype(float)
    table["step / GRPO"] = table["step"] / table.loc["GRPO", "step"]
    return table


def _target_line(label: str, value: float, target: float, met: bool | None, shown: str, bound: str) -> dict:
    word = "not measured" if met is None else ("met" if met else "missed")
    verdict = f"{shown}: target {bound} {word}"
    return {"name": label, "value": value, "target": target, "met": met, "verdict": verdict,
            "text": f"{label} = {verdict}"}


def speed_targets(record: Mapping) -> list[dict]:
    """The two step-time speed targets (Table 8) judged on a bench record's medians (never on typed numbers).

    One dict per target: name, value, target, met (True, False, or None where the record lacks
    the numbers), verdict ("1.073x: target at most 1.05x missed") and text, e.g. "SCOPE overlapped / GRPO step = 1.073x: target at most 1.05x
    missed". The weight share is the DPAW time over the synchronous SCOPE step (the step it
    was timed after)."""
    table = bench_table(record)
    ratio = float(table.loc["SCOPE (overlapped)", "step / GRPO"]) if "SCOPE (overlapped)" in table.index else math.nan
    share = (float(table.loc["SCOPE (synchronous)", BENCH_DPAW] / table.loc["SCOPE (synchronous)", "step"])
             if "SCOPE (synchronous)" in table.index else math.nan)
    step_target, share_target = SPEED_TARGETS["overlapped_step_ratio"], SPEED_TARGETS["dpaw_share"]
    return [
        _target_line("SCOPE overlapped / GRPO step", ratio, step_target,
                     bool(ratio <= step_target) if math.isfinite(ratio) else None, f"{ratio:.3f}x",
                     f"at most {step_target:.2f}x"),
        _target_line("DPAW weights (Eq. 4-5) / SCOPE step", share, share_target,
                     bool(share < share_target) if math.isfinite(share) else None, f"{100 * share:.3f}%",
                     f"under {100 * share_target:g}%"),
    ]


def bench_machine_text(record: Mapping) -> str:
    """The machine and load of a bench run, in words: CPU, cores, torch, threads, load average."""
    start, end = record["load_average"]["start"], record["load_average"]["end"]
    return (f"{record['machine']['cpu']} ({record['machine']['cores']} cores), torch {record['torch']}, "
            f"{record['threads']} torch thread(s) (+1 scoring worker with overlap), 1-minute load average "
            f"{start[0]:.2f} at the start and {end[0]:.2f} at the end")


def overlap_limits(record: Mapping) -> str:
    """Where the overlapped SCOPE step's time beyond GRPO's goes, from the record's medians: the
    change in generation (the worker competes with it for the cores), the wait for the worker
    after generation and the rest; with the machine's free cores against what the bench needs."""
    table = bench_table(record)
    grpo, over, sync = (table.loc[name] for name in ("GRPO", "SCOPE (overlapped)", "SCOPE (synchronous)"))
    cores, threads = record["machine"]["cores"], record["threads"]
    load = record["load_average"]["start"][0]  # before the bench started: other work (the end includes the bench)
    free = max(cores - load, 0.0)
    parts = [
        f"the overlapped step is {over['step'] - grpo['step']:+.3f} s against GRPO's {grpo['step']:.3f} s",
        f"generation {over['generation']:.3f} s against GRPO's {grpo['generation']:.3f} s "
        f"({over['generation'] - grpo['generation']:+.3f} s) and against the synchronous SCOPE step's "
        f"{sync['generation']:.3f} s",
        f"the wait for the scoring worker after generation {over['teacher_scoring']:.3f} s (the worker was busy "
        f"{over[BENCH_WORKER]:.3f} s; synchronous scoring takes {sync['teacher_scoring']:.3f} s)",
        f"actor update {over['actor_update']:.3f} s against GRPO's {grpo['actor_update']:.3f} s",
    ]
    cores_text = (f"the machine had about {free:.1f} of {cores} cores free (1-minute load average {load:.2f} as the "
                  f"bench started) for the bench's {threads} torch thread(s) + 1 worker")
    if free < threads + 1:
        cores_text += ", so the worker could not run beside generation without taking cores from it"
    return "; ".join(parts) + "; " + cores_text + "."
