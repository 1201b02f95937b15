"""The tiny code task and world: reference programs pass their hidden tests in the sandbox and
wrong ones fail, the splits are disjoint, the verifier dedupes identical programs without
changing a verdict, configs refuse the wrong verifier, and the shipped world loads only intact."""

import random
import shutil

import pytest

from scope_lib import grading
from scope_lib.worlds import code as code_task
from scope_lib.grading.code import CodeTests
from scope_lib.config import ConfigError, load_config
from scope_lib.world import SHIPPED_DIR

RAW = grading.CodeGrading(extract="raw")


def _sample(n, seed):
    rng = random.Random(seed)
    pool = code_task.train_pool(400, seed=seed)
    return rng.sample(pool, n)


def test_reference_values_follow_the_words():
    # Start with x. Add 5. Halve it. If odd, add 3. Multiply by 2.
    steps = [("+", 5), ("half", 0), ("odd+", 3), ("*", 2)]
    for x in range(30):
        value = (x + 5) // 2
        value = value + 3 if value % 2 else value
        assert code_task.reference(steps, x) == 2 * value
    problem = code_task.make_problem(steps, [1, 2, 7], split_name="demo", index=0)
    assert problem.question == "Start with x. Add 5. Halve it. If odd, add 3. Multiply by 2."
    assert problem.solution == "def f(x):\n x=x+5\n x=x//2\n if x%2:x=x+3\n x=x*2\n return x"
    tests = CodeTests.from_json(problem.answer)
    assert tests.kind == "call" and tests.fn_name == "f"
    assert [tuple(args) for args, _ in tests.cases] == [(1,), (2,), (7,)]
    assert grading.kind_of([problem]) == "code"


def test_reference_programs_pass_and_wrong_programs_fail_in_the_sandbox():
    rng = random.Random(0)
    problems = _sample(24, seed=rng.randrange(1000))
    assert all(grading.grade("code", [p.solution for p in problems], problems, code=RAW))
    # Each wrong version changes what f computes on these inputs or does not run at all.
    wrong = []
    for p in problems:
        lines = p.solution.split("\n")
        k = rng.randrange(1, len(lines) - 1)
        wrong.append("\n".join(lines[:k] + [" x=x+1000"] + lines[k + 1:]))
    assert not any(grading.grade("code", wrong, problems, code=RAW))
    broken = [p.solution.replace("def f(x):", "def f(x)") for p in problems]  # a syntax error: graded wrong
    assert not any(grading.grade("code", broken, problems, code=RAW))


def test_a_program_that_drops_the_branch_passes_only_some_inputs():
    steps = [("odd+", 3)]
    problem = code_task.make_problem(steps, [2, 4, 5], split_name="demo", index=0)
    assert grading.grade("code", ["def f(x):\n return x"], [problem], code=RAW) == [False]
    even_only = code_task.make_problem(steps, [2, 4, 6], split_name="demo", index=1)
    assert grading.grade("code", ["def f(x):\n return x"], [even_only], code=RAW) == [True]


def test_splits_are_disjoint_and_deterministic():
    train = {p.question for p in code_task.train_pool(2000)}
    validation = {p.question for p in code_task.validation_set(200)}
    evals = {p.question for problems in code_task.eval_sets(100).values() for p in problems}
    assert not train & evals and not validation & evals
    assert [p.answer for p in code_task.eval_sets(10)["code3"]] == [p.answer for p in code_task.eval_sets(10)["code3"]]
    assert {p.tier for p in code_task.eval_sets(20)["code4"]} == {4}


def test_identical_programs_are_judged_once_with_the_same_verdicts(monkeypatch):
    from scope_lib.grading import code as code_verify

    problems = _sample(6, seed=3)
    responses, graded = [], []
    for p in problems:  # per problem: the reference twice, a wrong program twice, one more reference
        wrong = p.solution.replace(" return x", " return x+1")
        responses += [p.solution, wrong, p.solution, wrong, p.solution]
        graded += [p] * 5
    expected = [code_verify.grade_batch([r], [CodeTests.from_json(p.answer)], extract="raw")[0]
                for r, p in zip(responses, graded)]
    calls = []
    original = code_verify.grade_batch

    def counting(responses, tests, **kwargs):
        calls.append(len(responses))
        return original(responses, tests, **kwargs)

    monkeypatch.setattr(grading, "code_grade_batch", counting)  # the name the dispatcher calls
    assert grading.grade("code", responses, graded, code=RAW) == expected
    assert calls == [2 * len(problems)]  # one run per distinct (program, problem)
    # the same program text under another problem is judged again
    other = code_task.make_problem([("+", 1)], [1, 2], split_name="demo", index=0)
    same_text = problems[0].solution
    assert grading.grade("code", [same_text, same_text], [problems[0], other], code=RAW)[0] is True
    with pytest.raises(ValueError, match=r"responses\[1\]: expected str"):
        grading.grade("code", [same_text, None], [problems[0], other], code=RAW)


