"""Per-step DPAW weight records of a training run (Parquet), and the summaries notebook 10 draws.

For every training step of a method that samples rollouts (SCOPE and its ablations, OPD,
GRPO), the trainer records one row per rollout: its group, its reward, pi_old's and the
teacher's length-normalised log-perplexity, the student-path (Eq. 4) and teacher-path (Eq. 5)
weights the loss used, its length, and an id that finds its text (docs/DESIGN.md §2.6-2.8).

Layout, in `<run_dir>/weight_records/`, one pair of files per flushed part of the run:

    weights-<first>-<last>.parquet   WEIGHT_SCHEMA, one row per rollout of steps first..last
    texts-<first>-<last>.parquet     TEXT_SCHEMA: rollout_id, question, text

The weight table holds numbers only (float32, int32, bool; zstd), so it stays small; the texts
live beside it and are read only for the ids asked for (`rollout_texts`). `rollout_id` is
`step * ROLLOUT_ID_STRIDE + row`. Parquet stores int8/int16 columns as INT32 anyway, so int32
costs nothing on disk.

Interruption (as `metrics.jsonl`, `scope_lib.experiments.registry`): the trainer buffers rows in memory and
writes a part before every checkpoint, at the end of training, and when the buffer grows past
`WeightRecorder.max_buffered_chars`. Each file is written under a temporary name, fsync'ed
and renamed (texts first), so a name matching the pattern is always a whole file and a
temporary one is never read. On resume `truncate_records` cuts the records to the step the
run resumes from, as the history is cut.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from scope_lib.weights import DPAW

RECORDS_DIR = "weight_records"
ROLLOUT_ID_STRIDE = 1_000_000  # rollout_id = step * stride + row: fewer rollouts than this per step
PATHS = ("student", "teacher")  # Eq. 4 (correct rollouts) and Eq. 5 (incorrect rollouts)

WEIGHT_SCHEMA = pa.schema([
    ("step", pa.int32()),  # 1-based, as metrics.jsonl counts steps
    ("row", pa.int32()),  # the rollout's position in the step's batch
    ("group", pa.int32()),  # the prompt's index within the step (0..prompts-1)
    ("rollout_id", pa.int64()),  # step * ROLLOUT_ID_STRIDE + row: finds the text (rollout_texts)
    ("correct", pa.bool_()),  # the verifier's reward
    ("length", pa.int32()),  # response tokens |y_i|
    ("student_log_ppl", pa.float32()),  # -s_S: pi_old's length-normalised log PPL (Eq. 4's score)
    ("teacher_log_ppl", pa.float32()),  # -s_T; NaN where the teacher did not score the row
    ("student_weight", pa.float32()),  # w_S the loss used; NaN off the correct path or without DPAW
    ("teacher_weight", pa.float32()),  # w_T the loss used; NaN off the incorrect path or without DPAW
])
TEXT_SCHEMA = pa.schema([("rollout_id", pa.int64()), ("question", pa.string()), ("text", pa.string())])
_PART = re.compile(r"(weights|texts)-(\d+)-(\d+)\.parquet")  # never the dot-prefixed temporary names
_FLOATS = ("student_log_ppl", "teacher_log_ppl", "student_weight", "teacher_weight")


def records_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / RECORDS_DIR


def _write_parquet(table: pa.Table, path: Path) -> None:
    """Write `table` to `path` in one step: a temporary name, fsync, rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        pq.write_table(table, handle, compression="zstd")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _parts(run_dir) -> list[tuple[int, int, Path, Path]]:
    """(first, last, weights file, texts file) of every whole weights part, by first step."""
    folder = records_dir(run_dir)
    found = []
    for path in folder.glob("weights-*.parquet"):
        match = _PART.fullmatch(path.name)
        if match:
            first, last = int(match.group(2)), int(match.group(3))
            found.append((first, last, path, folder / f"texts-{first:06d}-{last:06d}.parquet"))
    return sorted(found)


