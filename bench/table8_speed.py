"""Table 8 at `tiny_routes` scale: SCOPE's step (synchronous and with overlapped teacher scoring)
against GRPO's and OPD's, per component, in one process.

    nice -n 5 python bench/table8_speed.py [--steps 6] [--gen-batch 32] [--threads 1] --out data/bench_table8
    python bench/table8_speed.py --smoke --out /tmp/bench_smoke   # seconds: the smoke route world, 2 steps

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

--out DIR writes DIR/table8_bench.json (the record: medians per variant and component, every
counted step's seconds, the machine, its load average at the start and end, the date and the
command) and DIR/README.md, generated from the record alone (`render_readme`), with a reading
that judges the project's speed targets (scope_lib.notebook.figure_data.speed_targets). Notebook 09 reads the record.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's scope_lib, not an installed one

from scope_lib.common.machine import cpu_model  # noqa: E402  (after the path above)
from scope_lib.notebook import figure_data  # noqa: E402

RECORD_NAME = "table8_bench.json"
SMOKE_WORLD = "tiny_routes_smoke"


def measure(*, steps: int, gen_batch: int, world_name: str, extra: dict | None = None):
    """Run the four variants' steps interleaved; ({variant: [seconds per counted step]}, parameter counts,
    the GRPO step's prompts, group size and token budget)."""
    import torch

    from scope_lib import losses
    from scope_lib.batching import micro_batches
    from scope_lib.config import load_config
    from scope_lib.trainer import Timer, Trainer
    from scope_lib.weights import DPAW
    from scope_lib.world import WorldSpec, load_world

    common = {"model.student": world_name, "model.teacher": world_name, "progress": False,
              "checkpoint_every": 0, "rollout.batch_size": gen_batch, "steps": steps, **(extra or {})}
    variants = dict(zip(figure_data.BENCH_VARIANTS, [
        {"method": "grpo"},
        {"method": "scope"},
        {"method": "scope", "teacher.overlap": True},
        {"method": "opd", "rollout.group_size": 1},
    ]))
    base = load_config("tiny", overrides={**common, "output_dir": "/tmp/table8-bench/world"})
    world = load_world(WorldSpec.from_config(base))
    n_student = sum(p.numel() for p in world.student.parameters())
    n_teacher = sum(p.numel() for p in world.teacher.parameters())
    trainers = {}
    for name, overrides in variants.items():
        cfg = load_config("tiny", overrides={**common, **overrides, "output_dir": f"/tmp/table8-bench/{len(trainers)}"})
        # each its own copy of the student
        trainers[name] = Trainer(cfg, world=load_world(WorldSpec.from_config(cfg), train_seed=cfg.seed))
    times: dict[str, list[dict[str, float]]] = {name: [] for name in trainers}
    for step in range(steps):
        for name, trainer in trainers.items():
            timer = Timer()
            with timer("step"):
                batch, _ = trainer.collect(step, timer)
                trainer.update(batch, timer)
            if trainer.method.name == "scope" and not trainer.cfg.teacher.overlap:
                with torch.no_grad():
                    old_logp, _ = trainer._old_logp_pass(batch)
                    dpaw = DPAW.from_config(trainer.cfg.scope)
                    start = time.perf_counter()
                    for rows in micro_batches(batch["group"], trainer.cfg.optim.micro_batch_size):
                        losses.dpaw_weights(old_logp[rows], batch["teacher_logp"][rows], batch["response_mask"][rows].float(),
                                            batch["correct"][rows], batch["group"][rows], dpaw)
                    timer.seconds["dpaw"] = time.perf_counter() - start
            if step > 0:
                times[name].append(dict(timer.seconds))
            print(f"step {step} {name}: {timer.seconds['step']:.2f}s", flush=True)
    cfg = trainers["GRPO"].cfg
    setting = {"prompts_per_step": cfg.optim.prompts_per_step, "group_size": cfg.rollout.group_size,
               "max_new_tokens": cfg.rollout.max_new_tokens}
    return times, {"teacher": n_teacher, "student": n_student}, setting


def build_record(times: dict[str, list[dict[str, float]]], *, components: list[str], parameters: dict[str, int],
                 world: str, steps: int, gen_batch: int, threads: int, torch_version: str, cpu: str, cores: int,
                 load_start: tuple, load_end: tuple, date: str, command: str, smoke: bool = False,
                 setting: dict | None = None) -> dict:
    """The bench's record from the measured seconds: per variant and component the median over the
    counted steps (a component a step did not time counts 0 s, as the trainer logs it; the DPAW
    time only where it was timed), ratios to GRPO's step, the targets' verdicts and the setting."""
    keys = {**{c: c for c in components}, figure_data.BENCH_WORKER: "teacher_scoring_worker",
            figure_data.BENCH_DPAW: "dpaw", "step": "step"}  # record key -> Timer key

    def median(name: str, key: str) -> float | None:
        if key == "dpaw" and not any(key in t for t in times[name]):
            return None
        values = [t.get(key, 0.0) for t in times[name]]
        return statistics.median(values) if values else None

    grpo = median("GRPO", "step")
    variants = {}
    for name in times:
        medians = {out: median(name, key) for out, key in keys.items()}
        ratio = medians["step"] / grpo if medians["step"] is not None and grpo else None
        variants[name] = {"median_s": medians, "step_ratio_to_grpo": ratio, "counted_steps": len(times[name]),
                          "per_step_s": {out: [t.get(key, 0.0) for t in times[name]] for out, key in keys.items()
                                         if key != "dpaw" or medians[out] is not None}}
    record = {
        "bench": "bench/table8_speed.py", "date": date, "command": command, "smoke": smoke,
        "world": world, "parameters": parameters, "machine": {"cpu": cpu, "cores": cores},
        "torch": torch_version, "threads": threads, "steps": steps, "counted_steps": max(steps - 1, 0),
        "gen_batch": gen_batch, "setting": dict(setting or {}), "load_average": {"start": list(load_start), "end": list(load_end)},
        "components": list(components), "variants": variants,
    }
    sync = variants.get("SCOPE (synchronous)", {}).get("median_s", {})
    record["dpaw"] = {"median_s": sync.get(figure_data.BENCH_DPAW), "of": "SCOPE (synchronous)",
                      "share_of_step": (sync[figure_data.BENCH_DPAW] / sync["step"]
                                        if sync.get(figure_data.BENCH_DPAW) is not None and sync.get("step") else None)}
    record["targets"] = [{k: v for k, v in t.items()} for t in figure_data.speed_targets(record)]
    return record


