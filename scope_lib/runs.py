"""The run registry the notebooks share: a trained run or an evaluation is computed once.

A run is keyed by its full config (`TrainConfig.fingerprint()`: method, seed, scale and every
hyperparameter), so a run trained for notebook 04 is found again by notebooks 05-08, and an
interrupted batch resumes the run from its last checkpoint instead of starting over.
Evaluations are cached beside the model they evaluate, keyed by the eval settings and the
exact problems, so a figure can be redrawn without generating again.

    run = get_run(cfg)                       # trains unless runs/<key>/done.json exists
    result = evaluate_model(run, world, cfg)  # EvalResult, cached in the run directory
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scope_lib.config import TrainConfig
from scope_lib.evaluate import EvalResult, evaluate
from scope_lib.world import World, load_world

ROOT = Path(__file__).resolve().parents[1]


def runs_dir() -> Path:
    """$SCOPE_RUNS_DIR, or `runs/` at the repository root (git-ignored)."""
    return Path(os.environ.get("SCOPE_RUNS_DIR", ROOT / "runs"))


@dataclass
class Run:
    cfg: TrainConfig
    path: Path
    history: list[dict]  # per-step metrics (metrics.jsonl)

    @property
    def model_path(self) -> Path:
        return self.path / "final"


def run_key(cfg: TrainConfig) -> str:
    return f"{cfg.method}-seed{cfg.seed}-{cfg.fingerprint()}"


def get_run(cfg: TrainConfig, *, world: World | None = None, root: Path | None = None) -> Run:
    """The finished run for `cfg`: loaded when already trained, else trained (or resumed) now."""
    path = (root or runs_dir()) / run_key(cfg)
    cfg = dataclasses.replace(cfg, output_dir=str(path))
    if not (path / "done.json").exists():
        from scope_lib.trainer import train

        train(cfg, world)
    history = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return Run(cfg, path, history)


def _eval_key(cfg: TrainConfig, eval_sets: dict) -> str:
    problems = {name: [p.id for p in items] for name, items in eval_sets.items()}
    blob = json.dumps({"eval": dataclasses.asdict(cfg.eval), "problems": problems}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _save_eval(result: EvalResult, path: Path) -> None:
    data = {"k": result.k, "settings": result.settings, "texts": result.texts,
            "correct": {name: grades.astype(int).tolist() for name, grades in result.correct.items()}}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.rename(path)


def _load_eval(path: Path) -> EvalResult:
    data = json.loads(path.read_text())
    return EvalResult(k=data["k"], settings=data["settings"], texts=data.get("texts", {}),
                      correct={name: np.array(rows, dtype=bool) for name, rows in data["correct"].items()})


def evaluation_path(cfg: TrainConfig, eval_sets: dict, *, base: bool, root: Path | None = None) -> Path:
    """Where the evaluation of `cfg`'s trained run (or of the base student) is cached."""
    key = _eval_key(cfg, eval_sets)
    if base:
        ident = hashlib.sha256(json.dumps([cfg.model.student, dataclasses.asdict(cfg.data)], sort_keys=True).encode()).hexdigest()[:12]
        return (root or runs_dir()) / f"base-{ident}-eval-{key}.json"
    return (root or runs_dir()) / run_key(cfg) / f"eval-{key}.json"


def evaluate_model(run: Run | None, cfg: TrainConfig, *, world: World | None = None, keep_texts: bool = False,
                   root: Path | None = None) -> EvalResult:
    """Avg@k / Pass@k of a trained run (or of the base student when `run` is None), cached.

    The eval settings come from `cfg.eval` and the problems from `cfg.data`.
    """
    world = world or load_world(cfg, need_teacher=False)
    path = evaluation_path(run.cfg if run else cfg, world.eval_sets, base=run is None,
                           root=run.path.parent if run else root)
    if path.exists():
        cached = _load_eval(path)
        if cached.texts or not keep_texts:
            return cached
    if run is None:
        model = world.student
    else:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(run.model_path)
    e = cfg.eval
    result = evaluate(model.eval(), world.tokenizer, world.eval_sets, k=e.k, format_prompt=world.format_prompt,
                      temperature=e.temperature, top_p=e.top_p, top_k=e.top_k, max_new_tokens=e.max_new_tokens,
                      repetition_penalty=e.repetition_penalty, batch_size=e.batch_size, seed=e.seed,
                      progress=cfg.progress, keep_texts=keep_texts)
    path.parent.mkdir(parents=True, exist_ok=True)
    _save_eval(result, path)
    return result
