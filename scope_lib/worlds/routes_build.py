"""Build the route world (`scope_lib.worlds.routes`): tokenizer, teacher and student, stopped by
measured accuracy, not by a fixed step count.

Floating-point kernels differ between CPUs, so a fixed number of optimiser steps builds a
different student on another machine (an early-stopped student sits on the steep part of its
learning curve). Here each model trains until its greedy accuracy on a held-out validation
set (`routes.validation_set`, never an eval question) reaches its target, checked every
`check_every` steps: the student stops at the first check at or above `StopRule.target`
(it is meant to be weak: room for distillation), the teacher at its target or at `max_steps`.
The built world is then shipped inside the repository (`scope_lib.worlds.shipped`), so every machine
runs the same weights; `python -m scope_lib.worlds.rebuild` rebuilds it from nothing.

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
from functools import partial
from pathlib import Path
import random
import shutil

import torch

from scope_lib.worlds import routes
from scope_lib.worlds.models import ModelSpec, lr_at, make_model, pair_batch
from scope_lib.worlds.tokenizer import build_tokenizer, load_tokenizer
from scope_lib.rollout import generate_rollouts, Sampling
from scope_lib.verify import extract_boxed
from scope_lib.common.progress import bar as tqdm
from scope_lib.common.progress import WorkerBars, wait_drawing, worker_initializer

_FORMAT_VERSION = 1  # bump when the task, tokenizer or training code changes what is built
_LATER_MIX_FIELDS = {"misread_prob": 0.0, "reorder_prob": 0.0, "repair": "fix_line", "line_flaw_prob": 0.0,
                     "mask_flaws": False, "recheck_prob": 0.0, "recheck_flaw_prob": 0.3}  # SolutionMix fields
#                     added after the first shipped world (left out of its key while at these defaults)
_LATER_FIELDS = {"max_new_tokens": 96}  # RouteWorldConfig fields added later, same rule


@dataclass(frozen=True)
class StopRule:
    """When pretraining stops: the first validation check at or above `target`, else `max_steps`."""

    target: float  # greedy accuracy on the validation set
    check_every: int = 50  # optimiser steps between checks
    min_steps: int = 100  # no check before this


@dataclass(frozen=True)
class RepairStage:
    """Continued training of the pretrained teacher on repair traces (`mix`: slip-then-fix and
    misread-then-fix lines), stopped at the first check where its repair rate (`repair_rate` on
    `routes.flawed_prefix` cases of every kind in `kinds`, mean over kinds) reaches `stop.target`.

    A repair rate alone does not show that the teacher finds errors: one that writes `fix:` after
    any line also repairs (the probes in data/world_tiny_routes/probes/ found exactly that, and
    compare the fix token's probability after flawed and after clean lines to tell the two apart).
    Each check also records the clean greedy accuracy."""

    mix: routes.SolutionMix
    spec: ModelSpec  # lr, schedule, warm-up, seed; `steps` is the most it may train
    stop: StopRule
    kinds: tuple[str, ...] = routes.FLAW_KINDS
    cases_per_kind: int = 100  # validation problems, one flawed prefix each
    clean_target: float = 0.0  # ... and at a check where the clean greedy accuracy is at least this


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
    teacher_repair: RepairStage | None = None  # a second teacher stage on repair traces
    max_new_tokens: int = 96  # greedy generation length of the stop rules' measurements

    def as_dict(self) -> dict:
        """`dataclasses.asdict`, less the fields added after the first shipped world while they
        hold their defaults (so worlds built before them keep their key and records)."""
        fields = dataclasses.asdict(self)
        for mix in ("teacher_mix", "student_mix"):
            for name, default in _LATER_MIX_FIELDS.items():
                if fields[mix].get(name) == default:
                    del fields[mix][name]
        if fields["teacher_repair"] is None:
            del fields["teacher_repair"]
        else:
            for name, default in _LATER_MIX_FIELDS.items():
                if fields["teacher_repair"]["mix"].get(name) == default:
                    del fields["teacher_repair"]["mix"][name]
            if fields["teacher_repair"]["clean_target"] == 0.0:
                del fields["teacher_repair"]["clean_target"]
        for name, default in _LATER_FIELDS.items():
            if fields[name] == default:
                del fields[name]
        return fields

    def key(self) -> str:
        blob = json.dumps({"v": _FORMAT_VERSION, "task": "routes", **self.as_dict()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


# The first shipped route world (key 6fa936182eb0): its tokenizer and teacher are reused by the
# default world below, which adds the teacher's re-derivation stage and a new student.
FIRST_ROUTE_WORLD = RouteWorldConfig()

# The default tiny world. The teacher (the first world's, 4 x 128) is fine-tuned to re-derive:
# after its worked lines it writes `Start with S.` and works the problem again from the question
# (routes.recheck_text), on first passes whose lines are each flawed with P 0.3 (flawed lines out
# of the loss). It repairs a flawed prefix by working the problem again, which needs no error
# detection (a teacher of this size learned none: data/world_tiny_routes/probes/). It stops at the
# first check where it repairs at least 60% of slip and misread prefixes greedily while solving at
# least 85% of the validation problems from the question. The student (4 x 64, two heads of
# size 32, which vLLM's CPU attention takes; 0.28M parameters, 3.9x smaller than the teacher)
# writes a re-derivation in 30% of its pretraining solutions: a minority route of its own, not a
# foreign format. (A first student with the habit in 5% could not write a second pass: forced to,
# it restated the start in 11% of cases and ended right in none, and every distilling method fell
# below it on the validation split; data/world_tiny_routes/README.md.) Generation is 128 tokens
# long (two passes of a five-operation problem).
RECHECK_TEACHER_MIX = routes.SolutionMix(max_value=routes.TEACHER_MAX, rare_route_prob=0.03, slip_prob=0.0,
                                         mask_flaws=True, recheck_prob=1.0, recheck_flaw_prob=0.3)
RECHECK_STUDENT_MIX = dataclasses.replace(routes.STUDENT_MIX, mask_flaws=True, recheck_prob=0.3,
                                          recheck_flaw_prob=0.3)
ROUTE_WORLD = RouteWorldConfig(
    student=ModelSpec(layers=4, hidden=64, heads=2, ffn=256, steps=4000, schedule="constant", seed=1,
                      tiers=routes.TRAIN_TIERS),
    student_mix=RECHECK_STUDENT_MIX,
    teacher_repair=RepairStage(
        mix=RECHECK_TEACHER_MIX,
        spec=ModelSpec(steps=1500, warmup=20, lr=1e-3, schedule="constant", seed=7, tiers=routes.TRAIN_TIERS),
        stop=StopRule(target=0.6, check_every=100, min_steps=500), clean_target=0.85),
    max_new_tokens=128,
)
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
    batch = generate_rollouts(model, tokenizer, [routes.format_prompt(p) for p in problems], num_samples=1,
                              sampling=Sampling(temperature=0.0, max_new_tokens=max_new_tokens, batch_size=batch_size))
    return sum(extract_boxed(t) == p.answer for t, p in zip(batch.texts, problems)) / len(problems)


@torch.no_grad()
def repair_rate(model, tokenizer, cases: list[tuple], *, max_new_tokens: int = 96) -> float:
    """Fraction of `(problem, flawed prefix)` cases the model completes greedily to the right answer."""
    batch = generate_rollouts(model, tokenizer, [routes.format_prompt(p) + prefix for p, prefix in cases],
                              num_samples=1, sampling=Sampling(temperature=0.0, max_new_tokens=max_new_tokens))
    return sum(extract_boxed(t) == p.answer for (p, _), t in zip(cases, batch.texts)) / len(cases)


def repair_cases(problems, kinds: tuple[str, ...], *, seed: int = 0) -> dict[str, list[tuple]]:
    """{kind: [(problem, flawed prefix)]}: one `routes.flawed_prefix` of each kind per problem."""
    rng = random.Random(f"repair:{seed}")
    return {kind: [(p, routes.flawed_prefix(p, kind, rng)) for p in problems] for kind in kinds}


def flaw_masked_batch(pairs: list[tuple[str, str]], tokenizer):
    """`models.pair_batch` for solutions whose flawed lines start with `routes.OUT_OF_LOSS`: those
    lines are read (they are in the input) but not learned (label -100). Solutions are tokenized
    line by line, which gives the same tokens as a whole solution (digits, signs and newlines are
    tokens of their own: tests/test_route_world.py)."""
    rows = []
    for prompt, solution in pairs:
        ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
        labels = [-100] * len(ids)
        lines = solution.split("\n")
        for k, line in enumerate(lines):
            out = line.startswith(routes.OUT_OF_LOSS)
            piece = tokenizer(line.removeprefix(routes.OUT_OF_LOSS) + ("\n" if k < len(lines) - 1 else ""),
                              add_special_tokens=False)["input_ids"]
            ids += piece
            labels += [-100] * len(piece) if out else piece
        rows.append((ids + [tokenizer.eos_token_id], labels + [tokenizer.eos_token_id]))
    width = max(len(ids) for ids, _ in rows)
    out_ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    out_labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (ids, labels) in enumerate(rows):
        out_ids[i, : len(ids)] = torch.tensor(ids)
        out_labels[i, : len(ids)] = torch.tensor(labels)
        mask[i, : len(ids)] = 1
    return out_ids, mask, out_labels


def pretrain(model, tokenizer, spec: ModelSpec, stop: StopRule, mix: routes.SolutionMix | None, validation, *,
             progress: bool = True, desc: str = "pretrain", position: int = 0, measure=None,
             pairs: list[tuple[str, str]] | None = None, max_new_tokens: int = 96) -> dict:
    """Supervised training on `mix`'s solutions until `stop` says so; returns the record.

    `measure(model) -> (score, extras)` replaces the stop rule's measurement (default: greedy
    accuracy on `validation`); `extras` are recorded with each check. `pairs`: (prompt, target)
    texts of another task (`scope_lib.worlds.code_build`), `spec.steps * spec.batch_size` of them, used
    instead of `mix` (which is then None).
    """
    def default_measure(model):
        return greedy_accuracy(model, tokenizer, validation, max_new_tokens=max_new_tokens), {}

    measure = measure or default_measure

    if (pairs is None) == (mix is None):
        raise ValueError("pretrain: expected either mix (the route task) or pairs (another task's texts)")
    data = pairs if pairs is not None else routes.pretraining_texts(spec.steps * spec.batch_size, mix, seed=spec.seed,
                                                                    tiers=spec.tiers)
    if len(data) < spec.steps * spec.batch_size:
        raise ValueError(f"pairs: expected {spec.steps * spec.batch_size} (steps x batch_size) texts, got {len(data)}")
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay, betas=(0.9, 0.98))
    checks, losses = [], []
    bar = tqdm(range(spec.steps), desc=desc, disable=not progress, mininterval=2, position=position)
    for step in bar:
        model.train()
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, spec)
        chunk = data[step * spec.batch_size: (step + 1) * spec.batch_size]
        ids, mask, labels = (flaw_masked_batch if mix is not None and mix.mask_flaws else pair_batch)(chunk, tokenizer)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        done = step + 1
        if done >= stop.min_steps and done % stop.check_every == 0:
            model.eval()
            accuracy, extras = measure(model)
            checks.append({"step": done, "accuracy": accuracy, "loss": float(sum(losses[-20:]) / len(losses[-20:])),
                           **extras})
            bar.set_postfix(acc=f"{accuracy:.3f}", loss=f"{loss.item():.3f}")
            if accuracy >= stop.target:
                break
    model.eval()
    return {"steps": len(losses), "final_loss": losses[-1], "checks": checks,
            "reached_target": bool(checks and checks[-1]["accuracy"] >= stop.target)}


def train_and_save(name: str, spec: ModelSpec, stop: StopRule, tokenizer, max_positions: int, validation, dest: Path, *,
                   mix: routes.SolutionMix | None = None, pairs=None, measure=None, progress: bool = True,
                   position: int = 0, max_new_tokens: int = 96) -> dict:
    """A fresh model for `spec`, pretrained on one torch thread until `stop` (`pretrain`'s
    `mix`, `pairs` and `measure`), saved to `dest / name`; returns its record with the wall and
    CPU seconds and the parameter count. The builders of the route and code worlds use it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: one thread each, the two models side by side
    try:
        model = make_model(spec, tokenizer, max_positions)
        start, cpu_start = time.time(), time.process_time()
        record = pretrain(model, tokenizer, spec, stop, mix, validation, progress=progress, desc=f"pretrain {name}",
                          position=position, measure=measure, pairs=pairs, max_new_tokens=max_new_tokens)
        model.save_pretrained(dest / name)
        record.update(seconds=round(time.time() - start, 1), cpu_seconds=round(time.process_time() - cpu_start, 1),
                      threads=1, params=sum(p.numel() for p in model.parameters()))
        return record
    finally:
        torch.set_num_threads(threads)


