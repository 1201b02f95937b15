"""The rollout pipeline: prompts -> rollouts -> rewards -> teacher scores, in one function.

Every part of the project that samples the student and grades it goes through
`score_rollouts` (docs/DESIGN.md §4): the trainer's `collect` (synchronous and overlapped) and
its KD corpus, the DPAW study of notebook 03 (`studies.dpaw.sample_scored_groups`), the
preconditions (`preconditions.measure_student_path`), the recovery study's student rollouts
(`recovery.recovery_study`) and the tiny gate (`studies.gate.train_student`).

    problems --format_prompt--> prompts --generate (G per prompt)--> RolloutBatch
             --grade--> correct (N,) bool
             --teacher_rows(correct)--> rows the teacher scores --teacher--> teacher_logp (N, T)
             [--score_student--> the student's own token log-probs (N, T)]

The result is a `ScoredBatch`: the rollouts in the project's layout (`scope_lib.rollout`), the
rewards, the teacher's token log-probs on the requested rows (NaN on every other row) and, with
`exact`, its full log-distributions for the exact KL. Sampling is seeded from `seed` alone, so
one call is reproducible and leaves the global RNG untouched.

`overlap=True` scores each finished generation batch (`sampling.batch_size` rows) on a worker
thread while the next one is generated (`OverlappedScorer`); it returns the same batch bit for
bit (tests/test_pipeline.py, tests/test_overlap.py). It needs a row-local `teacher_rows` (a
row's selection depends on its own reward only, as SCOPE's and OPD's do), since each generation
batch is selected on its own; this is checked. `overlap_reward=True` moves the grading of each
generation batch onto the same worker, before its teacher scoring (the rows the teacher scores
depend on the rewards), so that the sandbox runs while the next batch is generated (rows go to
an idle worker as soon as they are final, and once the last batch is decoded the main thread
runs the caller's `while_grading` (the trainer: its update's first forward pass), then grades the
calls the worker has not started, on the core the decoder has left); with or without a teacher
(GRPO), the result is again the synchronous path's (tests/test_overlap.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

from scope_lib import rollout, verify
from scope_lib.problem import Problem
from scope_lib.rollout import Sampling  # how rollouts are sampled; re-exported here
from scope_lib.teacher import LocalTeacher, Teacher
from scope_lib.weights import sequence_logp

Grader = Callable[[list[str], list[Problem]], list[bool]]  # (texts, their problems) -> reward per text
RowSelector = Callable[[torch.Tensor], torch.Tensor]  # (N,) bool rewards -> (K,) long rows to score
StepTimer = Callable[[str], AbstractContextManager]  # name -> context that times it (trainer.Timer)

__all__ = ["Grader", "OverlappedScorer", "RowSelector", "Sampling", "ScoredBatch", "all_rows", "grade_answers",
           "incorrect_rows", "score_rollouts"]


def grade_answers(texts: list[str], problems: list[Problem]) -> list[bool]:
    """The math verifier: each text's last \\boxed{} against its problem's gold answer (`verify.grade_batch`)."""
    return verify.grade_batch(list(texts), [p.answer for p in problems])


def incorrect_rows(correct: torch.Tensor) -> torch.Tensor:
    """SCOPE's teacher rows: the incorrect rollouts (Eq. 5's path)."""
    return (~correct).nonzero().squeeze(-1)


def all_rows(correct: torch.Tensor) -> torch.Tensor:
    """OPD's teacher rows: every rollout."""
    return torch.arange(len(correct))