# --- writing -----------------------------------------------------------------------------------


class WeightRecorder:
    """Buffers the rows of each step and writes them as a Parquet part on `flush()`.

    `add_step` takes one step's rollouts as 1-D arrays of equal length N; `group` holds the
    trainer's prompt ids of the step (any integers, the rows of one prompt adjacent); they are
    stored as dense indices 0..prompts-1 in sorted order of the ids.
    """

    def __init__(self, run_dir: str | os.PathLike, *, max_buffered_chars: int = 50_000_000):
        self.run_dir = Path(run_dir)
        self.max_buffered_chars = max_buffered_chars
        self._weights: list[pa.Table] = []
        self._texts: list[pa.Table] = []
        self._steps: list[int] = []
        self._chars = 0
        self._last_step = 0  # the last step added, flushed or not

    @property
    def buffered_steps(self) -> list[int]:
        return list(self._steps)

    def add_step(self, step: int, *, group, correct, length, student_log_ppl, teacher_log_ppl, student_weight,
                 teacher_weight, texts: Sequence[str], questions: Sequence[str]) -> None:
        """Buffer the records of `step` (steps must be added in increasing order)."""
        if not isinstance(step, int) or step < 1:
            raise ValueError(f"step must be a positive int, got {step!r}")
        if step <= self._last_step:
            raise ValueError(f"step {step} added after step {self._last_step}: steps must increase")
        columns = {"group": group, "correct": correct, "length": length, "student_log_ppl": student_log_ppl,
                   "teacher_log_ppl": teacher_log_ppl, "student_weight": student_weight, "teacher_weight": teacher_weight}
        columns = {name: np.asarray(value) for name, value in columns.items()}
        n = len(columns["correct"])
        for name, value in [*columns.items(), ("texts", texts), ("questions", questions)]:
            if np.ndim(value) != 1 or len(value) != n:
                raise ValueError(f"{name} must be 1-D with one entry per rollout ({n}), got shape {np.shape(value)}")
        if n >= ROLLOUT_ID_STRIDE:
            raise ValueError(f"step {step} has {n} rollouts; rollout ids allow fewer than {ROLLOUT_ID_STRIDE}")
        row = np.arange(n, dtype=np.int64)
        ids = step * ROLLOUT_ID_STRIDE + row
        dense_group = np.unique(columns["group"], return_inverse=True)[1].reshape(-1)
        data = {"step": np.full(n, step), "row": row, "group": dense_group, "rollout_id": ids,
                "correct": columns["correct"].astype(bool), "length": columns["length"],
                **{name: columns[name].astype(np.float32) for name in _FLOATS}}
        self._weights.append(pa.Table.from_pydict(data, schema=WEIGHT_SCHEMA))
        self._texts.append(pa.Table.from_pydict({"rollout_id": ids, "question": list(questions), "text": list(texts)},
                                                schema=TEXT_SCHEMA))
        self._steps.append(step)
        self._last_step = step
        self._chars += sum(map(len, texts)) + sum(map(len, questions))

    def should_flush(self) -> bool:
        """Whether the buffered texts have outgrown `max_buffered_chars`."""
        return self._chars > self.max_buffered_chars

    def flush(self) -> Path | None:
        """Write the buffered steps as one part (texts first, then weights); returns the weights file."""
        if not self._steps:
            return None
        folder = records_dir(self.run_dir)
        folder.mkdir(parents=True, exist_ok=True)
        first, last = self._steps[0], self._steps[-1]
        _write_parquet(pa.concat_tables(self._texts), folder / f"texts-{first:06d}-{last:06d}.parquet")
        weights = folder / f"weights-{first:06d}-{last:06d}.parquet"
        _write_parquet(pa.concat_tables(self._weights), weights)
        self._weights, self._texts, self._steps, self._chars = [], [], [], 0
        return weights


