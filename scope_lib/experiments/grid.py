"""Named experiments of the paper, as config overrides, for the notebooks.

`experiment_config(scale, variant, seed, smoke=False)` is the one place that says what
"OPD", "no teacher weight" or "tau = 2" mean, so notebooks 04-09 ask for the same run and
the registry (`scope_lib.experiments.registry`) trains it once.

A variant is data (`Variant`): a name mapped to config overrides. Named ones: the methods of
Table 1 (`grpo`, `kd`, `opd`, `scope`) and the KDRL-style baseline `hybrid` (GRPO's advantage plus
the teacher term, docs/DESIGN.md §2.9), `opd_g8` (OPD with as many rollouts per step as SCOPE), the
DPAW ablations of Fig. 5. Numbered families (`FAMILIES`), made from their value with
`family_variant`: `scope_tau` for Fig. 6 (one temperature for both paths), `scope_tau_student`
(Eq. 4's own temperature, Eq. 5 keeping the preset's) and `hybrid_beta` (the hybrid's teacher
weight). A name typed by a user (`scope_tau0.5` as a notebook parameter) is read by
`named_variant`. The names figures and tables show for these keys are
`scope_lib.common.plotting.display_name`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
import os
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import yaml

from scope_lib.config import TrainConfig, load_config
from scope_lib.experiments.registry import evaluate_model, evaluation_path, get_run
from scope_lib.common.progress import relaying, wait_drawing, worker_initializer, WorkerBars
from scope_lib.verify_worker import die_with_parent
from scope_lib.world import load_world, WorldSpec
from scope_lib.common.paths import CONFIGS_DIR

CONFIGS = CONFIGS_DIR  # the chosen learning rates: configs/<scale>_lr.yaml

SCALES = {"tiny": "tiny", "tiny_chain": "tiny_chain", "tiny_code": "tiny_code", "smol": "smol",
          "paper": "paper_distill_1p5b", "paper_qwen3": "paper_qwen3_1p7b", "paper_code": "paper_code"}
# The smoke world of each tiny scale (seconds to build; the tests' notebook runs)
SMOKE_WORLDS = {"tiny": "tiny_routes_smoke", "tiny_chain": "tiny_smoke", "tiny_code": "tiny_code_smoke"}
# Each smoke world is also a scale of its own, named after the world: `experiment_config("tiny_routes_smoke", ...)`
# is `experiment_config("tiny", ..., smoke=True)`, the same config and run. A notebook's smoke value
# of SCALE names one, so its code passes SCALE on and never asks whether it is a smoke run.
SMOKE_SCALES = {world: scale for scale, world in SMOKE_WORLDS.items()}

METHODS = ("grpo", "kd", "opd", "scope", "hybrid")
# OPD matched in rollouts: G = 8 per prompt like SCOPE and GRPO (the paper's OPD uses G = 1).
EXTRA_VARIANTS = ("opd_g8",)

# Fig. 5: each ablation changes one DPAW choice and keeps the reward routing. "Switched off"
# means weight 1 for every rollout of that path ("ones"), the paper's "standard uniform
# weighting" as the authors' released code implements it; `no_dpaw_normalized` keeps DPAW's
# per-group normalisation with equal weights (1/n per rollout), so the normalisation's share of
# the effect is measured on its own.
ABLATIONS: dict[str, dict[str, Any]] = {
    "no_dpaw": {"scope.student_direction": "ones", "scope.teacher_direction": "ones"},
    "no_dpaw_normalized": {"scope.student_direction": "uniform", "scope.teacher_direction": "uniform"},
    "no_student_weight": {"scope.student_direction": "ones"},
    "reversed_student_weight": {"scope.student_direction": "reversed"},
    "no_teacher_weight": {"scope.teacher_direction": "ones"},
    "reversed_teacher_weight": {"scope.teacher_direction": "reversed"},
}

# Numbered variant families: a member sets one key to its value on top of the base overrides
# (`family_variant("scope_tau", 0.5)`: SCOPE with scope.tau 0.5, named `scope_tau0.5`).
FAMILIES: dict[str, tuple[str, dict[str, Any]]] = {
    "scope_tau": ("scope.tau", {"method": "scope"}),  # Fig. 6: Eq. 4 and Eq. 5 share tau
    "scope_tau_student": ("scope.tau_student", {"method": "scope"}),  # Eq. 4 alone; Eq. 5 keeps scope.tau
    "hybrid_beta": ("hybrid.beta", {"method": "hybrid"}),  # the hybrid's teacher weight
}
# How a member's name writes its value: as the committed tables name the runs (Fig. 6's taus as
# Python prints them, `scope_tau2.0`; the sweep's tau_student values in `g` format).
FAMILY_NAMES = {"scope_tau": "{family}{value}", "scope_tau_student": "{family}{value:g}", "hybrid_beta": "{family}{value:g}"}

# Sizes that make every notebook finish in seconds on the smoke world (tests only).
SMOKE_OVERRIDES: dict[str, Any] = {
    "model.student": "tiny_smoke", "model.teacher": "tiny_smoke", "steps": 2, "checkpoint_every": 0,
    "optim.prompts_per_step": 4, "optim.mini_batch_prompts": 4, "rollout.group_size": 4,
    "rollout.max_new_tokens": 16, "data.eval_problems_per_set": 4, "eval.k": 4, "eval.max_new_tokens": 16,
    "kd.only_correct": False,  # the smoke teacher solves nothing; keep its solutions anyway
}


@dataclass(frozen=True)
class Variant:
    """One run of the paper's experiments, as data: `name` labels it in tables, figures and
    `run_grid`'s results, `overrides` are the config settings that make it on top of the scale's
    preset (a tuple of (key, value) pairs, so a Variant is hashable and crosses to worker processes).
    The run's registry key comes from the config alone, never from the name."""

    name: str
    overrides: tuple[tuple[str, Any], ...]

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.overrides)

    @property
    def method(self) -> str:
        return self.settings["method"]