@dataclass
class ScoredBatch:
    """Rollouts of `problems` (rows of a problem adjacent), their rewards and teacher scores."""

    rollouts: rollout.RolloutBatch  # input_ids / attention_mask / response_mask (N, T), group (N,), texts
    problems: list[Problem]  # row i answers problems[rollouts.group[i]]
    prompts: list[str]  # format_prompt(problem), one per problem
    correct: torch.Tensor  # (N,) bool: the verifier's reward
    teacher_rows: torch.Tensor  # (K,) long: the rows the teacher scored (empty without a teacher)
    teacher_logp: torch.Tensor  # (N, T) float32: teacher token log-probs on teacher_rows, NaN on every other row
    teacher_logits: torch.Tensor | None = None  # (N, T, V) teacher log-distributions (exact); 0 off teacher_rows
    student_logp: torch.Tensor | None = None  # (N, T) the student's own token log-probs (score_student)
    teacher_busy_s: float = 0.0  # overlap: the worker's scoring seconds (partly hidden behind generation)
    reward_busy_s: float = 0.0  # overlap_reward: the worker's grading seconds (partly hidden behind generation)

    def __len__(self) -> int:
        return len(self.rollouts)

    @property
    def row_problems(self) -> list[Problem]:
        """The problem of each row."""
        return [self.problems[int(g)] for g in self.rollouts.group]

    def teacher_seq_logp(self) -> torch.Tensor:
        """(N,) the teacher's length-normalised log-prob of each scored response (NaN off teacher_rows)."""
        out = torch.full((len(self),), float("nan"))
        rows = self.teacher_rows
        if len(rows):
            out[rows] = sequence_logp(self.teacher_logp[rows], self.rollouts.response_mask[rows])
        return out

    def student_seq_logp(self) -> torch.Tensor:
        """(N,) the student's length-normalised log-prob of its own responses (needs score_student)."""
        if self.student_logp is None:
            raise ValueError("student_logp: this batch was scored without score_student=True")
        return sequence_logp(self.student_logp, self.rollouts.response_mask)


def _no_timer(name: str) -> AbstractContextManager:
    return nullcontext()


def _check_inputs(problems, group_size, sampling, teacher, teacher_rows, exact, overlap, generate,
                  overlap_reward=False, while_grading=None) -> None:
    if not problems:
        raise ValueError("problems: expected at least one problem")
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size: expected a positive int of rollouts per problem, got {group_size!r}")
    if not isinstance(sampling, Sampling):
        raise ValueError(f"sampling: expected a rollout.Sampling, got {type(sampling).__name__}")
    if teacher is None and (teacher_rows is not None or exact or overlap):
        given = [name for name, value in (("teacher_rows", teacher_rows is not None), ("exact", exact),
                                          ("overlap", overlap)) if value]
        raise ValueError(f"teacher: {', '.join(given)} given without a teacher to score with")
    if exact and not hasattr(teacher, "full_log_probs"):
        raise ValueError(f"exact: needs a teacher with full log-distributions (LocalTeacher), got {type(teacher).__name__}")
    for name, value in (("overlap", overlap), ("overlap_reward", overlap_reward)):
        if value and generate is not None:
            raise ValueError(f"{name}: works on generation batches as the project's decoder yields them; "
                             "it cannot be combined with another generate (e.g. a vLLM engine)")
    if while_grading is not None and not overlap_reward:
        raise ValueError("while_grading: runs beside the worker's grading, so it needs overlap_reward=True")


def _check_rows(rows: torch.Tensor, n: int) -> torch.Tensor:
    rows = torch.as_tensor(rows, dtype=torch.long).reshape(-1)
    if len(rows) and (int(rows.min()) < 0 or int(rows.max()) >= n or len(rows.unique()) != len(rows)):
        raise ValueError(f"teacher_rows: expected distinct row indices in [0, {n}), got {rows.tolist()}")
    return rows


def _grade(grade: Grader, texts: list[str], problems: list[Problem]) -> torch.Tensor:
    rewards = list(grade(list(texts), problems))
    if len(rewards) != len(texts):
        raise ValueError(f"grade: returned {len(rewards)} rewards for {len(texts)} texts")
    return torch.tensor(rewards, dtype=torch.bool)