def _build_model(config: RouteWorldConfig, name: str, tmp: Path, progress: bool, position: int) -> dict:
    record = train_and_save(name, getattr(config, name), getattr(config, f"{name}_stop"), load_tokenizer(tmp / "tokenizer"),
                            config.max_positions, routes.validation_set(config.validation_problems), tmp,
                            mix=getattr(config, f"{name}_mix"), progress=progress, position=position,
                            max_new_tokens=config.max_new_tokens)
    if name == "teacher" and config.teacher_repair is not None:
        record["repair"] = _repair_teacher(config, tmp, progress, position)
    return record


def _repair_teacher(config: RouteWorldConfig, tmp: Path, progress: bool, position: int) -> dict:
    """The repair stage: continue training `tmp/teacher` on repair traces, in place."""
    from transformers import LlamaForCausalLM

    stage = config.teacher_repair
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tokenizer = load_tokenizer(tmp / "tokenizer")
        model = LlamaForCausalLM.from_pretrained(tmp / "teacher")
        torch.manual_seed(stage.spec.seed)
        validation = routes.validation_set(config.validation_problems)
        cases = repair_cases(validation[: stage.cases_per_kind], stage.kinds)
        length = config.max_new_tokens

        def measure(model):
            # the score the stop rule reads: the mean repair rate, or 0 while the clean accuracy is
            # below `clean_target` (a teacher that re-derives but has forgotten how to solve)
            rates = {kind: repair_rate(model, tokenizer, c, max_new_tokens=length) for kind, c in cases.items()}
            clean = greedy_accuracy(model, tokenizer, validation, max_new_tokens=length)
            mean = sum(rates.values()) / len(rates)
            return (mean if clean >= stage.clean_target else 0.0), {"repair": rates, "repair_mean": mean, "clean": clean}

        before, extras = measure(model.eval())
        start, cpu_start = time.time(), time.process_time()
        record = pretrain(model, tokenizer, stage.spec, stage.stop, stage.mix, validation, progress=progress,
                          desc="repair teacher", position=position, measure=measure)
        model.save_pretrained(tmp / "teacher")
        record.update(before={"accuracy": before, **extras}, seconds=round(time.time() - start, 1),
                      cpu_seconds=round(time.process_time() - cpu_start, 1), threads=1)
        return record
    finally:
        torch.set_num_threads(threads)


