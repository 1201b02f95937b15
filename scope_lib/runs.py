"""The run registry the notebooks share: a trained run or an evaluation is computed once.

A run is keyed by its full config (`TrainConfig.fingerprint()`: method, seed, scale and every
hyperparameter), so a run trained for notebook 04 is found again by notebooks 05-08, and an
interrupted batch resumes the run from its last checkpoint instead of starting over.
Evaluations are cached beside the model they evaluate, keyed by the eval settings and the
exact problems, so a figure can be redrawn without generating again.

    run = get_run(cfg)                       # trains unless runs/<key>/done.json exists
    result = evaluate_model(run, world, cfg)  # EvalResult, cached in the run directory

A run directory belongs to one config and one process at a time (`claim_run_dir`): training
another config into it is refused before anything in it is written, and its files are
replaced whole (`write_atomic`), so a kill at any instant leaves either the old file or the
new one, never a torn line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import yaml

from scope_lib import grading, integrity
from scope_lib.config import TrainConfig, without_neutral_additions
from scope_lib.evaluate import EvalResult, evaluate
from scope_lib.rollout import Sampling
from scope_lib.world import World, load_world

ROOT = Path(__file__).resolve().parents[1]


def runs_dir() -> Path:
    """$SCOPE_RUNS_DIR, or `runs/` at the repository root (git-ignored)."""
    return Path(os.environ.get("SCOPE_RUNS_DIR", ROOT / "runs"))


# --- one run directory -------------------------------------------------------------------------


class RunDirError(ValueError):
    """A run directory that holds another config's run, is in use, or whose history is damaged."""


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` by `text` in one step: a reader, or a kill, sees the old file or the new one.

    The temporary file is fsync'ed before the rename, so after a crash the new name never
    points at an empty or half-written file.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def read_history(path: Path) -> list[dict]:
    """The rows of a `metrics.jsonl`, in file order ([] when there is none).

    A torn last line (older code appended lines, and a kill mid-write cut one short) is
    dropped with a warning naming the file. A bad line anywhere else is not a torn write but
    a damaged file: RunDirError names the file and the line.
    """
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    numbered = [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]
    rows = []
    for position, (number, line) in enumerate(numbered):
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or isinstance(row.get("step"), bool) or not isinstance(row.get("step"), int):
                raise ValueError("expected a JSON object with an integer 'step'")
        except ValueError as error:
            if position == len(numbered) - 1:
                warnings.warn(f"{path}: dropped its torn last line {number} (a kill while it was written): {error}",
                              RuntimeWarning, stacklevel=2)
                break
            raise RunDirError(f"{path} line {number} is not a metrics record ({error}); "
                              "delete the run directory to train the run again") from None
        rows.append(row)
    return rows


def write_history(path: Path, rows: list[dict]) -> None:
    """Replace `metrics.jsonl` by `rows`, one JSON object a line (atomic: see write_atomic)."""
    write_atomic(path, "".join(json.dumps(row) + "\n" for row in rows))


# Keys that do not change the trained model (output_dir, progress, checkpointing, eval):
# a run may be resumed with other values of these.
_NOT_FINGERPRINTED: tuple[str, ...] = inspect.signature(TrainConfig.fingerprint).parameters["exclude"].default


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix[:-1]: data}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        flat.update(_flatten(value, f"{prefix}{key}."))
    return flat


def _not_fingerprinted(key: str) -> bool:
    parts = key.split(".")
    return any(".".join(parts[:n]) in _NOT_FINGERPRINTED for n in range(1, len(parts) + 1))


def config_differences(saved: dict, cfg: TrainConfig) -> list[str]:
    """`key: saved -> requested` for each setting of `saved` (a config.yaml) that `cfg` changes.

    Only settings that change the trained model count (those `TrainConfig.fingerprint` hashes).
    A key that `saved` lacks (written before the field existed) reads as the field's default:
    fields added later default to what the code computed before them (config.ADDED_FIELDS), so
    an absent key and a requested default are the same run; another requested value differs.
    """
    # Settings added later at their neutral value count as absent on both sides, as in the fingerprint.
    wanted = _flatten(json.loads(json.dumps(without_neutral_additions(cfg.to_dict()))))  # tuples as lists, as config.yaml holds them
    held = _flatten(json.loads(json.dumps(without_neutral_additions(saved), default=str)))
    defaults = _flatten(json.loads(json.dumps(TrainConfig().to_dict())))
    missing = object()
    differences = []
    for key in sorted(set(wanted) | set(held)):
        if _not_fingerprinted(key):
            continue
        old, new = held.get(key, missing), wanted.get(key, missing)
        if old is missing and key in defaults and new is not missing and json.dumps(new) == json.dumps(defaults[key]):
            continue
        if old is missing or new is missing or json.dumps(old) != json.dumps(new):  # as the fingerprint sees them (NaN == NaN)
            describe = lambda v: "(absent)" if v is missing else repr(v)  # noqa: E731
            differences.append(f"{key}: {describe(old)} -> {describe(new)}")
    return differences


def check_run_dir(run_dir: Path, cfg: TrainConfig) -> None:
    """RunDirError when `run_dir` holds a run of a config other than `cfg`; reads, never writes.

    The run's config is its `config.yaml`; a directory left by code that wrote none is judged
    by the fingerprint in its `done.json`.
    """
    run_dir = Path(run_dir)
    saved_path, done_path = run_dir / "config.yaml", run_dir / "done.json"
    if saved_path.exists():
        try:
            saved = yaml.safe_load(saved_path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            raise RunDirError(f"{saved_path} does not parse ({error}); it cannot say which config owns "
                              f"{run_dir}: use a fresh output_dir or delete this one") from None
        if not isinstance(saved, dict):
            raise RunDirError(f"{saved_path} holds {type(saved).__name__}, expected a config mapping; "
                              f"use a fresh output_dir or delete {run_dir}")
        differences = config_differences(saved, cfg)
    elif done_path.exists():
        done = json.loads(done_path.read_text())
        differences = [] if done.get("fingerprint") == cfg.fingerprint() else [
            f"fingerprint: {done.get('fingerprint')!r} -> {cfg.fingerprint()!r}"]
    else:
        return
    if differences:
        raise RunDirError(
            f"output_dir {run_dir} holds a run of another config, which training this one would overwrite; "
            f"it differs in {len(differences)} key(s): " + "; ".join(differences)
            + ". Use a fresh output_dir (or delete this one)."
        )


@contextmanager
def claim_run_dir(run_dir: Path) -> Iterator[None]:
    """Hold `run_dir` for one training process: a second one fails at once, naming the holder.

    An advisory lock on `<run_dir>/.lock` (the kernel drops it when the holder dies, even by
    SIGKILL), so two processes never interleave one history. No-op where fcntl is missing.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; one process per run dir is up to the user
        yield
        return
    with open(run_dir / ".lock", "a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise RunDirError(f"output_dir {run_dir} is being trained by another process (pid {holder}); "
                              "wait for it to finish or stop it") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


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
    check_done(path, cfg)
    return Run(cfg, path, read_history(path / "metrics.jsonl"))


def read_done(run_dir: Path) -> dict:
    """A run's `done.json` as a dict; RunDirError naming the file when it is not one."""
    done_path = Path(run_dir) / "done.json"
    try:
        done = json.loads(done_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise RunDirError(f"{done_path} does not parse ({type(error).__name__}: {error}); "
                          f"delete {run_dir} to train the run again") from None
    if not isinstance(done, dict):
        raise RunDirError(f"{done_path} holds {type(done).__name__}, expected a JSON object; delete {run_dir} to train again")
    return done


def check_done(run_dir: Path, cfg: TrainConfig) -> dict:
    """RunDirError, naming the file, unless `run_dir` holds the finished run of `cfg`.

    Its `done.json` must carry `cfg`'s fingerprint, its `config.yaml` (when there is one) must be
    `cfg` in every setting that changes the model, and the final model's SHA256SUMS must be the
    one `done.json` recorded (scope_lib/integrity.py). Returns the parsed `done.json`.
    """
    run_dir = Path(run_dir)
    done = read_done(run_dir)
    if done.get("fingerprint") != cfg.fingerprint():
        raise RunDirError(f"{run_dir / 'done.json'} records the run of config {done.get('fingerprint')!r}, not of the "
                          f"requested {cfg.fingerprint()!r} (a moved or swapped run directory?); delete {run_dir}")
    check_run_dir(run_dir, cfg)
    recorded = done.get("final_sums")
    if recorded is not None and integrity.sums_digest(run_dir / "final") != recorded:
        raise RunDirError(f"{run_dir / 'final' / integrity.SUMS_NAME} is not the one {run_dir / 'done.json'} recorded "
                          f"(the final model was replaced or its checksums lost); delete {run_dir} to train again")
    return done


def load_final_model(run_dir: Path):
    """The trained model in `<run_dir>/final`, its files checked against their SHA256SUMS first.

    RunDirError naming the file when one was altered, cut short or does not load."""
    from transformers import AutoModelForCausalLM

    final = Path(run_dir) / "final"
    try:
        if not integrity.verify_folder(final):
            warnings.warn(f"{final} has no {integrity.SUMS_NAME} (written by older code): its files are not checked",
                          RuntimeWarning, stacklevel=2)
    except integrity.IntegrityError as error:
        raise RunDirError(f"final model refused: {error}; delete {run_dir} to train the run again") from None
    try:
        return AutoModelForCausalLM.from_pretrained(final)
    except Exception as error:  # SafetensorError, OSError, ...: none of them names the folder
        raise RunDirError(f"final model {final} does not load ({type(error).__name__}: {error})") from None


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
    world = world or load_world(cfg, need_teacher=False)
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