def score_rollouts(student, tokenizer, problems: Sequence[Problem], *, format_prompt: Callable[[Problem], str],
                   group_size: int, sampling: Sampling, seed: int, grade: Grader = grade_answers,
                   teacher: Teacher | None = None, teacher_rows: RowSelector | None = None, exact: bool = False,
                   overlap: bool = False, score_student: bool = False,
                   generate: Callable[..., rollout.RolloutBatch] | None = None,
                   timer: StepTimer | None = None, overlap_reward: bool = False,
                   while_grading: Callable[[rollout.RolloutBatch], None] | None = None) -> ScoredBatch:
    """Sample `group_size` rollouts per problem from `student`, grade them, score some under `teacher`.

    format_prompt: problem -> the prompt text the models see.
    grade: (texts, problems of the texts) -> one bool per text (default: the math verifier).
    teacher: a `teacher.Teacher` (LocalTeacher, ServerTeacher) or None (rollouts and rewards only).
    teacher_rows: rewards (N,) bool -> the rows to score (`incorrect_rows`, `all_rows`); with a
        teacher, None scores every row. Unscored rows keep NaN teacher log-probs.
    exact: also keep the teacher's full log-distributions (`teacher_logits`; LocalTeacher only).
    overlap: score each generation batch on a worker thread while the next one is generated
        (same result; needs a row-local `teacher_rows`).
    overlap_reward: grade each generation batch on that worker too, before its teacher scoring
        (same result; with a teacher, its scoring is then overlapped as well).
    while_grading: with overlap_reward, called on the calling thread with the rollouts once the last
        batch is decoded, while the worker grades the rows that ended last, before this thread
        helps with what is left and waits for the grades (the trainer starts its update's
        forward pass there: `batching.early_forward`). Its own time is its own to measure.
    score_student: also score every row under `student` itself (`student_logp`, in-process).
    generate: a sampler taking the prompts, `num_samples`, `seed` and the settings as keywords
        (`sampling.kwargs()`; e.g. `VLLMEngine.generate`); default `rollout.generate_rollouts` on `student`.
    timer: name -> context manager, entered as "generation", "reward" and "teacher_scoring"
        (the trainer's Timer, Table 8).
    """
    problems = list(problems)
    _check_inputs(problems, group_size, sampling, teacher, teacher_rows, exact, overlap, generate, overlap_reward,
                  while_grading)
    timer = timer or _no_timer
    select = None if teacher is None else (teacher_rows or all_rows)
    prompts = [format_prompt(p) for p in problems]
    if overlap or overlap_reward:
        scored = _score_overlapped(student, tokenizer, problems, prompts, grade=grade, group_size=group_size,
                                   sampling=sampling, seed=seed, teacher=teacher, select=select, exact=exact,
                                   timer=timer, grade_on_worker=overlap_reward, while_grading=while_grading)
    else:
        with timer("generation"), torch.no_grad():
            if generate is None:
                rollouts = rollout.generate_rollouts(student, tokenizer, prompts, num_samples=group_size,
                                                     sampling=sampling, seed=seed)
            else:
                rollouts = generate(prompts, num_samples=group_size, seed=seed, **sampling.kwargs())
        with timer("reward"):
            correct = _grade(grade, rollouts.texts, [problems[int(g)] for g in rollouts.group])
        teacher_logp = torch.full(rollouts.input_ids.shape, float("nan"))
        rows, full_logits = torch.zeros(0, dtype=torch.long), None
        if teacher is not None:
            rows = _check_rows(select(correct), len(correct))
            with timer("teacher_scoring"):
                ids, att = rollouts.input_ids[rows], rollouts.attention_mask[rows]
                if exact and len(rows):  # one teacher pass gives the token log-probs and the distributions
                    full, teacher_logp[rows] = teacher.full_log_probs(ids, att)
                    full_logits = full.new_zeros(*teacher_logp.shape, full.shape[-1])  # zero (unused) off the rows
                    full_logits[rows] = full
                elif len(rows):
                    teacher_logp[rows] = teacher.score(ids, att).cpu()
        scored = ScoredBatch(rollouts, problems, prompts, correct, rows, teacher_logp, full_logits)
    if score_student:
        scored.student_logp = LocalTeacher(student).score(scored.rollouts.input_ids, scored.rollouts.attention_mask)
    return scored


