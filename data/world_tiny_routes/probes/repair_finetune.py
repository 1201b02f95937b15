"""Probe: can the shipped tiny_routes teacher learn to repair flawed prefixes by fine-tuning?

    python data/world_tiny_routes/probes/repair_finetune.py OUT MISREAD_PROB LR STEPS SLIP_PROB REPAIR LINE_FLAW_PROB

Continues training worlds/tiny_routes/teacher (one thread, batch 32, constant lr after 20 warm-up
steps) on routes.pretraining_texts of a SolutionMix with the given trace settings, flawed lines
out of the loss (route_world.flaw_masked_batch). Every 100 steps it logs: greedy accuracy from
the prompt on 200 validation problems (`clean`), the greedy repair rate on 100 slip and 100
misread prefixes (routes.flawed_prefix, cut before the fix), and the mean probability of the
`fix` token right after a slipped line (`pfix_flawed`) and after the same line written right
(`pfix_clean`): a teacher that detects errors puts far more mass on the first. Writes OUT/log.json.
"""
import json
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from scope_lib.worlds import routes
from scope_lib.worlds.models import ModelSpec, lr_at
from scope_lib.worlds.routes_build import flaw_masked_batch, greedy_accuracy, repair_cases, repair_rate
from scope_lib.worlds.tokenizer import load_tokenizer

WORLD = Path(__file__).resolve().parents[3] / "worlds" / "tiny_routes"


def clean_twins(cases):
    """The same prefixes with the flawed line written right (same number of lines)."""
    out = []
    for p, pre in cases:
        steps = [tuple(x) for x in p.meta["steps"]]
        route = "subfirst" if p.meta["kind"] == "subfirst_only" else "inorder"
        out.append((p, "\n".join(routes.solution_text(p.meta["start"], steps, route).split("\n")[:pre.count("\n")]) + "\n"))
    return out


@torch.no_grad()
def fix_probability(model, tok, cases, n=40):
    fix = tok.convert_tokens_to_ids("fix")
    return round(sum(model(tok(routes.format_prompt(p) + pre, return_tensors="pt")["input_ids"]).logits[0, -1]
                     .softmax(-1)[fix].item() for p, pre in cases[:n]) / n, 3)


def probe(model, tok, val, cases, clean, step, loss, t0):
    model.eval()
    return {"step": step, "loss": loss, "clean": greedy_accuracy(model, tok, val),
            **{k: repair_rate(model, tok, c) for k, c in cases.items()},
            "pfix_flawed": fix_probability(model, tok, cases["slip"]), "pfix_clean": fix_probability(model, tok, clean),
            "s": round(time.time() - t0)}


def train(model, tok, spec, data, *, lr, every, check, max_len=None):
    """The probes' training loop: AdamW, `spec`'s lr schedule, batches of 32 from `data` with
    flawed lines out of the loss, clipped gradients; `check(step, loss)` every `every` steps."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=spec.weight_decay, betas=(0.9, 0.98))
    for step in range(spec.steps):
        model.train()
        for group in opt.param_groups:
            group["lr"] = lr_at(step, spec)
        ids, mask, labels = flaw_masked_batch(data[step * 32:(step + 1) * 32], tok)
        if max_len is not None:
            ids, mask, labels = ids[:, :max_len], mask[:, :max_len], labels[:, :max_len]
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if (step + 1) % every == 0:
            check(step + 1, round(loss.item(), 4))


def main():
    out, misread, lr, steps, slip, repair, line_flaw = (Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]),
                                                        int(sys.argv[4]), float(sys.argv[5]), sys.argv[6], float(sys.argv[7]))
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    tok = load_tokenizer(WORLD / "tokenizer")
    model = AutoModelForCausalLM.from_pretrained(WORLD / "teacher")
    mix = routes.SolutionMix(max_value=routes.TEACHER_MAX, rare_route_prob=0.03, slip_prob=slip, misread_prob=misread,
                             repair=repair, line_flaw_prob=line_flaw, mask_flaws=True)
    spec = ModelSpec(steps=steps, warmup=20, lr=lr, schedule="constant", seed=7, tiers=routes.TRAIN_TIERS)
    data = routes.pretraining_texts(steps * spec.batch_size, mix, seed=spec.seed)
    val = routes.validation_set(200)
    cases = repair_cases(val[:100], routes.FLAW_KINDS)
    clean = clean_twins(cases["slip"])
    t0 = time.time()
    log = [probe(model, tok, val, cases, clean, 0, None, t0)]

    def check(step, loss):
        log.append(probe(model, tok, val, cases, clean, step, loss, t0))
        print(log[-1], flush=True)
        (out / "log.json").write_text(json.dumps(log, indent=1))

    train(model, tok, spec, data, lr=lr, every=100, check=check)


if __name__ == "__main__":
    main()