def truncate_records(run_dir: str | os.PathLike, last_step: int) -> None:
    """Keep the records of steps 1..last_step only (a resumed run's history holds just those).

    Parts that start later are deleted, a part that straddles `last_step` is rewritten to end
    there (new files first, then the old ones go), and temporaries of an interrupted write and
    texts without their weights are removed.
    """
    folder = records_dir(run_dir)
    if not folder.is_dir():
        return
    for stray in folder.glob(".*.tmp"):
        stray.unlink(missing_ok=True)
    kept = set()
    for first, last, weights, texts in _parts(run_dir):
        if first > last_step:
            weights.unlink(missing_ok=True)
            texts.unlink(missing_ok=True)
            continue
        if last > last_step:
            cut = folder / f"weights-{first:06d}-{last_step:06d}.parquet"
            cut_texts = folder / f"texts-{first:06d}-{last_step:06d}.parquet"
            if texts.exists():
                table = pq.read_table(texts)
                ids = table.column("rollout_id").to_numpy()
                _write_parquet(table.filter(pa.array(ids < (last_step + 1) * ROLLOUT_ID_STRIDE)), cut_texts)
            table = pq.read_table(weights)
            _write_parquet(table.filter(pa.array(table.column("step").to_numpy() <= last_step)), cut)
            weights.unlink(missing_ok=True)
            texts.unlink(missing_ok=True)
            weights, texts = cut, cut_texts
        kept.update({weights.name, texts.name})
    for path in folder.glob("texts-*.parquet"):
        if path.name not in kept:
            path.unlink(missing_ok=True)


# --- reading -----------------------------------------------------------------------------------


def has_weight_records(run_dir: str | os.PathLike) -> bool:
    return bool(_parts(run_dir))


def read_weight_records(run_dir: str | os.PathLike) -> pd.DataFrame:
    """Every recorded rollout of the run, one row each (WEIGHT_SCHEMA columns), by step and row.

    FileNotFoundError when the run has none (a KD run, or one trained before the records
    existed); ValueError naming the files when two parts hold the same step.
    """
    parts = _parts(run_dir)
    if not parts:
        raise FileNotFoundError(f"{records_dir(run_dir)} holds no weight records (a KD run, or a run trained "
                                "before the trainer recorded them: delete the run directory to train it again)")
    for (_, last, previous, _), (first, _, current, _) in zip(parts[:-1], parts[1:]):
        if first <= last:
            raise ValueError(f"weight record parts {previous.name} and {current.name} overlap in steps "
                             f"{first}..{last}; resuming the run cuts them to its history")
    frames = [pq.read_table(weights).to_pandas() for _, _, weights, _ in parts]
    return pd.concat(frames, ignore_index=True).sort_values(["step", "row"], ignore_index=True)


