"""Build the route world (`scope_lib.routes`): tokenizer, teacher and student, stopped by
measured accuracy, not by a fixed step count.

Floating-point kernels differ between CPUs, so a fixed number of optimiser steps builds a
different student on another machine (an early-stopped student sits on the steep part of its
learning curve). Here each model trains until its greedy accuracy on a held-out validation
set (`routes.validation_set`, never an eval question) reaches its target, checked every
`check_every` steps: the student stops at the first check at or above `StopRule.target`
(it is meant to be weak: room for distillation), the teacher at its target or at `max_steps`.
The built world is then shipped inside the repository (`scope_lib.shipped`), so every machine
runs the same weights; `python -m scope_lib.rebuild_world` rebuilds it from nothing.

Public: `RouteWorldConfig`, `ROUTE_WORLD`, `ROUTE_SMOKE_WORLD`, `build_route_world`,
`greedy_accuracy`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch

from scope_lib import routes
from scope_lib.models import ModelSpec, lr_at, make_model, pair_batch
from scope_lib.tokenizer import build_tokenizer, load_tokenizer

_FORMAT_VERSION = 1  # bump when the task, tokenizer or training code changes what is built


@dataclass(frozen=True)
class StopRule:
    """When pretraining stops: the first validation check at or above `target`, else `max_steps`."""

    target: float  # greedy accuracy on the validation set
    check_every: int = 50  # optimiser steps between checks
    min_steps: int = 100  # no check before this


@dataclass(frozen=True)
class RouteWorldConfig:
    """Everything that determines a built route world (its hash names the build)."""

    vocab_size: int = 320  # digits are single tokens; ~60 merges for the words
    corpus_size: int = 2000  # tokenizer corpus
    max_positions: int = 160  # longest prompt + solution with a fix line is ~120 tokens
    validation_problems: int = 200
    # The teacher: 4 x 128 (1.09M parameters, 3.3x the student), trained to convergence under a
    # cosine schedule, on three-digit values too, with slip-then-fix traces (routes.TEACHER_MIX).
    teacher: ModelSpec = field(default_factory=lambda: ModelSpec(steps=3000, warmup=100, tiers=routes.TRAIN_TIERS))
    teacher_stop: StopRule = field(default_factory=lambda: StopRule(target=0.95, check_every=200, min_steps=600))
    # The student: 3 x 80 (0.33M), constant lr, stopped early once it solves about half of the
    # validation problems greedily: weak, with knowledge the teacher has.
    student: ModelSpec = field(default_factory=lambda: ModelSpec(
        layers=3, hidden=80, heads=4, ffn=320, steps=4000, schedule="constant", seed=1, tiers=routes.TRAIN_TIERS))
    student_stop: StopRule = field(default_factory=lambda: StopRule(target=0.5, check_every=50, min_steps=200))
    teacher_mix: routes.SolutionMix = routes.TEACHER_MIX  # what the teacher's solutions look like
    student_mix: routes.SolutionMix = routes.STUDENT_MIX

    def key(self) -> str:
        blob = json.dumps({"v": _FORMAT_VERSION, "task": "routes", **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


ROUTE_WORLD = RouteWorldConfig()
ROUTE_SMOKE_WORLD = RouteWorldConfig(
    max_positions=160, validation_problems=16,
    teacher=ModelSpec(layers=2, hidden=32, heads=2, ffn=64, steps=20, batch_size=16, warmup=5, tiers=routes.TRAIN_TIERS),
    teacher_stop=StopRule(target=1.0, check_every=10, min_steps=10),
    student=ModelSpec(layers=1, hidden=32, heads=2, ffn=64, steps=10, batch_size=16, warmup=5, schedule="constant",
                      seed=1, tiers=routes.TRAIN_TIERS),
    student_stop=StopRule(target=1.0, check_every=10, min_steps=10),
)


@torch.no_grad()
def greedy_accuracy(model, tokenizer, problems, *, max_new_tokens: int = 96, batch_size: int = 256) -> float:
    """Fraction of `problems` whose greedy solution ends in the right `\\boxed{}` answer."""
    from scope_lib.rollout import generate_rollouts
    from scope_lib.verify import extract_boxed

    batch = generate_rollouts(model, tokenizer, [routes.format_prompt(p) for p in problems], num_samples=1,
                              temperature=0.0, max_new_tokens=max_new_tokens, batch_size=batch_size)
    return sum(extract_boxed(t) == p.answer for t, p in zip(batch.texts, problems)) / len(problems)


def pretrain(model, tokenizer, spec: ModelSpec, stop: StopRule, mix: routes.SolutionMix, validation, *,
             progress: bool = True, desc: str = "pretrain", position: int = 0) -> dict:
    """Supervised pretraining on `mix`'s solutions until `stop` says so; returns the record."""
    from tqdm.auto import tqdm

    data = routes.pretraining_texts(spec.steps * spec.batch_size, mix, seed=spec.seed, tiers=spec.tiers)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay, betas=(0.9, 0.98))
    checks, losses = [], []
    bar = tqdm(range(spec.steps), desc=desc, disable=not progress, mininterval=2, position=position)
    for step in bar:
        model.train()
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, spec)
        ids, mask, labels = pair_batch(data[step * spec.batch_size: (step + 1) * spec.batch_size], tokenizer)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        done = step + 1
        if done >= stop.min_steps and done % stop.check_every == 0:
            model.eval()
            accuracy = greedy_accuracy(model, tokenizer, validation)
            checks.append({"step": done, "accuracy": accuracy, "loss": float(sum(losses[-20:]) / len(losses[-20:]))})
            bar.set_postfix(acc=f"{accuracy:.3f}", loss=f"{loss.item():.3f}")
            if accuracy >= stop.target:
                break
    model.eval()
    return {"steps": len(losses), "final_loss": losses[-1], "checks": checks,
            "reached_target": bool(checks and checks[-1]["accuracy"] >= stop.target)}


