"""Side-by-side speed of the trainer's step at `tiny` scale: before/after each speed-up.

    python bench/step_speed.py [--repeats 5] [--out data/step_speed.md]

Runs in one process on one torch thread (as each parallel run of the notebooks does), on the
built tiny world (built first if missing), alternating the two variants of each comparison so
machine load hits both alike:

1. rollout decoding, 16 prompts x 8 samples at T = 1.0, up to 64 tokens: `model.generate`
   vs the project's loop (`scope_lib.rollout._decode`), same prompts and seeds;
2. one SCOPE step (exact KL, the tiny preset) with pi_old from its own pass and the teacher
   asked again in the update (before) vs pi_old from the update pass and the teacher's full
   distributions kept from scoring (after), on the same collected batch;
3. evaluation of the base student (200 problems x k = 16 at T = 0.6): generate vs the loop.

Prints medians in seconds and the ratio before / after, and writes them as Markdown.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from scope_lib.common.machine import cpu_model


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None, help="also write the table to this Markdown file")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from scope_lib.evaluate import evaluate
    from scope_lib.experiments.grid import experiment_config
    from scope_lib.rollout import Sampling, generate_rollouts
    from scope_lib.trainer import Timer, Trainer

    cfg = experiment_config("tiny", "scope", 0, output_dir="/tmp/scope-bench", progress=False, checkpoint_every=0)
    before = Trainer(experiment_config("tiny", "scope", 0, output_dir="/tmp/scope-bench-a", progress=False,
                                       checkpoint_every=0, **{"optim.old_logp_pass": "always"}))
    after = Trainer(cfg)
    world = after.world
    prompts = [world.format_prompt(p) for p in world.train_problems[:16]]
    rows = []

    def decode(use_generate):
        return lambda: generate_rollouts(world.student, world.tokenizer, prompts, num_samples=8,
                                         sampling=Sampling(temperature=1.0, max_new_tokens=64), seed=1,
                                         use_generate=use_generate)

    rows.append(("rollout decoding (128 x <= 64 tokens)",) + _pair(decode(True), decode(False), args.repeats))

    batch, _ = before.collect(0, Timer())

    def step(trainer, drop):
        def run():
            state = {k: v.clone() for k, v in trainer.student.state_dict().items()}
            opt = trainer.optimizer.state_dict()
            timer = Timer()
            with timer("step"):  # the parts of a step the change touches: pi_old pass + update
                if trainer is before:
                    with timer("old_logprob"):
                        trainer._old_logp_pass(batch)
                trainer.update({k: v for k, v in batch.items() if k not in drop}, timer)
            trainer.student.load_state_dict(state)
            trainer.optimizer.load_state_dict(opt)
        return run

    rows.append(("SCOPE pi_old pass + update (exact KL)",) + _pair(step(before, {"teacher_logits"}),
                                                                  step(after, {"old_logp"}), args.repeats))

    def evaluation(use_generate):
        import scope_lib.evaluate as evaluate_module

        def run():
            original = evaluate_module.generate_rollouts
            evaluate_module.generate_rollouts = lambda *a, **k: original(*a, use_generate=use_generate, **k)
            try:
                evaluate(world.student, world.tokenizer, world.eval_sets, k=16,
                         sampling=Sampling(temperature=0.6, max_new_tokens=64), format_prompt=world.format_prompt,
                         progress=False)
            finally:
                evaluate_module.generate_rollouts = original
        return run

    rows.append(("evaluation (200 problems x 16 samples)",) + _pair(evaluation(True), evaluation(False),
                                                                    max(1, args.repeats // 2)))
    cpu = cpu_model()
    lines = [f"Machine: {cpu}, torch {torch.__version__}, 1 thread; "
             f"medians of alternating repeats (seconds).", "",
             "| what | before | after | before / after |", "|---|---:|---:|---:|"]
    for name, a, b in rows:
        lines.append(f"| {name} | {a:.3f} | {b:.3f} | {a / b:.2f}x |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


def _pair(before, after, repeats):
    a, b = [], []
    for _ in range(repeats):  # alternate, so drifting machine load hits both
        a.append(_seconds(before))
        b.append(_seconds(after))
    return statistics.median(a), statistics.median(b)


if __name__ == "__main__":
    main()
