"""Per-seed data in long form for the seaborn figures of notebooks 06-09.

A figure that shows a mean over seeds with its interval over seeds draws both from the
per-seed values (seaborn aggregates them), not from pre-computed bounds. The helpers here turn
the runs' evaluations and training histories into one row per seed:

- `pass_curves_long`: Pass@k for k = 1..K per variant, seed and eval set (Fig. 4);
- `history_long`: one logged training metric per variant, seed and step (Fig. 6's ESS);
- `step_times`: the trainer's per-step timers per variant and seed (Table 8);

and (in `scope_lib.plotting`) `t_interval_within`, the 95% t interval over seeds clipped to a metric's range, for
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