def render_readme(record: dict) -> str:
    """DIR/README.md from the record alone: the setting, the per-component table and a reading."""
    table = figure_data.bench_table(record)
    columns = [*record["components"], figure_data.BENCH_WORKER, figure_data.BENCH_DPAW, "step"]
    headers = [*record["components"], "teacher (worker)", "DPAW (Eq. 4-5)", "step", "step / GRPO"]
    n_teacher, n_student = record["parameters"]["teacher"], record["parameters"]["student"]
    setting = record.get("setting") or {}
    setting_text = (f"{setting['prompts_per_step']} prompts x {setting['group_size']} rollouts (OPD: x 1), "
                    if {"prompts_per_step", "group_size"} <= setting.keys() else "OPD with G = 1, ")
    lines = [
        f"# Table 8 bench, {record['date']} (bench/table8_speed.py)", "",
        "Generated by the bench from its record [`table8_bench.json`](table8_bench.json); no number here is typed by hand.",
        "", f"Command: `{record['command']}`" + (" (smoke setting: not a measurement)" if record.get("smoke") else ""), "",
        f"World {record['world']}: teacher {n_teacher / 1e6:.2f}M, student {n_student / 1e6:.2f}M parameters "
        f"({n_teacher / n_student:.1f}x). Machine: {figure_data.bench_machine_text(record)}. {setting_text}generation "
        f"batches of {record['gen_batch']} rows; medians of {record['counted_steps']} interleaved steps after a "
        "warm-up, seconds.", "",
        "| method | " + " | ".join(headers) + " |",
        "|---|" + "---:|" * len(headers),
    ]
    for name, row in table.iterrows():
        cells = ["" if row[c] != row[c] else f"{row[c]:.3f}" for c in columns]  # NaN: not timed in this variant
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {row['step / GRPO']:.3f}x |")
    targets = figure_data.speed_targets(record)
    sync_ratio = table.loc["SCOPE (synchronous)", "step / GRPO"]
    reading = (f"Reading: SCOPE synchronous / GRPO step = {sync_ratio:.3f}x (teacher scoring "
               f"{table.loc['SCOPE (synchronous)', 'teacher_scoring']:.3f} s of "
               f"{table.loc['SCOPE (synchronous)', 'step']:.3f} s). " + ". ".join(t["text"] for t in targets) + ".")
    if targets[0]["met"] is False:
        reading += " What limits the overlapped step: " + figure_data.overlap_limits(record)
    lines += ["", reading, ""]
    return "\n".join(lines)


def write_outputs(record: dict, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """DIR/table8_bench.json and DIR/README.md (rendered from the record)."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    record_path, readme = folder / RECORD_NAME, folder / "README.md"
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    readme.write_text(render_readme(record))
    return record_path, readme


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=None, help="steps per method (the first is a warm-up); 6, smoke 2")
    parser.add_argument("--gen-batch", type=int, default=None, help="rollout.batch_size: rows per generation batch; "
                                                                    "32, smoke 8 (overlap needs several a step)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (the worker adds one)")
    parser.add_argument("--smoke", action="store_true", help=f"the {SMOKE_WORLD} world, 4 prompts, 2 steps: seconds, "
                                                             "for tests (its numbers measure nothing)")
    parser.add_argument("--out", required=True, help=f"folder for {RECORD_NAME} and README.md")
    args = parser.parse_args(argv)
    steps = args.steps if args.steps is not None else (2 if args.smoke else 6)
    gen_batch = args.gen_batch if args.gen_batch is not None else (8 if args.smoke else 32)
    if steps < 2:
        parser.error("--steps: at least 2 (the first is a warm-up)")

    import torch

    torch.set_num_threads(args.threads)
    from scope_lib.trainer import TIMERS

    command = shlex.join(["python", *(sys.argv if argv is None else ["bench/table8_speed.py", *argv])])
    load_start = os.getloadavg()
    date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    world = SMOKE_WORLD if args.smoke else "tiny_routes"
    extra = {"optim.prompts_per_step": 4, "optim.mini_batch_prompts": 4, "rollout.max_new_tokens": 16} if args.smoke else {}
    times, parameters, setting = measure(steps=steps, gen_batch=gen_batch, world_name=world, extra=extra)
    record = build_record(times, components=[k for k in TIMERS if k != "step"], parameters=parameters, world=world,
                          steps=steps, gen_batch=gen_batch, threads=args.threads, torch_version=torch.__version__,
                          cpu=cpu_model(), cores=os.cpu_count() or 1, load_start=load_start, load_end=os.getloadavg(),
                          date=date, command=command, smoke=args.smoke, setting=setting)
    record_path, readme = write_outputs(record, args.out)
    print(readme.read_text())
    print(f"wrote {record_path} and {readme}")
    return record


if __name__ == "__main__":
    main()