def rollout_texts(run_dir: str | os.PathLike, ids) -> pd.DataFrame:
    """The question and response text of each rollout id, indexed by `rollout_id` in the order asked.

    Reads only the text files of the steps the ids belong to; KeyError names ids not found.
    """
    wanted = np.unique(np.asarray(ids, dtype=np.int64))
    steps = set((wanted // ROLLOUT_ID_STRIDE).tolist())
    frames = []
    for first, last, _, texts in _parts(run_dir):
        if texts.exists() and any(first <= s <= last for s in steps):
            table = pq.read_table(texts, filters=[("rollout_id", "in", wanted.tolist())])
            frames.append(table.to_pandas())
    found = pd.concat(frames, ignore_index=True).set_index("rollout_id") if frames else pd.DataFrame(
        columns=["question", "text"], index=pd.Index([], name="rollout_id", dtype=np.int64))
    missing = sorted(set(wanted.tolist()) - set(found.index.tolist()))
    if missing:
        raise KeyError(f"rollout ids {missing[:5]}{' ...' if len(missing) > 5 else ''} have no text in {records_dir(run_dir)}")
    return found.loc[np.asarray(ids, dtype=np.int64)]


def record_bytes(run_dir: str | os.PathLike) -> dict[str, float]:
    """On-disk size of the records: weight table and texts in bytes, steps, and bytes per step."""
    parts = _parts(run_dir)
    weights = sum(p[2].stat().st_size for p in parts)
    texts = sum(p[3].stat().st_size for p in parts if p[3].exists())
    steps = sum(last - first + 1 for first, last, _, _ in parts)
    return {"weights_bytes": float(weights), "texts_bytes": float(texts), "steps": float(steps),
            "weights_bytes_per_step": weights / steps if steps else math.nan,
            "total_bytes_per_step": (weights + texts) / steps if steps else math.nan}


def checkpoint_bytes(run_dir: str | os.PathLike) -> int | None:
    """Size of the newest checkpoint's state.pt (model, optimizer, scheduler, rng), None without one."""
    found = sorted((Path(run_dir) / "checkpoints").glob("step_*/state.pt"))
    return found[-1].stat().st_size if found else None


# --- summaries for notebook 10 -----------------------------------------------------------------


def path_rows(records: pd.DataFrame) -> pd.DataFrame:
    """Records in long form, one row per rollout on its path with a weight: step, group,
    rollout_id, path ("student" for correct rows, "teacher" for incorrect ones), weight, log_ppl,
    n (members of the group's path) and rel_weight = weight * n / (the path's weight sum), which
    is 1 for uniform weights whatever the normalisation."""
    frames = []
    for path, on_path in (("student", records["correct"]), ("teacher", ~records["correct"])):
        part = records[on_path & records[f"{path}_weight"].notna()]
        frames.append(pd.DataFrame({"step": part["step"], "group": part["group"], "rollout_id": part["rollout_id"],
                                    "path": path, "weight": part[f"{path}_weight"].astype(np.float64),
                                    "log_ppl": part[f"{path}_log_ppl"].astype(np.float64)}))
    long = pd.concat(frames, ignore_index=True)
    by_group = long.groupby(["step", "group", "path"])["weight"]
    long["n"] = by_group.transform("size")
    long["rel_weight"] = long["weight"] * long["n"] / by_group.transform("sum")
    return long


def ess_table(weight: pd.Series, by) -> pd.DataFrame:
    """Per group of `weight` (grouped by `by`, as `Series.groupby` takes it): members `n`, weight
    sum, ESS ``(sum w)^2 / sum w^2``, `ess_frac` (ESS / n: 1 = uniform, 1/n = all weight on one
    rollout) and `max_share` (largest w / sum w), indexed by the groups."""
    grouped = pd.DataFrame({"weight": weight, "w2": weight ** 2}).groupby(by)
    out = grouped.agg(n=("weight", "size"), weight_sum=("weight", "sum"), w2=("w2", "sum"), w_max=("weight", "max"))
    out["ess"] = out["weight_sum"] ** 2 / out["w2"]
    out["ess_frac"] = out["ess"] / out["n"]
    out["max_share"] = out["w_max"] / out["weight_sum"]
    return out.drop(columns=["w2", "w_max"])


def group_ess(records: pd.DataFrame) -> pd.DataFrame:
    """Per step, group and path of the records: `ess_table`'s columns."""
    long = path_rows(records)
    return ess_table(long["weight"], [long["step"], long["group"], long["path"]]).reset_index()


def ess_by_step(records: pd.DataFrame, *, min_members: int = 2) -> pd.DataFrame:
    """Mean ESS fraction per step and path over groups with at least `min_members` rollouts on
    the path (a single member always has ESS 1); columns step, path, ess_frac, groups."""
    ess = group_ess(records)
    ess = ess[ess["n"] >= min_members]
    return ess.groupby(["step", "path"]).agg(ess_frac=("ess_frac", "mean"), groups=("ess_frac", "size")).reset_index()


def most_concentrated_groups(records: pd.DataFrame, step: int, top: int = 3) -> pd.DataFrame:
    """The `top` (group, path) pairs of `step` with the lowest ESS fraction, among those with
    at least two rollouts on the path; ties are broken by group and path order."""
    ess = group_ess(records[records["step"] == step])
    ess = ess[ess["n"] >= 2]
    return ess.sort_values(["ess_frac", "group", "path"], kind="stable").head(top).reset_index(drop=True)


def top_group_rollouts(run_dir: str | os.PathLike, records: pd.DataFrame, step: int, top: int = 3) -> pd.DataFrame:
    """The rollouts of `step`'s `top` most concentrated (group, path) pairs (`most_concentrated_groups`),
    heaviest first within each, with their ESS fraction, weights, log-PPL and question and text."""
    chosen = most_concentrated_groups(records, step, top)[["group", "path", "ess_frac"]]
    long = path_rows(records[records["step"] == step]).merge(chosen, on=["group", "path"])
    long = long.sort_values(["ess_frac", "group", "path", "weight"], ascending=[True, True, True, False], kind="stable")
    texts = rollout_texts(run_dir, long["rollout_id"])
    return long.assign(question=texts["question"].to_numpy(), text=texts["text"].to_numpy()).reset_index(drop=True)


def eq45_weights(records: pd.DataFrame, *, tau: float, student_direction: str, teacher_direction: str,
                 normalize: str, tau_student: float | None = None) -> pd.DataFrame:
    """Eq. 4-5 weights recomputed by `scope_lib.weights` from the recorded log-PPLs (groups are
    per step); columns student_weight, teacher_weight, NaN off each path, aligned with `records`.
    Equal to the recorded weights up to the float32 rounding of the log-PPLs. `tau_student`:
    the run's `scope.tau_student` (Eq. 4's own temperature; None: `tau`)."""
    dpaw = DPAW(tau=tau, tau_student=tau_student, student_direction=student_direction,
                teacher_direction=teacher_direction, normalize=normalize)
    group = torch.tensor(records["step"].to_numpy(np.int64) * ROLLOUT_ID_STRIDE + records["group"].to_numpy(np.int64))
    correct = torch.tensor(records["correct"].to_numpy(bool))
    s_student = -torch.as_tensor(records["student_log_ppl"].to_numpy(np.float64))
    s_teacher = -torch.as_tensor(records["teacher_log_ppl"].to_numpy(np.float64))
    w_student, w_teacher = dpaw.student(s_student, correct, group).numpy(), dpaw.teacher(s_teacher, correct, group).numpy()
    on = correct.numpy()
    return pd.DataFrame({"student_weight": np.where(on, w_student, np.nan), "teacher_weight": np.where(~on, w_teacher, np.nan)},
                        index=records.index)


def path_sum_error(records: pd.DataFrame, *, normalize: str, student_direction: str, teacher_direction: str) -> float:
    """Largest |sum of a group's path weights - what Eq. 4-5 prescribe| over every step, group
    and path: 1 for `normalize="sum"`, the path's size for "mean" or the direction "ones".
    NaN when no row carries a weight (OPD, GRPO)."""
    ess = group_ess(records)
    if ess.empty:
        return math.nan
    direction = ess["path"].map({"student": student_direction, "teacher": teacher_direction})
    expected = np.where((direction == "ones") | (normalize == "mean"), ess["n"], 1.0)
    return float(np.abs(ess["weight_sum"] - expected).max())


def pick_steps(steps: Sequence[int], chosen: Sequence[int] | None = None, count: int = 3) -> list[int]:
    """`chosen` checked against the recorded `steps`, or `count` of them spread evenly (first, ..., last)."""
    available = sorted(set(int(s) for s in steps))
    if not available:
        raise ValueError("no recorded steps to choose from")
    if chosen is not None:
        absent = [s for s in chosen if s not in available]
        if absent:
            raise ValueError(f"steps {absent} are not recorded; recorded: {available[0]}..{available[-1]}")
        return [int(s) for s in chosen]
    index = np.unique(np.linspace(0, len(available) - 1, min(count, len(available))).round().astype(int))
    return [available[i] for i in index]
