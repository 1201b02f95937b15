"""When the overlapped path grades (`reward.overlap: true`) within a code-world step: how much of
the grading runs beside generation, how much after it, and how short the tail after generation
could be with the same grading cost and perfect sharing between the two grading threads.

    python bench/grading_timeline.py [--method grpo] [--steps 21] [--set KEY=VALUE ...] [--out FILE.json]

One process, one torch thread, the shipped `tiny_code` world and preset with `reward.overlap`,
one trainer. The pipeline's scorer (`scope_lib.pipeline.OverlappedScorer`) is wrapped, for this
run only, to stamp (time.perf_counter, from the start of the step) each hand-over of finished
rows (with their count), each grading call's start and end and the thread that ran it, and the
end of generation (when the decoder's thread turns to the trainer's early forward pass,
`scope_lib.trainer._early_forward`, which it runs before `grade_queued_here`; the first of the
two). Per step:

- `gen_end_s`, `first_handover_s`: when generation ended and when its first rows were handed over;
- `tail_s`: from the end of generation to the end of the last grading call;
- `busy_before_s`, `busy_after_s`: grading-call seconds (summed over threads) before and after
  the end of generation;
- `tail_bound_s = busy_after_s / 2`: the tail had the grading left at the end of generation been
  shared perfectly between the two threads (no call split finer than it was, no call cheaper);
- `step_s` (collect and update).

Prints one line per step; writes JSON with the date, the CPU and `uptime` before and after, and
the per-step rows with their medians over the steps after the first (which launches the kept
sandboxes).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))
from reward_overlap import _git, _uptime  # noqa: E402  (after the paths above)
from scope_lib.common.machine import cpu_model  # noqa: E402


class Stamps:
    """Wraps OverlappedScorer's hand-over, grading call and end-of-generation methods (and the
    trainer module's early forward pass, which the decoder's thread runs first once generation
    is done) for this process, recording (kind, seconds since `begin()`, ...)."""

    def __init__(self, scorer_class, trainer_module=None):
        self.events: list[tuple] = []
        self.t0 = 0.0
        grade_rows, run_job, queued_here = scorer_class.grade_rows, scorer_class._run_job, scorer_class.grade_queued_here
        stamps = self

        def stamped_grade_rows(scorer, grade, rows, texts, problems):
            stamps.events.append(("handover", stamps.now(), len(rows)))
            return grade_rows(scorer, grade, rows, texts, problems)

        def stamped_run_job(scorer, job):
            start = stamps.now()
            ran = run_job(scorer, job)
            if ran:
                stamps.events.append(("call", start, stamps.now(), threading.current_thread().name))
            return ran

        def stamped_queued_here(scorer):
            stamps.events.append(("gen_end", stamps.now()))
            return queued_here(scorer)

        scorer_class.grade_rows, scorer_class._run_job = stamped_grade_rows, stamped_run_job
        scorer_class.grade_queued_here = stamped_queued_here
        if trainer_module is not None:
            early_forward = trainer_module._early_forward

            def stamped_early_forward(*args, **kwargs):
                stamps.events.append(("gen_end", stamps.now()))
                return early_forward(*args, **kwargs)

            trainer_module._early_forward = stamped_early_forward

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def begin(self) -> None:
        self.events.clear()
        self.t0 = time.perf_counter()

    def summary(self) -> dict:
        gen_end = next(e[1] for e in self.events if e[0] == "gen_end")  # the first: the end of generation
        calls = [e for e in self.events if e[0] == "call"]
        handovers = [e for e in self.events if e[0] == "handover"]
        before = sum(min(end, gen_end) - start for _, start, end, _ in calls if start < gen_end)
        after = sum(end - max(start, gen_end) for _, start, end, _ in calls if end > gen_end)
        return {"gen_end_s": gen_end, "first_handover_s": min(t for _, t, _ in handovers),
                "tail_s": max(0.0, max(end for _, _, end, _ in calls) - gen_end),
                "busy_before_s": before, "busy_after_s": after, "tail_bound_s": after / 2,
                "handovers": [[round(t, 4), n] for _, t, n in handovers],
                "calls": [[round(start, 4), round(end, 4), "decoder" if name == "MainThread" else "worker"]
                          for _, start, end, name in calls]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="grpo")
    parser.add_argument("--steps", type=int, default=21)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override (YAML value), e.g. optim.prompts_per_step=8")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    import torch
    import yaml

    torch.set_num_threads(1)
    import scope_lib.trainer as trainer_module
    from scope_lib import pipeline
    from scope_lib.config import load_config
    from scope_lib.trainer import Timer, Trainer

    overrides = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.set)}
    stamps = Stamps(pipeline.OverlappedScorer, trainer_module)
    cfg = load_config("tiny_code", overrides={**overrides, "method": args.method, "progress": False, "checkpoint_every": 0,
                                              "reward.overlap": True, "output_dir": tempfile.mkdtemp(prefix="bench-timeline-")})
    trainer = Trainer(cfg)
    commit = _git("rev-parse", "--short", "HEAD").strip()
    results = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "machine": cpu_model(),
               "cores": os.cpu_count(), "uptime_start": _uptime(), "commit": commit, "method": args.method,
               "preset": "tiny_code", "overrides": overrides, "steps": args.steps, "rows": []}
    for step in range(args.steps):
        timer = Timer()
        stamps.begin()
        batch, _ = trainer.collect(step, timer)
        trainer.update(batch, timer)
        row = {"step_s": stamps.now(), **stamps.summary()}
        results["rows"].append(row)
        print(f"{args.method} {step}: step {row['step_s']:.3f} s, generation ends {row['gen_end_s']:.3f}, first rows "
              f"{row['first_handover_s']:.3f}, tail {row['tail_s']:.3f} (perfectly shared {row['tail_bound_s']:.3f}), "
              f"grading before / after generation {row['busy_before_s']:.3f} / {row['busy_after_s']:.3f}", flush=True)
    counted = results["rows"][1:] or results["rows"]
    keys = ("step_s", "gen_end_s", "first_handover_s", "tail_s", "tail_bound_s", "busy_before_s", "busy_after_s")
    results["median"] = {key: statistics.median(r[key] for r in counted) for key in keys}
    results["median"]["first_handover_share_of_generation"] = statistics.median(
        r["first_handover_s"] / r["gen_end_s"] for r in counted)
    results["uptime_end"] = _uptime()
    print(json.dumps(results["median"], indent=1))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