def _named_overrides(name: str) -> dict[str, Any] | None:
    if name in METHODS:
        overrides: dict[str, Any] = {"method": name}
        if name == "opd":
            overrides["rollout.group_size"] = 1  # Table 3
        return overrides
    if name == "opd_g8":  # the preset's group size (8 at tiny scale): as many rollouts as SCOPE
        return {"method": "opd"}
    if name in ABLATIONS:
        return {"method": "scope", **ABLATIONS[name]}
    return None


def family_variant(family: str, value: float) -> Variant:
    """The member of numbered family `family` (`FAMILIES`) at `value`: `family_variant("scope_tau", 0.5)`
    is SCOPE with `scope.tau` 0.5, named `scope_tau0.5` (`FAMILY_NAMES` says how each family writes
    its value, as the committed tables name the runs). The value goes into the overrides as given;
    the name is only its label."""
    if family not in FAMILIES:
        raise ValueError(f"family {family!r}: expected one of {list(FAMILIES)}")
    key, base = FAMILIES[family]
    return Variant(FAMILY_NAMES[family].format(family=family, value=value), tuple({**base, key: value}.items()))


def named_variant(name: str) -> Variant:
    """The variant a typed name stands for: a method of Table 1, `opd_g8`, a DPAW ablation, or a
    numbered family member written out (`scope_tau0.5`, as a notebook parameter or on a command line
    names it; the text after the family's prefix read as the value). Code that has the value makes
    the member with `family_variant` instead."""
    overrides = _named_overrides(name)
    if overrides is not None:
        return Variant(name, tuple(overrides.items()))
    for prefix in sorted(FAMILIES, key=len, reverse=True):
        if name.startswith(prefix):
            key, base = FAMILIES[prefix]
            text = name.removeprefix(prefix)
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"variant {name!r}: expected a number after {prefix!r} (e.g. {prefix}0.5), "
                                 f"got {text!r}") from None
            return Variant(name, tuple({**base, key: value}.items()))
    families = ", ".join(f"'{prefix}<value>'" for prefix in FAMILIES)
    raise ValueError(f"variant {name!r}: expected one of {METHODS + EXTRA_VARIANTS + tuple(ABLATIONS)} or {families}")


def as_variant(variant: str | Variant) -> Variant:
    """`variant` itself, or the Variant a typed name stands for (`named_variant`)."""
    return variant if isinstance(variant, Variant) else named_variant(variant)


def variant_overrides(variant: str | Variant) -> dict[str, Any]:
    """Config overrides that turn the scale's preset into `variant`.

    OPD follows Table 3: one rollout per prompt on the same prompts per step as SCOPE, so it
    samples G times fewer rollouts than SCOPE and GRPO (the paper's protocol; a tiny-scale
    check with OPD given G times more prompts instead is recorded in data/tiny_preset_trials.md).
    """
    return as_variant(variant).settings


