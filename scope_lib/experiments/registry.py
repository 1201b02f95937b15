"""The run registry the notebooks share: a trained run or an evaluation is computed once.

A run is keyed by its full config (`TrainConfig.fingerprint()`: method, seed, scale and every
hyperparameter), so a run trained for notebook 04 is found again by notebooks 05-08, and an
interrupted batch resumes the run from its last checkpoint instead of starting over.
Evaluations are cached beside the model they evaluate, keyed by the eval settings and the
exact problems, so a figure can be redrawn without generating again.

    run = get_run(cfg)                       # trains unless runs/<key>/done.json exists
    result = evaluate_model(run, world, cfg)  # EvalResult, cached in the run directory

A run directory belongs to one config and one process at a time (`storage.claim_run_dir`):
training another config into it is refused before anything in it is written
(`trainer.check_run_dir`), and its files are replaced whole (`storage.write_atomic`), so a kill
at any instant leaves either the old file or the new one, never a torn line. Run storage lives
in scope_lib/common/storage.py, beneath both the trainer and this registry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scope_lib import grading
from scope_lib.common import integrity
from scope_lib.config import TrainConfig
from scope_lib.evaluate import EvalResult, evaluate
from scope_lib.rollout import Sampling
from scope_lib.common.storage import (  # noqa: F401  (RunDirError, claim_run_dir: re-exported, callers use runs.*)
    RunDirError, claim_run_dir, load_final_model, read_history, write_atomic,
)
from scope_lib.trainer import check_done, check_run_dir, config_differences, train  # noqa: F401
from scope_lib.world import World, WorldSpec, load_world
from scope_lib.common.paths import REPO_ROOT

ROOT = REPO_ROOT


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
        train(cfg, world)
    check_done(path, cfg)
    return Run(cfg, path, read_history(path / "metrics.jsonl"))


# How code_extract "code_block" takes the program since commit f964ac6 (the block defining the entry
# point); evaluations cached before it took the last block.
_CODE_BLOCK_EXTRACTION = "entry_point_block"


def _grader_key(cfg: TrainConfig, eval_sets: dict, *, base: bool) -> dict:
    """The settings of the verifier that an evaluation of `eval_sets` reads, for its cache key.

    Math sets read no `reward` field (the math verifier has none). Code sets read the sandbox
    settings and the extraction (`grading.CodeGrading.from_config`). A trained run's directory
    is already keyed by them (its fingerprint hashes `reward`), so there only the meaning of
    "code_block" is added; a base evaluation gets them all. Each entry is absent where it was
    before it was keyed, so the keys of math sets and of `raw` extraction stay what they were.
    """
    code = any(grading.kind_of(items, name) == "code" for name, items in eval_sets.items() if items)
    if not code:
        return {}
    out = {}
    if base:
        out["reward"] = {k: v for k, v in dataclasses.asdict(cfg.reward).items() if k != "overlap"}
    if cfg.reward.code_extract == "code_block":
        out["code_block"] = _CODE_BLOCK_EXTRACTION
    return out


def _eval_key(cfg: TrainConfig, eval_sets: dict, *, base: bool = False) -> str:
    """The evaluation's cache key: the eval settings, the problems (by id), the grader's settings
    (`_grader_key`) and where benchmark files are read from when the config names a folder."""
    problems = {name: [p.id for p in items] for name, items in eval_sets.items()}
    payload = {"eval": dataclasses.asdict(cfg.eval), "problems": problems, **_grader_key(cfg, eval_sets, base=base)}
    if cfg.data.benchmarks_dir is not None:  # not in a run's fingerprint; absent (None) in every key before
        payload["benchmarks_dir"] = cfg.data.benchmarks_dir
    blob = json.dumps(payload, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _eval_payload_hash(data: dict) -> str:
    return integrity.text_sha256(json.dumps({k: v for k, v in data.items() if k != "sha256"}, sort_keys=True))


def _save_eval(result: EvalResult, path: Path) -> None:
    data = {"k": result.k, "settings": result.settings, "texts": result.texts,
            "correct": {name: grades.astype(int).tolist() for name, grades in result.correct.items()}}
    data["sha256"] = _eval_payload_hash(data)  # checked by _load_eval: an altered cache is recomputed
    write_atomic(path, json.dumps(data))


class BadCache(ValueError):
    """An evaluation cache that is not what `_save_eval` wrote for these problems and this k."""


def _load_eval(path: Path, eval_sets: dict | None = None, k: int | None = None) -> EvalResult:
    """The cached EvalResult in `path`; BadCache (naming the file) when it does not parse, its
    content hash differs, or its grades are not (problems, k) for each of `eval_sets`."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise BadCache(f"{path}: does not parse ({type(error).__name__}: {error})") from None
    if not isinstance(data, dict) or not {"k", "correct"} <= data.keys():
        raise BadCache(f"{path}: expected a JSON object with 'k' and 'correct'")
    if "sha256" in data and data["sha256"] != _eval_payload_hash(data):
        raise BadCache(f"{path}: its content does not match its SHA-256 (altered after it was written)")
    cached_k = data["k"]
    if isinstance(cached_k, bool) or not isinstance(cached_k, int) or (k is not None and cached_k != k):
        raise BadCache(f"{path}: 'k' is {cached_k!r}, expected {k!r}")
    correct = data["correct"]
    if not isinstance(correct, dict) or (eval_sets is not None and set(correct) != set(eval_sets)):
        raise BadCache(f"{path}: 'correct' holds sets {sorted(correct) if isinstance(correct, dict) else correct!r}, "
                       f"expected {sorted(eval_sets or [])}")
    grades = {}
    for name, rows in correct.items():
        try:
            array = np.array(rows, dtype=bool)
        except (TypeError, ValueError) as error:
            raise BadCache(f"{path}: 'correct.{name}' is not a grid of grades ({error})") from None
        expected = (len(eval_sets[name]) if eval_sets is not None else len(rows), cached_k)
        if array.shape != expected:
            raise BadCache(f"{path}: 'correct.{name}' has shape {array.shape}, expected {expected} (problems, k)")
        grades[name] = array
    texts = data.get("texts", {})
    return EvalResult(k=cached_k, settings=data.get("settings", {}), texts=texts if isinstance(texts, dict) else {},
                      correct=grades)