def _build_model(config: RouteWorldConfig, name: str, tmp: Path, progress: bool, position: int) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: one thread each, the two models side by side
    try:
        spec, stop = getattr(config, name), getattr(config, f"{name}_stop")
        tokenizer = load_tokenizer(tmp / "tokenizer")
        model = make_model(spec, tokenizer, config.max_positions)
        validation = routes.validation_set(config.validation_problems)
        start, cpu_start = time.time(), time.process_time()
        record = pretrain(model, tokenizer, spec, stop, getattr(config, f"{name}_mix"), validation, progress=progress,
                          desc=f"pretrain {name}", position=position)
        model.save_pretrained(tmp / name)
        record.update(seconds=round(time.time() - start, 1), cpu_seconds=round(time.process_time() - cpu_start, 1),
                      threads=1, params=sum(p.numel() for p in model.parameters()))
        return record
    finally:
        torch.set_num_threads(threads)


def _teacher_part(config: RouteWorldConfig) -> dict:
    """What the tokenizer and teacher depend on (equal parts: a built teacher can be reused)."""
    part = dataclasses.asdict(config)
    return {k: part[k] for k in ("vocab_size", "corpus_size", "max_positions", "validation_problems",
                                 "teacher", "teacher_stop", "teacher_mix")}


def build_route_world(config: RouteWorldConfig, dest: Path, *, progress: bool = True,
                      reuse_teacher: Path | None = None) -> Path:
    """Build tokenizer, teacher and student into `dest` (save_pretrained folders + done.json).

    `reuse_teacher`: a built route world whose tokenizer and teacher were built with the same
    settings (`_teacher_part`); they are copied and only the student is trained.
    """
    import shutil

    dest = Path(dest)
    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    record: dict = {"config": dataclasses.asdict(config), "key": config.key(), "task": "routes"}
    names = ("teacher", "student")
    if reuse_teacher is not None:
        source = json.loads((Path(reuse_teacher) / "done.json").read_text())
        source_config = source["config"]
        if {k: source_config.get(k) for k in _teacher_part(config)} != json.loads(json.dumps(_teacher_part(config))):
            raise ValueError(f"reuse_teacher {reuse_teacher}: its tokenizer or teacher was built with other settings")
        for part in ("tokenizer", "teacher"):
            shutil.copytree(Path(reuse_teacher) / part, tmp / part)
        record["teacher"] = {**source["teacher"], "reused_from": source["key"]}
        names = ("student",)
    else:
        tokenizer = build_tokenizer(config.vocab_size, texts=routes.corpus(config.corpus_size))
        tokenizer.save_pretrained(tmp / "tokenizer")
    start = time.time()
    if len(names) == 2 and (os.cpu_count() or 1) >= 2 and config.teacher.hidden > 64:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
            futures = {n: pool.submit(_build_model, config, n, tmp, progress, i) for i, n in enumerate(names)}
            record.update({n: f.result() for n, f in futures.items()})
    else:
        record.update({n: _build_model(config, n, tmp, progress, 0) for n in names})
    record["build_seconds"] = round(time.time() - start, 1)
    (tmp / "done.json").write_text(json.dumps(record, indent=1))
    if dest.exists():
        raise FileExistsError(f"{dest}: already exists; remove it or build elsewhere")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(dest)  # atomic publish: a concurrent builder never sees half a world
    return dest


if __name__ == "__main__":  # quick manual build: python -m scope_lib.route_world DEST
    import sys

    print(build_route_world(ROUTE_WORLD, Path(sys.argv[1])))
