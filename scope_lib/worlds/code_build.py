"""Build the tiny code world (`scope_lib.worlds.code`): tokenizer, teacher and student, each
stopped by its greedy pass rate on validation problems, judged in the sandbox.

The same recipe as the route world (`scope_lib.worlds.routes_build`, whose training loop and stop rule
this reuses): the teacher trains until it passes `teacher_stop.target` of the validation
problems' hidden tests (or `max_steps`), the student stops at the first check at or above its
lower target, so it is weak and has room to learn from rewards or from the teacher. The built
world is shipped in `worlds/tiny_code/` (`scope_lib.worlds.shipped`); `python -m scope_lib.worlds.rebuild
tiny_code` rebuilds it from nothing.

Public: `CodeWorldConfig`, `CODE_WORLD`, `CODE_SMOKE_WORLD`, `build_code_world`, `pass_rate`.
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

from scope_lib.worlds import code as code_task
from scope_lib.worlds.models import ModelSpec
from scope_lib.worlds.routes_build import StopRule, train_and_save
from scope_lib.worlds.tokenizer import build_tokenizer, load_tokenizer
from scope_lib import grading
from scope_lib.rollout import generate_rollouts, Sampling

_FORMAT_VERSION = 1  # bump when the task, tokenizer or training code changes what is built
MAX_NEW_TOKENS = 72  # the longest reference program (five branch lines) is ~62 tokens


@dataclass(frozen=True)
class CodeWorldConfig:
    """Everything that determines a built code world (its hash names the build)."""

    vocab_size: int = 320
    corpus_size: int = 2000  # tokenizer corpus
    max_positions: int = 128  # longest prompt + program is ~100 tokens
    validation_problems: int = 200
    # The teacher: 4 x 128 (1.09M parameters), cosine schedule, to a 0.95 pass rate.
    teacher: ModelSpec = field(default_factory=lambda: ModelSpec(steps=3000, warmup=100, tiers=code_task.TRAIN_TIERS))
    teacher_stop: StopRule = field(default_factory=lambda: StopRule(target=0.95, check_every=100, min_steps=200))
    # The student: 3 x 80 (0.33M, 3.3x smaller), constant lr, stopped at the first check that
    # passes 40% of the validation problems: weak, with knowledge the teacher has.
    student: ModelSpec = field(default_factory=lambda: ModelSpec(
        layers=3, hidden=80, heads=4, ffn=320, steps=3000, schedule="constant", seed=1, tiers=code_task.TRAIN_TIERS))
    student_stop: StopRule = field(default_factory=lambda: StopRule(target=0.4, check_every=25, min_steps=50))

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def key(self) -> str:
        blob = json.dumps({"v": _FORMAT_VERSION, "task": "code", **self.as_dict()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


CODE_WORLD = CodeWorldConfig()
CODE_SMOKE_WORLD = CodeWorldConfig(
    validation_problems=16,
    teacher=ModelSpec(layers=2, hidden=32, heads=2, ffn=64, steps=20, batch_size=16, warmup=5,
                      tiers=code_task.TRAIN_TIERS),
    teacher_stop=StopRule(target=1.0, check_every=10, min_steps=10),
    student=ModelSpec(layers=1, hidden=32, heads=2, ffn=64, steps=10, batch_size=16, warmup=5, schedule="constant",
                      seed=1, tiers=code_task.TRAIN_TIERS),
    student_stop=StopRule(target=1.0, check_every=10, min_steps=10),
)


@torch.no_grad()
def pass_rate(model, tokenizer, problems, *, batch_size: int = 256) -> float:
    """Fraction of `problems` whose greedy program passes all its hidden tests in the sandbox."""
    batch = generate_rollouts(model, tokenizer, [code_task.format_prompt(p) for p in problems], num_samples=1,
                              sampling=Sampling(temperature=0.0, max_new_tokens=MAX_NEW_TOKENS, batch_size=batch_size))
    verdicts = grading.grade("code", list(batch.texts), list(problems), code=grading.CodeGrading(extract="raw"))
    return sum(verdicts) / len(problems)


def _build_model(config: CodeWorldConfig, name: str, tmp: Path, progress: bool, position: int) -> dict:
    spec = getattr(config, name)
    tokenizer = load_tokenizer(tmp / "tokenizer")
    validation = code_task.validation_set(config.validation_problems)
    pairs = [(code_task.format_prompt(p), code_task.format_target(p))
             for p in code_task.train_stream(spec.steps * spec.batch_size, seed=spec.seed, tiers=spec.tiers)]
    return train_and_save(name, spec, getattr(config, f"{name}_stop"), tokenizer, config.max_positions, validation, tmp,
                          pairs=pairs, measure=lambda model: (pass_rate(model, tokenizer, validation), {}),
                          progress=progress, position=position)


def build_code_world(config: CodeWorldConfig, dest: Path, *, progress: bool = True) -> Path:
    """Build tokenizer, teacher and student into `dest` (save_pretrained folders + done.json)."""
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest}: already exists; remove it or build elsewhere")
    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    record: dict = {"config": config.as_dict(), "key": config.key(), "task": "code"}
    tokenizer = build_tokenizer(config.vocab_size, texts=code_task.corpus(config.corpus_size))
    tokenizer.save_pretrained(tmp / "tokenizer")
    start = time.time()
    names = ("teacher", "student")
    if (os.cpu_count() or 1) >= 2 and config.teacher.hidden > 64:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
            futures = {n: pool.submit(_build_model, config, n, tmp, progress, i) for i, n in enumerate(names)}
            record.update({n: f.result() for n, f in futures.items()})
    else:
        record.update({n: _build_model(config, n, tmp, progress, 0) for n in names})
    record["build_seconds"] = round(time.time() - start, 1)
    (tmp / "done.json").write_text(json.dumps(record, indent=1))
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(dest)  # atomic publish: a concurrent builder never sees half a world
    return dest


def accuracy_table(world_path: Path, *, per_set: int = 100) -> dict[str, dict[str, float]]:
    """{model: {eval set: greedy pass rate}} on the code eval sets (the shipped build record)."""
    from transformers import LlamaForCausalLM

    tokenizer = load_tokenizer(Path(world_path) / "tokenizer")
    sets = code_task.eval_sets(per_set)
    table = {}
    for name in ("teacher", "student"):
        model = LlamaForCausalLM.from_pretrained(Path(world_path) / name).eval()
        table[name] = {set_name: pass_rate(model, tokenizer, problems) for set_name, problems in sets.items()}
    return table


if __name__ == "__main__":  # quick manual build: python -m scope_lib.worlds.code_build DEST
    import sys

    print(build_code_world(CODE_WORLD, Path(sys.argv[1])))