def variant_method(variant: str | Variant) -> str:
    """The training method `variant` runs (`scope` for the ablations and tau families)."""
    return as_variant(variant).method


def _tuned_file(scale: str) -> dict[str, Any]:
    path = CONFIGS / f"{scale}_lr.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def tuned_lr(scale: str, variant: str | Variant) -> dict[str, Any]:
    """The learning rate chosen for `variant`'s method on the validation split (`configs/<scale>_lr.yaml`,
    written by `scope_lib.experiments.lr_selection`); ablations and the numbered families take their method's
    (SCOPE's for the tau ones, the hybrid's for `hybrid_beta<value>`). {} if none chosen."""
    chosen = _tuned_file(scale).get("lr", {})
    variant = as_variant(variant)
    key = variant.name if variant.name in chosen else variant.method if variant.name not in METHODS + EXTRA_VARIANTS else None
    return {"optim.lr": float(chosen[key])} if key in chosen else {}


def tuned_settings(scale: str, variant: str | Variant) -> dict[str, Any]:
    """`tuned_lr`, and for a variant of method `hybrid` the teacher weight `hybrid.beta` chosen with
    it (`hybrid_beta` in `configs/<scale>_lr.yaml`); a `hybrid_beta<value>` variant's own value wins."""
    tuned = tuned_lr(scale, variant)
    beta = _tuned_file(scale).get("hybrid_beta")
    if beta is not None and variant_method(variant) == "hybrid":
        tuned["hybrid.beta"] = float(beta)
    return tuned


_warned_paper: list[str] = []  # say once per process that paper scale needs GPUs and the hub


def experiment_config(scale: str, variant: str | Variant, seed: int, *, smoke: bool = False,
                      **overrides: Any) -> TrainConfig:
    """The config of one run of the paper's experiments at `scale` (`tiny`, `smol`, `paper`, or a
    smoke world of `SMOKE_SCALES`: its tiny scale with `smoke=True`)."""
    if scale in SMOKE_SCALES:
        scale, smoke = SMOKE_SCALES[scale], True
    if scale not in SCALES:
        raise ValueError(f"scale {scale!r}: expected one of {list(SCALES) + list(SMOKE_SCALES)}")
    if scale.startswith("paper") and not _warned_paper:
        print(f"scale {scale!r}: expects GPUs, vLLM (pip install -e .[vllm]), a teacher vLLM server and the Hugging Face hub")
        _warned_paper.append(scale)
    # An explicit optim.lr (or hybrid.beta) in `overrides` wins over the tuned one (lr selection
    # itself relies on it); the variant's own settings win over both.
    smoke_world = SMOKE_WORLDS.get(scale, "tiny_smoke")
    smoke_overrides = {**SMOKE_OVERRIDES, "model.student": smoke_world, "model.teacher": smoke_world}
    merged = {**(smoke_overrides if smoke else {}), **tuned_settings(scale, variant), **overrides,
              **variant_overrides(variant), "seed": seed}
    return load_config(SCALES[scale], overrides=merged)


def _train_and_evaluate(scale: str, variant: Variant | str, seed: int, smoke: bool, overrides: dict[str, Any]) -> None:
    """Worker body: train (or load) one run and cache its evaluation; results go to the registry."""
    import torch

    torch.set_num_threads(1)  # one core per worker: tiny models scale poorly across threads
    # Progress only as a line the parent draws (scope_lib.common.progress), never raw bars from many processes.
    cfg = experiment_config(scale, "scope" if variant == "base" else variant, seed, smoke=smoke,
                            **{"progress": relaying(), **overrides})
    evaluate_model(None if variant == "base" else get_run(cfg), cfg)


def default_workers() -> int:
    """Parallel runs for `run_grid`: $SCOPE_WORKERS, else one per CPU core (at most 4)."""
    return int(os.environ.get("SCOPE_WORKERS", min(4, os.cpu_count() or 1)))