# Finished rows are handed to the worker as soon as it is idle (it never waits while rows are
# ready), and while it is busy they gather into calls of up to this many: each call hands its
# programs to the kept batch sandbox at once (scope_lib/grading/code.py), so a worker that has
# fallen behind catches up in few hand-overs. bench/reward_overlap.py measures the step.
_GRADE_ROWS = 16

# --- overlapped teacher scoring ----------------------------------------------------------------


class _GradeJob:
    """One grading call handed over: run by the worker or, once generation is done, by the
    decoder's thread, whichever claims it first; `result` gets the rewards either way."""

    def __init__(self, work: Callable[[], torch.Tensor]):
        self.work, self.claimed, self.result = work, False, Future()


class OverlappedScorer:
    """Teacher scoring on one worker thread, fed finished generation batches while generation goes on.

    `submit(rows, input_ids, attention_mask)` queues the scoring of some rows (global row indices)
    laid out as in the final batch up to right padding; `gather(shape)` waits and places the
    results: token log-probs (NaN on unscored rows, 0 on the padding columns past a batch's
    width) and, with `exact`, full log-distributions. Teacher log-probs of a row do not depend on
    the rows scored with it nor on right padding (causal attention, per-row kernels);
    tests/test_overlap.py checks that the results equal the synchronous path's bit for bit.
    `busy_s` is the worker's scoring time (hidden behind generation where it overlaps).
    """

    def __init__(self, teacher, *, exact: bool):
        self.teacher, self.exact = teacher, exact
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="teacher-scoring")
        self.futures: list = []
        self.graded: list = []  # grade_rows' (rows, future), in the order the rows finished
        self.batch_jobs: list = []  # score_graded_batch's (offset, future), in generation order
        self.busy_s = 0.0
        self.reward_busy_s = 0.0
        self.grading_queued = 0  # grading jobs handed over and not yet finished
        self._unstarted: list[_GradeJob] = []  # grading jobs no thread has claimed yet, oldest first
        self._lock = threading.Lock()

    def _score(self, ids: torch.Tensor, att: torch.Tensor):
        start = time.perf_counter()
        out = self.teacher.full_log_probs(ids, att) if self.exact else (None, self.teacher.score(ids, att).cpu())
        with self._lock:
            self.busy_s += time.perf_counter() - start
        return out

    def submit(self, rows: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
        if len(rows):
            self.futures.append((rows, self.pool.submit(self._score, input_ids, attention_mask)))

    def grade_rows(self, grade: Grader, rows: list[int], texts: list[str], problems: list[Problem]) -> None:
        """Queue the grading of some rows (global indices) whose responses are final."""
        job = _GradeJob(lambda: _grade(grade, texts, problems))

        def run():  # on the worker, unless `grade_queued_here` took the job first
            begin = time.perf_counter()
            if self._run_job(job):
                with self._lock:
                    self.reward_busy_s += time.perf_counter() - begin

        with self._lock:
            self.grading_queued += 1
            self._unstarted.append(job)
        self.graded.append((torch.tensor(rows, dtype=torch.long), job.result))
        self.pool.submit(run)

    def _run_job(self, job: "_GradeJob") -> bool:
        """Claim a grading job and run it on this thread; False if another thread has it."""
        with self._lock:
            if job.claimed:
                return False
            job.claimed = True
            self._unstarted.remove(job)
        try:
            job.result.set_result(job.work())
        except BaseException as error:  # noqa: BLE001  (raised where the result is read)
            job.result.set_exception(error)
        finally:
            with self._lock:
                self.grading_queued -= 1
        return True

    def grading_idle(self) -> bool:
        """No grading job waits or runs: rows handed over now are graded at once."""
        with self._lock:
            return self.grading_queued == 0

    def grade_queued_here(self) -> None:
        """Grade, on the calling thread, the grading jobs the worker has not started yet, the
        newest first, while the worker works through them from the oldest: once generation is
        done the decoder's core is free, so the rows graded after it take two cores."""
        while True:
            with self._lock:
                job = self._unstarted[-1] if self._unstarted else None
            if job is None:
                return
            self._run_job(job)

    def score_graded_batch(self, offset: int, size: int, first_graded: int, select: RowSelector,
                           layout: Callable[[], dict[str, torch.Tensor]]) -> None:
        """Queue, after the grading of a generation batch's rows (rows offset .. offset + size,
        graded by the jobs from `first_graded` on), the teacher scoring of the rows `select`
        picks from their rewards. One worker runs the jobs in order, so the grades are in."""
        jobs = self.graded[first_graded:]

        def run():
            correct = torch.zeros(size, dtype=torch.bool)
            for rows, future in jobs:
                correct[rows - offset] = future.result()
            rows = _check_rows(select(correct), size)
            if not len(rows):
                return rows, None
            laid = layout()
            return rows, self._score(laid["input_ids"][rows], laid["attention_mask"][rows])

        self.batch_jobs.append((offset, self.pool.submit(run)))

    def gather_graded(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Wait for the grading and batch jobs: the rewards (n,), the rows scored (global
        indices, in batch order), and their teacher results queued for `gather`."""
        correct = torch.zeros(n, dtype=torch.bool)
        row_parts = [torch.zeros(0, dtype=torch.long)]
        try:
            for rows, future in self.graded:
                correct[rows] = future.result()
            for offset, future in self.batch_jobs:
                rows, scores = future.result()
                row_parts.append(rows + offset)
                if scores is not None:
                    done = Future()
                    done.set_result(scores)
                    self.futures.append((rows + offset, done))
        except BaseException:
            self.pool.shutdown(wait=True, cancel_futures=True)
            raise
        return correct, torch.cat(row_parts)

    def gather(self, shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        teacher_logp, full = torch.full(shape, float("nan")), None
        try:
            for rows, future in self.futures:
                full_rows, token_rows = future.result()
                width = token_rows.shape[1]
                teacher_logp[rows] = 0.0
                teacher_logp[rows, :width] = token_rows
                if full_rows is not None:
                    if full is None:
                        full = full_rows.new_zeros(*shape, full_rows.shape[-1])  # zero (unused) on unscored rows
                    full[rows, :width] = full_rows
        finally:
            self.pool.shutdown(wait=True)
        return teacher_logp, full


def _left_pad_to(layout: dict[str, torch.Tensor], width_p: int, chunk_width_p: int, pad_id: int) -> dict[str, torch.Tensor]:
    """A batch's layout (`rollout.assemble`) widened on the left to the whole batch's prompt width."""
    extra = width_p - chunk_width_p
    if extra == 0:
        return layout
    n = layout["input_ids"].shape[0]
    return {"input_ids": torch.cat([torch.full((n, extra), pad_id, dtype=torch.long), layout["input_ids"]], 1),
            **{k: torch.cat([torch.zeros((n, extra), dtype=torch.long), layout[k]], 1)
               for k in ("attention_mask", "response_mask")}}


def _score_overlapped(student, tokenizer, problems: list[Problem], prompts: list[str], *, grade: Grader,
                      group_size: int, sampling: Sampling, seed: int, teacher, select: RowSelector | None, exact: bool,
                      timer: StepTimer, grade_on_worker: bool = False,
                      while_grading: Callable[[rollout.RolloutBatch], None] | None = None) -> ScoredBatch:
    """`score_rollouts` with the teacher scoring each finished generation batch on a worker thread.

    Rollouts, rewards (graded per generation batch: a verifier grades each rollout on its own)
    and the rows scored are the synchronous path's, and so are the teacher's outputs
    (OverlappedScorer). "teacher_scoring" times the wait for the worker after generation, the
    part of the teacher's time that generation did not hide.

    With `grade_on_worker` the worker grades rows as soon as the decoder has finished them (at
    once when it is idle, else in groups of `_GRADE_ROWS`, and the rest of a batch when it is
    done), so grading runs beside the decoding of the other rows and batches; then it scores the
    batch's selected rows. After the last batch the decoder's thread grades the jobs the worker
    has not started (`grade_queued_here`), after `while_grading` if given. "reward" times the
    main thread's part: that grading and the wait for the worker's grades.
    """
    scorer = OverlappedScorer(teacher, exact=exact)
    pending: list[tuple[int, list[int]]] = []  # rows finished and not yet handed to the worker
    first_job = 0  # the first grading job of the batch being generated

    def hand_over() -> None:
        if pending:
            rows, tokens = [r for r, _ in pending], [t for _, t in pending]
            pending.clear()
            scorer.grade_rows(grade, rows, tokenizer.batch_decode(tokens, skip_special_tokens=True),
                              [problems[r // group_size] for r in rows])

    def rows_done(start: int, rows: list[int], tokens: list[list[int]]) -> None:
        pending.extend((start + r, list(t)) for r, t in zip(rows, tokens))
        if len(pending) >= _GRADE_ROWS or scorer.grading_idle():
            hand_over()

    correct_parts: list[torch.Tensor] = []
    row_parts: list[torch.Tensor] = []
    pad = tokenizer.pad_token_id
    width_p = max(len(ids) for ids in tokenizer(prompts, add_special_tokens=True)["input_ids"])
    batches = rollout.generation_batches(student, tokenizer, prompts, num_samples=group_size, sampling=sampling,
                                         seed=seed, on_rows_done=rows_done if grade_on_worker else None)
    try:
        while True:
            with timer("generation"), torch.no_grad():
                try:
                    start, chunk_prompts, responses = next(batches)
                except StopIteration as done:
                    rollouts = done.value
                    break
            if grade_on_worker:
                hand_over()  # the batch's last rows: its grading jobs are graded[first_job:]
                if select is not None:
                    layout = (lambda chunk=chunk_prompts, done=responses:
                              _left_pad_to(rollout.assemble(chunk, done, pad), width_p, max(map(len, chunk)), pad))
                    scorer.score_graded_batch(start, len(responses), first_job, select, layout)
                first_job = len(scorer.graded)
                continue
            texts = tokenizer.batch_decode(responses, skip_special_tokens=True)
            graded = [problems[(start + i) // group_size] for i in range(len(responses))]
            with timer("reward"):
                correct = _grade(grade, texts, graded)
                correct_parts.append(correct)
            with timer("teacher_scoring"):
                rows = _check_rows(select(correct), len(correct))
                row_parts.append(rows + start)
                if len(rows):
                    layout = _left_pad_to(rollout.assemble(chunk_prompts, responses, pad), width_p,
                                          max(map(len, chunk_prompts)), pad)
                    scorer.submit(rows + start, layout["input_ids"][rows], layout["attention_mask"][rows])
        if grade_on_worker:  # nothing left to decode: this thread's core is free for the rest
            if while_grading is not None:
                while_grading(rollouts)
            with timer("reward"):
                scorer.grade_queued_here()
    except BaseException:
        scorer.pool.shutdown(wait=True, cancel_futures=True)
        raise
    if grade_on_worker:
        with timer("reward"):
            correct, rows = scorer.gather_graded(len(rollouts))
    else:
        correct, rows = torch.cat(correct_parts), torch.cat(row_parts)
    with timer("teacher_scoring"):
        teacher_logp, full = scorer.gather(tuple(rollouts.input_ids.shape))
    if select is None:  # rewards only (no teacher)
        return ScoredBatch(rollouts, problems, prompts, correct, torch.zeros(0, dtype=torch.long),
                           teacher_logp, None, reward_busy_s=scorer.reward_busy_s)
    if not torch.equal(rows, _check_rows(select(correct), len(correct))):
        raise ValueError("teacher_rows: overlap selects the rows of each generation batch on its own, and this "
                         "selector picks other rows from the whole batch (it must be row-local)")
    return ScoredBatch(rollouts, problems, prompts, correct, rows, teacher_logp, full, teacher_busy_s=scorer.busy_s,
                       reward_busy_s=scorer.reward_busy_s)
