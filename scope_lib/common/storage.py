"""Run storage: the files of one run directory, written so that a kill at any instant leaves
either the old file or the new one, never a torn one.

Used by the trainer (scope_lib/trainer.py), which writes a run, and by the registry
(scope_lib/experiments/registry.py), which finds and reads runs; it knows nothing of configs or models beyond a
fingerprint string. A run directory holds:

    config.yaml          the config that owns the directory (written by the trainer)
    metrics.jsonl        one JSON object per step (`read_history`, `write_history`)
    checkpoints/step_N/  state.pt + SHA256SUMS (`save_checkpoint`, `resume_point`)
    final/               the trained model + SHA256SUMS (`load_final_model`)
    done.json            {steps, fingerprint, final_sums}: the run is finished (`read_done`)
    .lock                held by the one process training it (`claim_run_dir`)

Every whole-file write goes through `write_atomic` (fsync'd temporary file, then rename).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from scope_lib.common import integrity

CHECKPOINT_NAME = re.compile(r"step_(\d+)")  # checkpoints/step_000020 (not the .tmp of a save cut short)
CHECKPOINT_KEYS = {"model", "optimizer", "scheduler", "rng", "step", "fingerprint"}


class RunDirError(ValueError):
    """A run directory that holds another config's run, is in use, or whose history is damaged."""


# --- whole files -------------------------------------------------------------------------------


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


def remove_stale_temporaries(run_dir: Path) -> None:
    """Temporary files of a write that a kill cut short (`.metrics.jsonl.<pid>.tmp`, ...). Call it
    only while holding the run directory (`claim_run_dir`): then no live writer owns them."""
    for folder in (Path(run_dir), Path(run_dir) / "final"):
        for stale in folder.glob(".*.tmp"):
            if stale.is_file():
                warnings.warn(f"removing {stale}: a temporary file left by a write that was cut short",
                              RuntimeWarning, stacklevel=3)
                stale.unlink(missing_ok=True)


@contextmanager
def claim_run_dir(run_dir: Path) -> Iterator[None]:
    """Hold `run_dir` for one training process: a second one fails at once, naming the holder.

    An advisory lock on `<run_dir>/.lock` (the kernel drops it when the holder dies, even by
    SIGKILL), so two processes never interleave one history. No-op where fcntl is missing.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl  # POSIX only
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


# --- checkpoints -------------------------------------------------------------------------------


def rng_state() -> dict:
    """The process's Python, NumPy and torch generator states (a checkpoint's "rng")."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """`<run_dir>/checkpoints/step_N` directories, oldest first."""
    found = [(int(m.group(1)), p) for p in (Path(run_dir) / "checkpoints").glob("step_*")
             if (m := CHECKPOINT_NAME.fullmatch(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def save_checkpoint(run_dir: Path, state: dict, keep: int) -> None:
    """Write `state` (CHECKPOINT_KEYS) as `checkpoints/step_<state["step"]>`, whole or not at all,
    and delete all but the newest `max(2, keep)` checkpoints."""
    final = Path(run_dir) / "checkpoints" / f"step_{state['step']:06d}"
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with open(tmp / "state.pt", "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())  # on disk before its name says it is whole
    integrity.write_sums(tmp)  # checked on resume: an altered state.pt is never loaded
    shutil.rmtree(final, ignore_errors=True)  # a checkpoint of this step that did not load on resume
    tmp.rename(final)  # a checkpoint either exists whole or not at all (SIGKILL-safe)
    # At least two: when the newest turns out damaged, resume falls back to the one before.
    for old in checkpoint_dirs(run_dir)[: -max(2, keep)]:
        shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(checkpoint: Path, fingerprint: str) -> dict | None:
    """The state saved in `checkpoint`, or None (with a warning naming the file) when it does not
    load; RunDirError when it was written by another config (`fingerprint`)."""
    path = checkpoint / "state.pt"
    try:
        integrity.verify_folder(checkpoint)  # False for a checkpoint of older code: loaded unchecked
        state = torch.load(path, weights_only=False)
    except Exception as error:  # empty or truncated: EOFError, RuntimeError, UnpicklingError, ...
        warnings.warn(f"skipping checkpoint {path}: it does not load ({type(error).__name__}: {error})",
                      RuntimeWarning, stacklevel=3)
        return None
    if not isinstance(state, dict) or not CHECKPOINT_KEYS <= state.keys():
        warnings.warn(f"skipping checkpoint {path}: expected a dict with keys {sorted(CHECKPOINT_KEYS)}",
                      RuntimeWarning, stacklevel=3)
        return None
    if state["fingerprint"] != fingerprint:
        raise RunDirError(f"checkpoint {path} was written by a different config; use a fresh output_dir")
    return state


def resume_point(run_dir: Path, fingerprint: str) -> tuple[dict | None, list[dict]]:
    """(state, history): the newest checkpoint that loads and the history rows 1..its step.

    A checkpoint newer than metrics.jsonl's last whole step is passed over (its steps' records
    are lost); with no checkpoint that loads, (None, []): the run starts again from step 0.
    """
    metrics = Path(run_dir) / "metrics.jsonl"
    by_step = {}
    for row in read_history(metrics):
        by_step[row["step"]] = row  # older code re-appended restarted steps: the latest attempt wins
    recorded = 0
    while recorded + 1 in by_step:
        recorded += 1
    state = None
    for checkpoint in reversed(checkpoint_dirs(run_dir)):
        step = int(CHECKPOINT_NAME.fullmatch(checkpoint.name).group(1))
        if step > recorded:
            warnings.warn(f"skipping checkpoint {checkpoint}: {metrics} records steps 1..{recorded} only",
                          RuntimeWarning, stacklevel=3)
            continue
        state = load_checkpoint(checkpoint, fingerprint)
        if state is not None:
            break
    step = state["step"] if state is not None else 0
    return state, [by_step[s] for s in range(1, step + 1)]


def remove_checkpoints_after(run_dir: Path, step: int) -> None:
    """Delete checkpoints newer than `step` and saves cut short: they belong to an abandoned
    attempt, and left in place they would count among the ones kept."""
    for stale in (Path(run_dir) / "checkpoints").glob("step_*"):
        match = CHECKPOINT_NAME.fullmatch(stale.name)
        if match is None or int(match.group(1)) > step:
            shutil.rmtree(stale, ignore_errors=True)


# --- the final model ---------------------------------------------------------------------------


def load_final_model(run_dir: Path):
    """The trained model in `<run_dir>/final`, its files checked against their SHA256SUMS first.

    RunDirError naming the file when one was altered, cut short or does not load."""
    from transformers import AutoModelForCausalLM  # start-up cost: only when a model is loaded

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