def test_first_error_names_what_departs_from_the_reference():
    problem = code_task.make_problem([("+", 5), ("*", 2)], [1, 2], split_name="demo", index=0)
    assert code_task.first_error(problem, problem.solution) is None
    assert code_task.first_error(problem, "def g(x):\n x=x+5").kind == "bad header"
    assert code_task.first_error(problem, "def f(x):\n x=x+6\n x=x*2\n return x").line == 1
    assert code_task.first_error(problem, "def f(x):\n x=x+5\n return x").kind == "missing steps"
    assert code_task.first_error(problem, "def f(x):\n x=x+5\n x=x*2\n x=x+1\n return x").kind == "extra steps"
    assert code_task.first_error(problem, "def f(x):\n x=x+5\n x=x*2").kind == "no return"


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="steps"):
        code_task.make_problem([], [1], split_name="demo", index=0)
    with pytest.raises(ValueError, match="inputs"):
        code_task.make_problem([("+", 1)], [], split_name="demo", index=0)
    with pytest.raises(ValueError, match="op"):
        code_task.apply(1, "/", 2)


def test_configs_pair_the_code_world_with_the_code_verifier():
    cfg = load_config("tiny_code")
    assert cfg.model.student == "tiny_code" and cfg.reward.verifier == "code" and cfg.reward.code_extract == "raw"
    with pytest.raises(ConfigError, match="reward.verifier"):
        load_config("tiny_code", overrides={"reward.verifier": "math"})
    with pytest.raises(ConfigError, match="reward.verifier|data.train"):
        load_config("tiny", overrides={"reward.verifier": "code"})


def test_smoke_world_trains_end_to_end_with_sandbox_rewards(tmp_path, monkeypatch):
    from scope_lib.experiments.grid import experiment_config
    from scope_lib.trainer import train

    monkeypatch.setenv("SCOPE_CACHE_DIR", str(tmp_path / "cache"))
    cfg = experiment_config("tiny_code", "scope", 0, smoke=True, output_dir=str(tmp_path / "run"), progress=False)
    result = train(cfg)
    assert len(result.history) == cfg.steps and all(0 <= row["accuracy"] <= 1 for row in result.history)


@pytest.fixture
def shipped_copy(tmp_path):
    source = SHIPPED_DIR / "tiny_code"
    if not source.exists():
        pytest.fail("worlds/tiny_code is missing: build it with python -m scope_lib.worlds.rebuild tiny_code --ship")
    return shutil.copytree(source, tmp_path / "tiny_code")


def test_shipped_code_world_loads_and_refuses_a_corrupted_weight_file(shipped_copy):
    from scope_lib.worlds.code_build import CODE_WORLD
    from scope_lib.worlds.shipped import WorldIntegrityError, load_shipped_world

    world = load_shipped_world(shipped_copy)
    assert world.config == CODE_WORLD
    teacher = sum(p.numel() for p in world.teacher.parameters())
    student = sum(p.numel() for p in world.student.parameters())
    assert teacher >= 3 * student
    weights = shipped_copy / "student" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(WorldIntegrityError, match=r"student/model.safetensors.*(altered)"):
        load_shipped_world(shipped_copy)


def test_distillation_on_the_shipped_code_world_raises_the_greedy_pass_rate(tmp_path):
    """KD keeps the teacher's programs that pass their hidden tests in the sandbox
    (`kd.only_correct`) and trains the student on them; 40 steps lift its greedy pass rate on
    200 validation problems (0.38 -> 0.445 on the machine that shipped the world)."""
    from scope_lib.worlds.code_build import pass_rate
    from scope_lib.experiments.grid import experiment_config
    from scope_lib.trainer import train
    from scope_lib.world import WorldSpec, load_world

    # The budget this was shown at, pinned (the preset's own budget is sized for the main job's
    # time and may move): 40 steps of 16 prompts, 10 warm-up steps, lr 1e-3.
    budget = {"steps": 40, "optim.prompts_per_step": 16, "optim.mini_batch_prompts": 16,
              "optim.warmup_steps": 10, "optim.lr": 1e-3}
    cfg = experiment_config("tiny_code", "kd", 0, output_dir=str(tmp_path / "run"), progress=False, **budget)
    assert (cfg.steps, cfg.optim.prompts_per_step, cfg.optim.lr) == (40, 16, 1e-3)
    assert cfg.kd.only_correct
    world = load_world(WorldSpec.from_config(cfg))
    validation = code_task.validation_set(200, seed=1)
    before = pass_rate(world.student, world.tokenizer, validation)
    after = pass_rate(train(cfg, world).model, world.tokenizer, validation)
    assert after >= before + 0.03, (before, after)