def _teacher_part(config: RouteWorldConfig) -> dict:
    """What the tokenizer and teacher depend on (equal parts: a built teacher can be reused)."""
    part = config.as_dict()
    return {k: part[k] for k in ("vocab_size", "corpus_size", "max_positions", "validation_problems",
                                 "teacher", "teacher_stop", "teacher_mix")}


def build_route_world(config: RouteWorldConfig, dest: Path, *, progress: bool = True,
                      reuse_teacher: Path | None = None) -> Path:
    """Build tokenizer, teacher and student into `dest` (save_pretrained folders + done.json).

    `reuse_teacher`: a built route world whose tokenizer and teacher were built with the same
    settings (`_teacher_part`); they are copied and only the student is trained.
    """
    dest = Path(dest)
    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    record: dict = {"config": config.as_dict(), "key": config.key(), "task": "routes"}
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
        source_repair = source_config.get("teacher_repair")
        if source_repair is not None and source_repair != json.loads(json.dumps(config.as_dict().get("teacher_repair"))):
            raise ValueError(f"reuse_teacher {reuse_teacher}: its teacher went through another repair stage")
        if config.teacher_repair is not None and source_repair is None:
            names = ("teacher_repair", "student")  # the copied teacher still needs its repair stage
    else:
        tokenizer = build_tokenizer(config.vocab_size, texts=routes.corpus(config.corpus_size))
        tokenizer.save_pretrained(tmp / "tokenizer")
    start = time.time()
    jobs = {"teacher": partial(_build_model, config, "teacher", tmp, progress),
            "teacher_repair": partial(_repair_teacher, config, tmp, progress),
            "student": partial(_build_model, config, "student", tmp, progress)}
    results = {}
    if len(names) == 2 and (os.cpu_count() or 1) >= 2 and config.teacher.hidden > 64:
        context = multiprocessing.get_context("spawn")
        bars = WorkerBars(context, first_position=0, enabled=progress)  # one line per builder, drawn here
        try:
            with ProcessPoolExecutor(max_workers=2, mp_context=context, initializer=worker_initializer,
                                     initargs=bars.initargs()) as pool:
                futures = {n: pool.submit(jobs[n], i) for i, n in enumerate(names)}
                wait_drawing(futures.values(), bars)
                results = {n: f.result() for n, f in futures.items()}
        finally:
            bars.close()
    else:
        results = {n: jobs[n](0) for n in names}
    if "teacher_repair" in results:
        record["teacher"]["repair"] = results.pop("teacher_repair")
    record.update(results)
    record["build_seconds"] = round(time.time() - start, 1)
    (tmp / "done.json").write_text(json.dumps(record, indent=1))
    if dest.exists():
        raise FileExistsError(f"{dest}: already exists; remove it or build elsewhere")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(dest)  # atomic publish: a concurrent builder never sees half a world
    return dest


if __name__ == "__main__":  # quick manual build: python -m scope_lib.worlds.routes_build DEST
    import sys

    print(build_route_world(ROUTE_WORLD, Path(sys.argv[1])))
