"""Eq. 4's preconditions on the shipped code world's base student (a probe, no method run).

Samples G = 8 rollouts at temperature 1.0 for 256 training prompts, grades them by their hidden
tests in the sandbox, and computes the student-path statistics of `scope_lib.studies.preconditions`
(effective sample size of the Eq. 4 weights at tau = 1, within-group log-PPL spread). A
"route" here is the program text: the reference program, or another program that passes.

    python data/world_tiny_code/probes/student_path.py > data/world_tiny_code/probes/student_path.log

The statistics also go to `student_path.json` beside this file (read by
`scope_lib.studies.preconditions.eq4_regime_table`).
"""

import json
from pathlib import Path

import torch

from scope_lib import grading
from scope_lib.worlds import code as code_task
from scope_lib.studies.preconditions import measure_student_path
from scope_lib.rollout import Sampling
from scope_lib.world import _tiny_world

torch.set_num_threads(1)
world = _tiny_world("tiny_code", progress=False)
problems = code_task.train_pool(256, seed=7)
code = grading.CodeGrading(extract="raw")


def route_of(problem, text):
    return "reference" if text.strip() == problem.solution else "another program"


table, stats = measure_student_path(world.student, world.tokenizer, problems, code_task.format_prompt, route_of,
                                    sampling=Sampling(temperature=1.0, max_new_tokens=72), grade=lambda texts, probs: grading.grade("code", texts, probs,
                                                                                                code=code))
right = table[table.correct]
distinct = right.groupby("group")["text"].nunique()
stats["groups_2plus_distinct_correct_programs"] = float((distinct >= 2).sum())
(Path(__file__).parent / "student_path.json").write_text(json.dumps(stats, indent=1, default=float) + "\n")
print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in stats.items()}, indent=1))
print(right.groupby("route")["log_ppl"].describe().round(3).to_string())
