"""Probe: does a teacher trained from scratch with repair traces learn to repair?

    python data/world_tiny_routes/probes/repair_from_scratch.py OUT REPAIR LINE_FLAW_PROB STEPS

The tiny_routes teacher's architecture and recipe (4 x 128, cosine lr 3e-3, 100 warm-up steps,
batch 32, one thread, the shipped tokenizer), trained on TEACHER_MIX's routes with every line
flawed with probability LINE_FLAW_PROB (slip or misread, even odds), flawed lines out of the loss,
repaired in style REPAIR (`fix_line` or `carry`). Every 250 steps the probe of
repair_finetune.py (clean accuracy, repair rates, fix-token probability after flawed and clean
lines). Writes OUT/log.json.
"""
import json
import sys
import time
from pathlib import Path

import torch

from scope_lib.worlds import routes
from scope_lib.worlds.models import ModelSpec, make_model
from scope_lib.worlds.routes_build import repair_cases
from scope_lib.worlds.tokenizer import load_tokenizer

sys.path.insert(0, str(Path(__file__).parent))
from repair_finetune import WORLD, clean_twins, probe, train  # noqa: E402


def main():
    out, repair, line_flaw, steps = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    tok = load_tokenizer(WORLD / "tokenizer")
    spec = ModelSpec(steps=steps, warmup=100, tiers=routes.TRAIN_TIERS)
    model = make_model(spec, tok, 160)
    mix = routes.SolutionMix(max_value=routes.TEACHER_MAX, rare_route_prob=0.03, slip_prob=0.0, line_flaw_prob=line_flaw,
                             mask_flaws=True, repair=repair)
    data = routes.pretraining_texts(steps * spec.batch_size, mix, seed=spec.seed)
    val = routes.validation_set(200)
    cases = repair_cases(val[:100], routes.FLAW_KINDS)
    clean = clean_twins(cases["slip"])
    log, t0 = [], time.time()

    def check(step, loss):
        log.append(probe(model, tok, val, cases, clean, step, loss, t0))
        print(log[-1], flush=True)
        (out / "log.json").write_text(json.dumps(log, indent=1))

    train(model, tok, spec, data, lr=spec.lr, every=250, check=check)

if __name__ == "__main__":
    main()
