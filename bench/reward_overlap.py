"""Side-by-side step time on the code world with grading after generation (before) and grading
overlapped with it (`reward.overlap`, after), for SCOPE and GRPO.

    python bench/reward_overlap.py [--steps 3] [--out data/bench_reward_overlap/<name>.json]

One process, one torch thread (as each run of the notebooks), the shipped `tiny_code` world and
preset (16 prompts x 8 rollouts, up to 72 tokens, every reward judged in the sandbox). For each
method two trainers, synchronous and overlapped, take the same steps in turn (the overlapped one
first on odd steps), so machine load hits both alike; their batches are bitwise equal
(tests/test_reward_overlap.py). Per step: wall time, the time the main thread spent in "reward"
(grading, or waiting for the worker's grades), and the worker's grading seconds.

What grading adds to a step: the synchronous step without its "reward" time is a step without
grading; "adds" is (step - that) / that, for each variant. Prints medians and ratios, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path


def _cpu() -> str:
    try:
        return subprocess.run(["lscpu"], capture_output=True, text=True).stdout.split("Model name:")[1].splitlines()[0].strip()
    except (OSError, IndexError):
        return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--methods", default="scope,grpo")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from scope_lib.config import load_config
    from scope_lib.trainer import Timer, Trainer

    root = Path(tempfile.mkdtemp(prefix="bench-reward-overlap-"))
    results = {"machine": _cpu(), "cores": os.cpu_count(), "loadavg_start": os.getloadavg(),
               "torch_threads": 1, "steps": args.steps, "preset": "tiny_code", "methods": {}}
    for method in args.methods.split(","):
        trainers = {name: Trainer(load_config("tiny_code", overrides={
            "method": method, "progress": False, "checkpoint_every": 0, "reward.overlap": name == "overlapped",
            "output_dir": str(root / f"{method}-{name}")})) for name in ("synchronous", "overlapped")}
        rows = {name: [] for name in trainers}
        for step in range(args.steps):
            order = ["synchronous", "overlapped"] if step % 2 == 0 else ["overlapped", "synchronous"]
            for name in order:
                trainer, timer = trainers[name], Timer()
                start = time.perf_counter()
                batch, _ = trainer.collect(step, timer)
                trainer.update(batch, timer)
                rows[name].append({"step_s": time.perf_counter() - start, "reward_s": timer.seconds["reward"],
                                   "generation_s": timer.seconds["generation"],
                                   "reward_worker_s": timer.seconds.get("reward_worker", 0.0),
                                   "n_correct": int(batch["correct"].sum())})
            assert rows["synchronous"][-1]["n_correct"] == rows["overlapped"][-1]["n_correct"]
            print(method, step, {n: round(r[-1]["step_s"], 2) for n, r in rows.items()}, flush=True)
        med = {name: {key: statistics.median(r[key] for r in rs) for key in rs[0]} for name, rs in rows.items()}
        no_grading = statistics.median(r["step_s"] - r["reward_s"] for r in rows["synchronous"])
        summary = {
            "median": med, "step_without_grading_s": no_grading,
            "grading_adds_synchronous": med["synchronous"]["step_s"] / no_grading - 1,
            "grading_adds_overlapped": med["overlapped"]["step_s"] / no_grading - 1,
            "step_ratio_before_over_after": med["synchronous"]["step_s"] / med["overlapped"]["step_s"],
            "rows": rows,
        }
        results["methods"][method] = summary
        print(method, json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=1), flush=True)
    results["loadavg_end"] = os.getloadavg()
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
