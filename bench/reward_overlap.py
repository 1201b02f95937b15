"""Side-by-side step time on the code world: the sandbox grading of an earlier commit (before)
against this checkout's (after), synchronous and overlapped with generation (`reward.overlap`),
for SCOPE and GRPO; and the grading of one step's programs alone, before against after.

    python bench/reward_overlap.py [--steps 3] [--before REV] [--grading-repeats 5] [--set KEY=VALUE ...] [--out FILE.json]

One process, one torch thread (as each run of the notebooks), the shipped `tiny_code` world and
preset (its `optim.prompts_per_step` prompts x 8 rollouts a step, up to 72 tokens, every reward
judged in the sandbox).

- "before": this repository's `scope_lib/grading/` as of `--before` (default `BEFORE`, the last
  commit before the batch sandbox was made cheaper), read with `git show` into a private package
  beside the current one, so that both run in this process at the same time; its programs run in
  its own inside files.
- Per method three trainers take the same steps in turn (the order rotating each step, so that
  machine load hits all alike): "before" and "after" grade synchronously, "overlapped" grades
  with this checkout on the pipeline's worker. Their batches are the same (same seed, same
  verdicts: checked here per step on the rewards; tests/test_reward_overlap.py checks the rest).
  Per step: wall time, the main thread's "reward" time (grading, or waiting for the worker's
  grades) and the worker's grading seconds.
- What grading adds to a step, measured: two more trainers take the same steps with grading
  free, "after_free" (synchronous) and "overlapped_free" (reward.overlap), whose grader looks up
  the verdicts the after-trainer's sandbox gave the same texts in the same step (it runs first
  each step; the batches are the same, so every lookup hits). Each step, "adds" is a path's step
  over its free-grading twin's step, minus 1 ("grading_adds_measured": per step, then the mean
  with its 95% t-interval over the steps after the first, and the median). The first step is
  left out: it launches the sandboxes a process keeps.
- `--late-forward` adds two trainers, "overlapped_late" and its free twin "overlapped_late_free":
  the overlapped path without the update's first forward pass beside the last grades (the
  trainer's `_early_forward` replaced by nothing during their `collect`, so the update's forward
  waits for the grades, as before commit 4c9c1a9). "early_over_late": per step, the overlapped
  step over the late one, minus 1 (mean, 95% t-interval, median over the steps after the first).
- The older estimate is kept for comparison with earlier records: a synchronous step without its
  "reward" time as a step without grading ("grading_adds"), and each synchronous step's own
  reward time over the rest of that step ("grading_share_per_step").
- Grading alone: the programs of the last step's after-trainer rollouts, graded `--grading-repeats`
  times by each side in turn (alternating which goes first); per program the wall time and the
  CPU time of the sandboxes (the process's reaped children) and of this process, and whether
  the verdicts are the same.

Prints medians and ratios, writes JSON with the date, the CPU and `uptime` before and after.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
from scope_lib.common.machine import cpu_model  # noqa: E402  (after the path above)
# The last commit of main before the batch sandbox's per-program work was cut (its grading is "before").
BEFORE = "5211a89"
# Per method, the trainers that take the same steps: "after" first each step (the free graders
# read its verdicts), the others in an order that rotates.
VARIANTS = ("before", "after", "overlapped", "after_free", "overlapped_free")


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def grading_at(rev: str, name: str = "_grading_before"):
    """`scope_lib.grading` as of commit `rev`, imported as the package `name` beside the current
    one (its absolute imports of scope_lib.grading renamed; everything else is shared)."""
    folder = Path(tempfile.mkdtemp(prefix="grading-before-")) / name
    folder.mkdir()
    for path in _git("ls-tree", "--name-only", rev, "scope_lib/grading/").split():
        if path.endswith(".py"):
            text = _git("show", f"{rev}:{path}")
            (folder / Path(path).name).write_text(text.replace("scope_lib.grading", name))
    sys.path.insert(0, str(folder.parent))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(folder.parent))


def kept_sandbox_cpu(grading) -> float:
    """CPU seconds so far of the batch sandboxes `grading` keeps between batches (its
    sandbox_launch.kept_sandbox_pids: bwrap and the init, the init's reaped children included);
    they are not the host's reaped children until they end. 0 for a grading without them."""
    pids = getattr(grading.sandbox_launch, "kept_sandbox_pids", lambda: set())()
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
        except (OSError, IndexError, ValueError):
            pass
    return ticks / os.sysconf("SC_CLK_TCK")


def _cpu_seconds(grading=None) -> tuple[float, float]:
    """(CPU seconds of this process, of the sandboxes: its reaped children and `grading`'s kept ones)."""
    times = os.times()
    kept = kept_sandbox_cpu(grading) if grading is not None else 0.0
    return times.user + times.system, times.children_user + times.children_system + kept


def grading_alone(sides: dict, texts: list[str], problems: list, repeats: int, packages: dict) -> dict:
    """Each side's grade(texts, problems), `repeats` times in turn: per program wall and CPU ms
    (`packages`: each side's grading package, whose kept sandboxes' CPU counts too)."""
    rows = {name: [] for name in sides}
    verdicts = {}
    for repeat in range(repeats):
        order = list(sides) if repeat % 2 == 0 else list(reversed(sides))
        for name in order:
            own0, children0 = _cpu_seconds(packages[name])
            start = time.perf_counter()
            verdicts[name] = sides[name](texts, problems)
            wall = time.perf_counter() - start
            own1, children1 = _cpu_seconds(packages[name])
            n = len(texts)
            rows[name].append({"wall_ms_per_program": 1e3 * wall / n, "sandbox_cpu_ms_per_program": 1e3 * (children1 - children0) / n,
                               "host_cpu_ms_per_program": 1e3 * (own1 - own0) / n})
    names = list(sides)
    median = {name: {key: statistics.median(r[key] for r in rs) for key in rs[0]} for name, rs in rows.items()}
    return {"programs": len(texts), "repeats": repeats, "median": median,
            "wall_ratio_before_over_after": median[names[0]]["wall_ms_per_program"] / median[names[1]]["wall_ms_per_program"],
            "sandbox_cpu_ratio_before_over_after": (median[names[0]]["sandbox_cpu_ms_per_program"]
                                                    / median[names[1]]["sandbox_cpu_ms_per_program"]),
            "same_verdicts": verdicts[names[0]] == verdicts[names[1]], "n_correct": sum(verdicts[names[1]]), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--methods", default="scope,grpo")
    parser.add_argument("--before", default=BEFORE, help="commit whose scope_lib/grading is 'before'")
    parser.add_argument("--grading-repeats", type=int, default=5)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for every trainer (YAML value), e.g. optim.prompts_per_step=8")
    parser.add_argument("--late-forward", action="store_true",
                        help="also the overlapped path without its early forward pass (and its free twin)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    import yaml

    overrides = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.set)}

    import torch

    torch.set_num_threads(1)
    from scope_lib import grading
    from scope_lib.common.stats import mean_ci
    from scope_lib.config import load_config
    import scope_lib.trainer as trainer_module
    from scope_lib.trainer import Timer, Trainer

    def late(trainer):  # the overlapped path as before 4c9c1a9: the update's forward waits for the grades
        collect = trainer.collect

        def late_collect(step, timer):
            early, trainer_module._early_forward = trainer_module._early_forward, lambda *a, **k: None
            try:
                return collect(step, timer)
            finally:
                trainer_module._early_forward = early
        trainer.collect = late_collect

    before = grading_at(args.before)
    root = Path(tempfile.mkdtemp(prefix="bench-reward-overlap-"))
    after_rev = _git("rev-parse", "--short", "HEAD").strip() + (" (uncommitted changes)" if _git("status", "--porcelain", "scope_lib/grading") else "")
    results = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "machine": cpu_model(),
               "cores": os.cpu_count(), "uptime_start": _uptime(), "loadavg_start": os.getloadavg(), "torch_threads": 1,
               "steps": args.steps, "preset": "tiny_code", "overrides": overrides, "before": _git("rev-parse", "--short", args.before).strip(),
               "after": after_rev, "methods": {}}
    last_inputs = None
    for method in args.methods.split(","):
        trainers = {}
        variants = VARIANTS + (("overlapped_late", "overlapped_late_free") if args.late_forward else ())
        for name in variants:
            cfg = load_config("tiny_code", overrides={
                **overrides, "method": method, "progress": False, "checkpoint_every": 0,
                "reward.overlap": name.startswith("overlapped"), "output_dir": str(root / f"{method}-{name}")})
            trainers[name] = Trainer(cfg)
            if name.startswith("overlapped_late"):
                late(trainers[name])
        before_cfg = trainers["before"].cfg
        trainers["before"].grade = lambda texts, problems: before.grade_config(before_cfg, list(texts), list(problems))
        after_grade = trainers["after"].grade

        verdicts: dict = {}  # (text, problem id) -> the after-trainer's verdict, this step

        def recording_grade(texts, problems):
            nonlocal last_inputs
            last_inputs = (list(texts), list(problems))
            out = after_grade(texts, problems)
            verdicts.update(((t, p.id), v) for t, p, v in zip(texts, problems, out))
            return out

        def free_grade(texts, problems):  # the same verdicts, at no cost
            return [verdicts[(t, p.id)] for t, p in zip(texts, problems)]

        trainers["after"].grade = recording_grade
        for name in [n for n in trainers if n.endswith("_free")]:
            trainers[name].grade = free_grade
        rows = {name: [] for name in trainers}
        for step in range(args.steps):
            verdicts.clear()
            others = [name for name in trainers if name != "after"]
            order = ["after"] + others[step % len(others):] + others[:step % len(others)]
            correct = {}
            for name in order:
                trainer, timer = trainers[name], Timer()
                start = time.perf_counter()
                batch, _ = trainer.collect(step, timer)
                trainer.update(batch, timer)
                correct[name] = batch["correct"].clone()
                rows[name].append({"step_s": time.perf_counter() - start, "reward_s": timer.seconds["reward"],
                                   "generation_s": timer.seconds["generation"],
                                   "reward_worker_s": timer.seconds.get("reward_worker", 0.0),
                                   "n_correct": int(batch["correct"].sum())})
            assert all(torch.equal(correct["after"], c) for c in correct.values()), \
                f"{method} step {step}: the variants' rewards differ"
            print(method, step, {n: round(r[-1]["step_s"], 2) for n, r in rows.items()}, flush=True)
        med = {name: {key: statistics.median(r[key] for r in rs) for key in rs[0]} for name, rs in rows.items()}
        no_grading = statistics.median(r["step_s"] - r["reward_s"] for name in ("before", "after") for r in rows[name])
        measured = {}
        for path in [n for n in ("after", "overlapped", "overlapped_late") if n in trainers]:
            adds = [a["step_s"] / b["step_s"] - 1 for a, b in zip(rows[path][1:], rows[path + "_free"][1:])]
            mean, low, high = mean_ci(adds)  # one step: an undefined (NaN) interval
            measured[path] = {"mean": mean, "ci95": [low, high], "median": statistics.median(adds), "steps": len(adds)}
        if "overlapped_late" in trainers:
            ratios = [a["step_s"] / b["step_s"] - 1 for a, b in zip(rows["overlapped"][1:], rows["overlapped_late"][1:])]
            mean, low, high = mean_ci(ratios)
            measured["early_over_late"] = {"mean": mean, "ci95": [low, high], "median": statistics.median(ratios),
                                           "steps": len(ratios)}
        summary = {
            "median": med, "grading_adds_measured": measured, "step_without_grading_s": no_grading,
            "grading_adds": {name: med[name]["step_s"] / no_grading - 1 for name in ("before", "after", "overlapped")},
            # Per step, its own grading time over the rest of the same step (synchronous only):
            # steady under load that changes from one step to the next.
            "grading_share_per_step": {name: statistics.median(r["reward_s"] / (r["step_s"] - r["reward_s"]) for r in rows[name])
                                       for name in ("before", "after")},
            "step_ratio_before_over_after": med["before"]["step_s"] / med["after"]["step_s"],
            "step_ratio_before_over_overlapped": med["before"]["step_s"] / med["overlapped"]["step_s"],
            "reward_ratio_before_over_after": med["before"]["reward_s"] / med["after"]["reward_s"],
            "rows": rows,
        }
        results["methods"][method] = summary
        print(method, json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=1), flush=True)
        del trainers
    if last_inputs is not None and args.grading_repeats > 0:
        texts, problems = last_inputs
        cfg = load_config("tiny_code", overrides=overrides)
        sides = {"before": lambda t, p: before.grade_config(cfg, t, p), "after": lambda t, p: grading.grade_config(cfg, t, p)}
        results["grading_alone"] = grading_alone(sides, texts, problems, args.grading_repeats,
                                                 {"before": before, "after": grading})
        print("grading alone", json.dumps({k: v for k, v in results["grading_alone"].items() if k != "rows"}, indent=1), flush=True)
    results["uptime_end"], results["loadavg_end"] = _uptime(), os.getloadavg()
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