def run_grid(scale: str, variants: list[str | Variant], seeds: list[int], *, smoke: bool = False, include_base: bool = True,
             workers: int | None = None, **overrides: Any):
    """Train (or load) every variant x seed and evaluate it: one tidy row per run and eval set.

    `variants`: Variants, or the names of named ones (`named_variant`). Columns: variant (its
    name), seed, eval_set, avg@k, pass@k, k. The base student (untrained) appears
    once as variant "base" (its evaluation does not depend on a training seed). Runs missing
    from the registry are trained in `workers` parallel processes (one thread each); the
    results are then read back from the registry, so an interrupted grid resumes where it
    stopped. Progress: one overall bar, and one line per worker (its run's training steps, then
    its evaluation) drawn by this process (`scope_lib.common.progress`), so a notebook shows clean
    lines rather than the workers' own bars. Returns (DataFrame, {(variant name, seed): EvalResult}).
    """
    import pandas as pd
    from tqdm.auto import tqdm

    variants = [as_variant(v) for v in variants]
    jobs = ([("base", seeds[0])] if include_base else []) + [(v, s) for v in variants for s in seeds]
    configs = {job: experiment_config(scale, "scope" if job[0] == "base" else job[0], job[1], smoke=smoke, **overrides)
               for job in jobs}
    # Build the world once, before any worker needs it: every job's config names the same one (no seed in it).
    world = load_world(WorldSpec.from_config(configs[jobs[0]]), need_teacher=False, progress=configs[jobs[0]].progress)
    missing = [job for job in jobs if not evaluation_path(configs[job], world.eval_sets, base=job[0] == "base").exists()]
    workers = default_workers() if workers is None else workers
    if workers > 1 and len(missing) > 1:
        context = multiprocessing.get_context("spawn")
        # Every worker dies with this process, even when it is SIGKILLed (a killed notebook
        # kernel): an orphan would go on writing to the registry that a rerun resumes from.
        # Its progress comes here and is drawn as one line per worker (WorkerBars).
        bars = WorkerBars(context, first_position=1)
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=context,
                                   initializer=worker_initializer, initargs=bars.initargs(die_with_parent, os.getpid()))
        overall = tqdm(total=len(missing), desc=f"{len(missing)} of {len(jobs)} runs to train, {workers} workers",
                       position=0)

        def finished(future):
            overall.update(1)
            future.result()  # re-raise a worker's error here, naming nothing lost: finished runs stay cached

        try:
            futures = {pool.submit(_train_and_evaluate, scale, v, s, smoke, overrides): (v, s) for v, s in missing}
            wait_drawing(futures, bars, on_done=finished)
        except Exception:
            pool.shutdown(wait=True, cancel_futures=True)  # runs already training finish and stay cached
            bars.close()
            overall.close()
            raise
        except BaseException:
            # Interrupted (KeyboardInterrupt, SystemExit): stop now rather than wait minutes
            # for the running runs; a rerun resumes them from their last checkpoints.
            if hasattr(pool, "kill_workers"):  # Python 3.14+
                pool.kill_workers()
            else:
                # The queue feeding the workers may be blocked writing to a pipe nobody reads once
                # they are dead; joining its thread would then hang the shutdown (a hang seen once
                # in the suite on a loaded machine). Nothing in the queue matters any more.
                call_queue = getattr(pool, "_call_queue", None)
                if call_queue is not None:
                    call_queue.cancel_join_thread()
                for process in list((pool._processes or {}).values()):
                    process.kill()
                pool.shutdown(wait=True, cancel_futures=True)
            bars.close(drain=False)
            overall.close()
            raise
        pool.shutdown(wait=True)
        bars.close()
        overall.close()
    rows, results = [], {}
    for job in jobs:
        variant, seed = job
        cfg = configs[job]
        result = evaluate_model(None if variant == "base" else get_run(cfg, world=None), cfg, world=world)
        name = variant if variant == "base" else variant.name
        results[(name, seed)] = result
        for eval_set, row in result.summary().items():
            rows.append({"variant": name, "seed": seed, "eval_set": eval_set, "k": result.k,
                         "avg@k": row[f"avg@{result.k}"], "pass@k": row[f"pass@{result.k}"]})
    return pd.DataFrame(rows), results


def run_histories(scale: str, variants: list[str | Variant], seeds: list[int], *, smoke: bool = False,
                  **overrides: Any) -> dict[tuple[str, int], list[dict]]:
    """Per-step training metrics of every variant x seed, keyed by (variant name, seed) (trained now
    if not in the registry)."""
    return {(as_variant(v).name, s): get_run(experiment_config(scale, v, s, smoke=smoke, **overrides)).history
            for v in variants for s in seeds}