def evaluation_path(cfg: TrainConfig, eval_sets: dict, *, base: bool, root: Path | None = None) -> Path:
    """Where the evaluation of `cfg`'s trained run (or of the base student) is cached."""
    key = _eval_key(cfg, eval_sets, base=base)
    if base:
        ident = hashlib.sha256(json.dumps([cfg.model.student, dataclasses.asdict(cfg.data)], sort_keys=True).encode()).hexdigest()[:12]
        return (root or runs_dir()) / f"base-{ident}-eval-{key}.json"
    return (root or runs_dir()) / run_key(cfg) / f"eval-{key}.json"


def evaluate_model(run: Run | None, cfg: TrainConfig, *, world: World | None = None, keep_texts: bool = False,
                   root: Path | None = None) -> EvalResult:
    """Avg@k / Pass@k of a trained run (or of the base student when `run` is None), cached.

    The eval settings come from `cfg.eval` and the problems from `cfg.data`.
    """
    world = world or load_world(WorldSpec.from_config(cfg), need_teacher=False, progress=cfg.progress)
    path = evaluation_path(run.cfg if run else cfg, world.eval_sets, base=run is None,
                           root=run.path.parent if run else root)
    if path.exists():
        try:
            cached = _load_eval(path, world.eval_sets, cfg.eval.k)
        except BadCache as error:
            warnings.warn(f"evaluation cache refused, evaluating again: {error}", RuntimeWarning, stacklevel=2)
        else:
            if cached.texts or not keep_texts:
                return cached
    if run is None:
        model = world.student
    else:
        model = load_final_model(run.path)
    e = cfg.eval
    result = evaluate(model.eval(), world.tokenizer, world.eval_sets, k=e.k, sampling=Sampling.from_config(e),
                      format_prompt=world.format_prompt, seed=e.seed, progress=cfg.progress, keep_texts=keep_texts,
                      code=grading.CodeGrading.from_config(cfg.reward))  # each set's verifier from its problems
    path.parent.mkdir(parents=True, exist_ok=True)
    _save_eval(result, path)
    return result
