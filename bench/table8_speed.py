"""Table 8 at `tiny_routes` scale: SCOPE's step (synchronous and with overlapped teacher scoring)
against GRPO's and OPD's, per component, in one process.

    nice -n 5 python bench/table8_speed.py [--steps 6] [--gen-batch 32] [--threads 1] --out data/table8_speed.md

The shipped `tiny_routes` world (teacher ~1.09M, student ~0.33M parameters). Every method runs
the tiny preset (16 prompts x 8 rollouts, the exact-KL option, one update per batch) with the
same generation batch (`rollout.batch_size` = --gen-batch rows; overlap needs several batches a
step) on --threads torch threads. The methods' steps are interleaved (step i of each, then step
i + 1), so drifting machine load hits all alike; the first step of each is a warm-up and is not
counted. OPD is Table 3's G = 1 (16 rollouts a step).

Columns are Table 8's components (scope_lib.trainer.TIMERS), medians over the counted steps, in
seconds. With overlap, `teacher_scoring` is the time the step waited for the scoring worker
after generation; the worker's own scoring time is the `teacher (worker)` column. `DPAW (Eq. 4-5)`
is the weight computation alone (losses.dpaw_weights over the step's micro-batches, timed on
its own after the step; inside the update it is part of actor_update). Ratios are to GRPO's step.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's scope_lib, not an installed one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=6, help="steps per method (the first is a warm-up)")
    parser.add_argument("--gen-batch", type=int, default=32, help="rollout.batch_size: rows per generation batch")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (the worker adds one)")
    parser.add_argument("--out", required=True, help="write the Markdown table here")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from scope_lib import losses
    from scope_lib.config import load_config
    from scope_lib.trainer import TIMERS, Timer, Trainer, _micro_batches
    from scope_lib.world import load_world

    common = {"model.student": "tiny_routes", "model.teacher": "tiny_routes", "progress": False,
              "checkpoint_every": 0, "rollout.batch_size": args.gen_batch, "steps": args.steps}
    variants = {
        "GRPO": {"method": "grpo"},
        "SCOPE (synchronous)": {"method": "scope"},
        "SCOPE (overlapped)": {"method": "scope", "teacher.overlap": True},
        "OPD (G=1)": {"method": "opd", "rollout.group_size": 1},
    }
    base = load_config("tiny", overrides={**common, "output_dir": "/tmp/table8-bench/world"})
    world = load_world(base)
    n_student = sum(p.numel() for p in world.student.parameters())
    n_teacher = sum(p.numel() for p in world.teacher.parameters())
    trainers = {}
    for name, overrides in variants.items():
        cfg = load_config("tiny", overrides={**common, **overrides, "output_dir": f"/tmp/table8-bench/{len(trainers)}"})
        trainers[name] = Trainer(cfg, world=load_world(cfg))  # each its own copy of the student
    times: dict[str, list[dict[str, float]]] = {name: [] for name in trainers}
    for step in range(args.steps):
        for name, trainer in trainers.items():
            timer = Timer()
            with timer("step"):
                batch, _ = trainer.collect(step, timer)
                trainer.update(batch, timer)
            if trainer.method.name == "scope" and not trainer.cfg.teacher.overlap:
                with torch.no_grad():
                    old_logp, _ = trainer._old_logp_pass(batch)
                    start = time.perf_counter()
                    s = trainer.cfg.scope
                    for rows in _micro_batches(batch["group"], trainer.cfg.optim.micro_batch_size):
                        losses.dpaw_weights(old_logp[rows], batch["teacher_logp"][rows], batch["response_mask"][rows].float(),
                                            batch["correct"][rows], batch["group"][rows], tau=s.tau,
                                            student_direction=s.student_direction, teacher_direction=s.teacher_direction,
                                            normalize=s.normalize)
                    timer.seconds["dpaw"] = time.perf_counter() - start
            if step > 0:
                times[name].append(dict(timer.seconds))
            print(f"step {step} {name}: {timer.seconds['step']:.2f}s", flush=True)

    def median(name, key):
        values = [t.get(key, 0.0) for t in times[name]]
        return statistics.median(values) if values else float("nan")

    grpo_step = median("GRPO", "step")
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine()) if Path("/proc/cpuinfo").exists() else platform.machine()
    columns = [*[k for k in TIMERS if k != "step"], "teacher_scoring_worker", "dpaw", "step"]
    headers = [*[k for k in TIMERS if k != "step"], "teacher (worker)", "DPAW (Eq. 4-5)", "step"]
    lines = [
        f"World tiny_routes: teacher {n_teacher / 1e6:.2f}M, student {n_student / 1e6:.2f}M parameters "
        f"({n_teacher / n_student:.1f}x). Machine: {cpu}, torch {torch.__version__}, {args.threads} thread(s) "
        f"(+1 scoring worker with overlap); 16 prompts x 8 rollouts (OPD: x 1), generation batches of "
        f"{args.gen_batch} rows; medians of {args.steps - 1} interleaved steps after a warm-up, seconds.", "",
        "| method | " + " | ".join(headers) + " | step / GRPO |",
        "|---|" + "---:|" * (len(headers) + 1),
    ]
    for name in trainers:
        cells = [f"{median(name, key):.3f}" if key != "dpaw" or name == "SCOPE (synchronous)" else "" for key in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {median(name, 'step') / grpo_step:.3f}x |")
    text = "\n".join(lines)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
