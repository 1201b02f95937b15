"""Named experiments of the paper, as config overrides, for the notebooks.

`experiment_config(scale, variant, seed, smoke=False)` is the one place that says what
"OPD", "no teacher weight" or "tau = 2" mean, so notebooks 04-09 ask for the same run and
the registry (`scope_lib.runs`) trains it once.

Variants: the methods of Table 1 (`grpo`, `kd`, `opd`, `scope`), the DPAW ablations of
Fig. 5, and `scope_tau<value>` for Fig. 6.
"""

from __future__ import annotations

from typing import Any

from scope_lib.config import TrainConfig, load_config

SCALES = {"tiny": "tiny", "smol": "smol", "paper": "paper_distill_1p5b", "paper_qwen3": "paper_qwen3_1p7b"}

METHODS = ("grpo", "kd", "opd", "scope")

# Fig. 5: each ablation changes one DPAW choice and keeps the reward routing.
ABLATIONS: dict[str, dict[str, Any]] = {
    "no_dpaw": {"scope.student_direction": "uniform", "scope.teacher_direction": "uniform"},
    "no_student_weight": {"scope.student_direction": "uniform"},
    "reversed_student_weight": {"scope.student_direction": "reversed"},
    "no_teacher_weight": {"scope.teacher_direction": "uniform"},
    "reversed_teacher_weight": {"scope.teacher_direction": "reversed"},
}

# Sizes that make every notebook finish in seconds on the smoke world (tests only).
SMOKE_OVERRIDES: dict[str, Any] = {
    "model.student": "tiny_smoke", "model.teacher": "tiny_smoke", "steps": 2, "checkpoint_every": 0,
    "optim.prompts_per_step": 4, "optim.mini_batch_prompts": 4, "rollout.group_size": 4,
    "rollout.max_new_tokens": 16, "data.eval_problems_per_set": 4, "eval.k": 4, "eval.max_new_tokens": 16,
    "kd.only_correct": False,  # the smoke teacher solves nothing; keep its solutions anyway
}


def variant_overrides(variant: str) -> dict[str, Any]:
    """Config overrides that turn the scale's preset into `variant`."""
    if variant in METHODS:
        overrides: dict[str, Any] = {"method": variant}
        if variant == "opd":
            overrides["rollout.group_size"] = 1  # Table 3: OPD samples one rollout per prompt
        return overrides
    if variant in ABLATIONS:
        return {"method": "scope", **ABLATIONS[variant]}
    if variant.startswith("scope_tau"):
        return {"method": "scope", "scope.tau": float(variant.removeprefix("scope_tau"))}
    raise ValueError(f"variant {variant!r}: expected one of {METHODS + tuple(ABLATIONS)} or 'scope_tau<value>'")


def experiment_config(scale: str, variant: str, seed: int, *, smoke: bool = False, **overrides: Any) -> TrainConfig:
    """The config of one run of the paper's experiments at `scale` (`tiny`, `smol`, `paper`)."""
    if scale not in SCALES:
        raise ValueError(f"scale {scale!r}: expected one of {list(SCALES)}")
    merged = {**(SMOKE_OVERRIDES if smoke else {}), **variant_overrides(variant), "seed": seed, **overrides}
    return load_config(SCALES[scale], overrides=merged)


def run_grid(scale: str, variants: list[str], seeds: list[int], *, smoke: bool = False, include_base: bool = True,
             **overrides: Any):
    """Train (or load) every variant x seed and evaluate it: one tidy row per run and eval set.

    Columns: variant, seed, eval_set, avg@k, pass@k, k. The base student (untrained) appears
    as variant "base" once per seed value of 0 (its evaluation does not depend on a seed).
    Returns (DataFrame, {(variant, seed): EvalResult}).
    """
    import pandas as pd

    from scope_lib.runs import evaluate_model, get_run

    rows, results = [], {}
    jobs = ([("base", seeds[0])] if include_base else []) + [(v, s) for v in variants for s in seeds]
    for variant, seed in jobs:
        cfg = experiment_config(scale, "scope" if variant == "base" else variant, seed, smoke=smoke, **overrides)
        run = None if variant == "base" else get_run(cfg)
        result = evaluate_model(run, cfg)
        results[(variant, seed)] = result
        for eval_set, row in result.summary().items():
            rows.append({"variant": variant, "seed": seed, "eval_set": eval_set, "k": result.k,
                         "avg@k": row[f"avg@{result.k}"], "pass@k": row[f"pass@{result.k}"]})
    return pd.DataFrame(rows), results


def run_histories(scale: str, variants: list[str], seeds: list[int], *, smoke: bool = False,
                  **overrides: Any) -> dict[tuple[str, int], list[dict]]:
    """Per-step training metrics of every variant x seed (trained now if not in the registry)."""
    from scope_lib.runs import get_run

    return {(v, s): get_run(experiment_config(scale, v, s, smoke=smoke, **overrides)).history for v in variants for s in seeds}
