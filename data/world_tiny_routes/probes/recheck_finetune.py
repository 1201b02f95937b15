"""Probe: a teacher that re-derives instead of detecting (a check pass).

    python data/world_tiny_routes/probes/recheck_finetune.py OUT LR STEPS LINE_FLAW_PROB

Repairing a flawed prefix by a `fix:` line needs the teacher to notice the flaw, which no probe
teacher learned (README.md). This probe tries a habit that needs no detection: after its worked
lines the teacher restates the start (`Start with S.`) and works the problem again from the
question, and boxes the second pass's result. Its training texts: a first pass in which each line
is flawed with probability LINE_FLAW_PROB (slip or misread; the flaw carried on, as a student
would; flawed lines out of the loss) and an always-right second pass. Fine-tunes the shipped
teacher (one thread, batch 32, constant lr after 20 warm-up steps); every 100 steps logs greedy
accuracy from the prompt, and the greedy repair rate on the slip and misread prefixes of
repair_finetune.py. Writes OUT/log.json.
"""
import json
import random
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from scope_lib.worlds import routes
from scope_lib.worlds.models import ModelSpec
from scope_lib.worlds.routes_build import greedy_accuracy, repair_cases, repair_rate
from scope_lib.worlds.tokenizer import load_tokenizer

sys.path.insert(0, str(Path(__file__).parent))
from repair_finetune import train  # noqa: E402

WORLD = Path(__file__).resolve().parents[3] / "worlds" / "tiny_routes"


def recheck_text(rng, start, ordered, line_flaw):
    """A first pass with carried-on flaws (flawed lines marked out of the loss), then a right second pass."""
    lines, value = [], start
    for op, b in ordered:
        flawed = rng.random() < line_flaw
        misread = routes._misread_operand(rng, value, op, b, avoid=ordered) if flawed and rng.random() < 0.5 else None
        if misread is not None:
            b_used = misread
            c = value + b_used if op == "+" else value - b_used
        else:
            b_used = b
            c = value + b if op == "+" else value - b
            if flawed:
                c += routes._slip_delta(rng, c)
        lines.append((routes.OUT_OF_LOSS if flawed else "") + f"{value}{op}{b_used}={c}")
        value = c
    second = routes.ordered_text(start, ordered)
    return "\n".join(lines) + f"\nStart with {start}.\n" + second


def texts(num, line_flaw, seed):
    rng = random.Random(f"recheck:{seed}")
    mix = routes.SolutionMix(max_value=routes.TEACHER_MAX, rare_route_prob=0.03, slip_prob=0.0)
    out = []
    for prompt, solution in routes.pretraining_texts(num, mix, seed=seed):
        import re

        words = re.findall(r"(Start with|Add|Subtract) (\d+)", prompt)
        start = int(words[0][1])
        steps = [("+" if w == "Add" else "-", int(n)) for w, n in words[1:]]
        order = [(op, int(b)) for _, op, b, _, _ in routes.parse_lines(solution)]
        assert sorted(order) == sorted(steps)
        out.append((prompt, recheck_text(rng, start, order, line_flaw)))
    return out


def main():
    out, lr, steps, line_flaw = Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    tok = load_tokenizer(WORLD / "tokenizer")
    model = AutoModelForCausalLM.from_pretrained(WORLD / "teacher")
    model.config.max_position_embeddings = max(model.config.max_position_embeddings, 160)
    spec = ModelSpec(steps=steps, warmup=20, lr=lr, schedule="constant", seed=7, tiers=routes.TRAIN_TIERS)
    data = texts(steps * spec.batch_size, line_flaw, spec.seed)
    val = routes.validation_set(200)
    cases = repair_cases(val[:100], routes.FLAW_KINDS)
    log, t0 = [], time.time()

    def probe(step, loss):
        model.eval()
        return {"step": step, "loss": loss, "clean": greedy_accuracy(model, tok, val, max_new_tokens=140),
                **{k: repair_rate(model, tok, c) for k, c in cases.items()}, "s": round(time.time() - t0)}

    def check(step, loss):
        log.append(probe(step, loss))
        print(log[-1], flush=True)
        (out / "log.json").write_text(json.dumps(log, indent=1))

    log.append(probe(0, None))
    train(model, tok, spec, data, lr=lr, every=100, check=check, max_len=160)

if __name__ == "__main__":
    main()
