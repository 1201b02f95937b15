"""The route task: two valid routes per problem, who learned which, and the error diagnosis."""

import random
from collections import Counter

import pytest

from scope_lib.worlds import routes
from scope_lib.verify import is_correct


def _steps(problem):
    return [tuple(s) for s in problem.meta["steps"]]


@pytest.fixture(scope="module")
def pool():
    return routes.train_pool(600, seed=3)


def test_every_valid_route_is_graded_correct_and_recognised(pool):
    checked = 0
    for problem in pool:
        start, steps = problem.meta["start"], _steps(problem)
        assert routes.routes_differ(steps)
        direct = routes.solution_text(start, steps, routes.DIRECT)
        assert is_correct(direct, problem.answer) and routes.route_of(problem, direct) == routes.DIRECT
        for route in routes.ROUTES:
            if not routes.route_valid(start, steps, route, routes.STUDENT_MAX):
                continue
            text = routes.solution_text(start, steps, route)
            assert is_correct(text, problem.answer)
            assert routes.route_of(problem, text) == route
            assert routes.first_route_error(problem, text) is None
            checked += 1
    assert checked > len(pool)  # many problems have both routes


def test_kinds_follow_the_ranges(pool):
    kinds = Counter(p.meta["kind"] for p in pool)
    assert set(kinds) == set(routes.KINDS)
    for problem in pool:
        start, steps = problem.meta["start"], _steps(problem)
        inorder = routes.running_values(start, routes.route_steps(steps, "inorder"))
        subfirst = routes.running_values(start, routes.route_steps(steps, "subfirst"))
        if problem.meta["kind"] == "subfirst_only":
            assert max(inorder) > routes.STUDENT_MAX and min(subfirst) >= 0 and max(subfirst) <= routes.STUDENT_MAX
        if problem.meta["kind"] == "inorder_only":
            assert min(subfirst) < 0 and 0 <= min(inorder) and max(inorder) <= routes.STUDENT_MAX
        # the routes reach the same answer
        assert inorder[-1] == subfirst[-1] == int(problem.answer)


def test_train_and_eval_are_disjoint():
    train = {p.question for p in routes.train_pool(1000)}
    validation = {p.question for p in routes.validation_set(200)}
    evaluation = {p.question for s in routes.eval_sets(50).values() for p in s}
    assert not train & evaluation and not validation & evaluation
    assert {p.tier for s in routes.eval_sets(20).values() for p in s} == set(routes.EVAL_TIERS.values())


def test_solution_mixes():
    student = routes.pretraining_texts(3000, routes.STUDENT_MIX, seed=0)
    teacher = routes.pretraining_texts(3000, routes.TEACHER_MIX, seed=0)

    def numbers(text):
        return [int(n) for n in __import__("re").findall(r"\d+", text)]

    assert max(max(numbers(s)) for _, s in student) <= routes.STUDENT_MAX
    assert max(max(numbers(s)) for _, s in teacher) > routes.STUDENT_MAX  # three-digit values
    assert not any(routes.FIX_MARK in s for _, s in student)
    short = [(p, s) for p, s in student if len(_problem_of(p).meta["steps"]) <= routes.STUDENT_MIX.direct_max_ops]
    direct_share = sum(s.startswith("\\boxed") for _, s in short) / len(short)
    assert abs(direct_share - routes.STUDENT_MIX.direct_prob) < 0.05
    assert not any(s.startswith("\\boxed") for p, s in student if (p, s) not in short)
    assert not any(s.startswith("\\boxed") for _, s in teacher)
    fix_share = sum(routes.FIX_MARK in s for _, s in teacher) / len(teacher)
    assert 0.2 < fix_share < 0.3  # TEACHER_MIX.slip_prob = 0.25

    def rare_share(pairs, mix):
        both = rare = 0
        for prompt, solution in pairs:
            problem = _problem_of(prompt)
            start, steps = problem.meta["start"], _steps(problem)
            if all(routes.route_valid(start, steps, r, mix.max_value) for r in routes.ROUTES):
                both += 1
                rare += routes.route_of(problem, solution) == "subfirst"
        return rare / both

    student_steps = [(p, s) for p, s in student if not s.startswith("\\boxed")]
    assert abs(rare_share(student_steps, routes.STUDENT_MIX) - 0.2) < 0.04
    assert rare_share(teacher, routes.TEACHER_MIX) < 0.06
    # every solution, fix lines included, is correct
    assert all(is_correct(s, _problem_of(p).answer) and routes.first_route_error(_problem_of(p), s) is None
               for p, s in random.Random(0).sample(teacher, 300))


def _problem_of(prompt: str):
    import re

    start = int(re.match(r"Start with (\d+)\.", prompt)[1])
    steps = [("+" if word == "Add" else "-", int(b)) for word, b in re.findall(r"(Add|Subtract) (\d+)\.", prompt)]
    return routes.make_problem(start, steps, source="test", index=0, max_value=routes.TEACHER_MAX)


def test_first_route_error_kinds():
    problem = routes.make_problem(50, [("+", 30), ("-", 40), ("+", 5)], source="test", index=0)
    assert problem.answer == "45"
    right = "50+30=80\n80-40=40\n40+5=45\n\\boxed{45}"
    assert routes.first_route_error(problem, right) is None
    cases = {
        "50+30=81\n81-40=41\n41+5=46\n\\boxed{46}": ("arithmetic slip", 0),
        "50+30=81\nfix: 50+30=80\n80-40=40\n40+5=45\n\\boxed{45}": None,  # repaired
        "50+30=80\n82-40=42\n42+5=47\n\\boxed{47}": ("carried a wrong value", 1),
        "50+30=80\n80+40=120\n\\boxed{120}": ("wrong operation", 1),
        "50-40=10\n10+30=40\n40+5=45\n\\boxed{45}": None,  # the other route
        "50-40=10\n10+5=15\n15+30=45\n\\boxed{45}": None,  # another valid order
        "50-40=10\n10+40=50\n50+5=55\n\\boxed{55}": ("wrong operation", 1),
        "\\boxed{45}": None,  # a direct answer
        "\\boxed{46}": ("wrong direct answer", 0),
        "50+30=80\n80-40=40\n\\boxed{40}": ("missing steps", 2),
        "50+30=80\n80-40=40\n40+5=45\n\\boxed{44}": ("boxed answer differs", 3),
        "50+30=80\nbanana": ("malformed line", 1),
    }
    for text, expected in cases.items():
        error = routes.first_route_error(problem, text)
        if expected is None:
            assert error is None, (text, error)
        else:
            assert (error.kind, error.line) == expected, (text, error)


def test_make_problem_rejects_out_of_range():
    with pytest.raises(ValueError, match="neither route"):
        routes.make_problem(5, [("+", 99), ("-", 50), ("+", 60)], source="test", index=0)
    with pytest.raises(ValueError, match="route"):
        routes.route_steps([("+", 1)], "backwards")


def test_misread_then_fix_is_repaired_and_without_the_fix_is_a_wrong_operation(pool):
    rng = random.Random(11)
    for problem in pool[:150]:
        start, steps = problem.meta["start"], _steps(problem)
        route = "subfirst" if problem.meta["kind"] == "subfirst_only" else "inorder"
        ordered = routes.route_steps(steps, route)
        line = rng.randrange(len(ordered))
        before = ([start] + routes.running_values(start, ordered))[line]
        wrong = routes._misread_operand(rng, before, *ordered[line], avoid=ordered)
        assert wrong != ordered[line][1] and wrong > 0
        text = routes.solution_text(start, steps, route, misread=(line, wrong))
        lines = text.split("\n")
        assert lines[line + 1].startswith(routes.FIX_MARK)
        assert is_correct(text, problem.answer) and routes.first_route_error(problem, text) is None
        # the misread line computes its own (wrong) operand right: only its operand is wrong
        a, op, b, c, _ = routes.parse_lines(lines[line])[0]
        assert (a, op, b) == (before, ordered[line][0], wrong) and c == (a + b if op == "+" else a - b)
        unfixed = "\n".join(lines[: line + 1] + lines[line + 2:])
        error = routes.first_route_error(problem, unfixed)
        assert error is not None and (error.line, error.kind) == (line, "wrong operation")
        # a fix line that is not a valid next step repairs nothing
        bad_fix = "\n".join(lines[: line + 1] + [f"{routes.FIX_MARK}{before}{op}{wrong}={c}"] + lines[line + 2:])
        assert routes.first_route_error(problem, bad_fix).kind == "wrong operation"


@pytest.mark.parametrize("kind,expected", [("slip", "arithmetic slip"), ("misread", "wrong operation")])
def test_flawed_prefix_ends_in_one_error_of_its_kind(pool, kind, expected):
    rng = random.Random(5)
    for problem in pool[:120]:
        prefix = routes.flawed_prefix(problem, kind, rng)
        assert prefix.endswith("\n") and routes.FIX_MARK not in prefix
        lines = prefix.rstrip("\n").split("\n")
        error = routes.first_route_error(problem, prefix + "\\boxed{0}")
        assert error is not None and error.kind == expected and error.line == len(lines) - 1
    with pytest.raises(ValueError, match="kind: expected one of"):
        routes.flawed_prefix(pool[0], "sign", rng)


def test_repair_and_reorder_mixes():
    traced = routes.SolutionMix(max_value=routes.TEACHER_MAX, rare_route_prob=0.0, slip_prob=0.5, misread_prob=1.0)
    pairs = routes.pretraining_texts(400, traced, seed=4)
    fixes = Counter(solution.count(routes.FIX_MARK) for _, solution in pairs)
    assert fixes == Counter({1: 400})  # every solution carries exactly one repaired flaw
    reorder = routes.SolutionMix(max_value=routes.STUDENT_MAX, rare_route_prob=0.3, slip_prob=0.0, reorder_prob=1.0)
    seen = Counter()
    for prompt, solution in routes.pretraining_texts(400, reorder, seed=4):
        problem = _problem_from_prompt(prompt)
        assert routes.first_route_error(problem, solution) is None and is_correct(solution, problem.answer)
        assert all(0 <= c <= routes.STUDENT_MAX for *_, c, _ in routes.parse_lines(solution))
        seen[routes.route_of(problem, solution)] += 1
    assert seen["reordered"] > 0.6 * sum(seen.values())  # the named routes only where no other order exists
    # the shipped world's mixes still give the texts it was built from: checksums of
    # pretraining_texts(200, mix, seed=2) under the routes code of commit d7eaf1b
    import hashlib
    import json

    for mix, digest in ((routes.STUDENT_MIX, "e48b13a32362b0ea3c5e1f62ecea16b4f03f649bf841518255c82f8a96df5272"),
                        (routes.TEACHER_MIX, "a3fd685d7f616ee94d5ea0ae8b82b18da2eb8355babf1814450ef4bdd47f0501")):
        texts = routes.pretraining_texts(200, mix, seed=2)
        assert hashlib.sha256(json.dumps(texts).encode()).hexdigest() == digest


def _problem_from_prompt(prompt):
    import re

    words = re.findall(r"(Start with|Add|Subtract) (\d+)", prompt)
    steps = [("+" if w == "Add" else "-", int(n)) for w, n in words[1:]]
    return routes.make_problem(int(words[0][1]), steps, source="check", index=0, max_value=routes.TEACHER_MAX)


@pytest.mark.parametrize("repair", routes.REPAIR_STYLES)
def test_dense_flaws_are_marked_and_repaired(repair):
    mix = routes.SolutionMix(max_value=routes.TEACHER_MAX, rare_route_prob=0.0, slip_prob=0.0, line_flaw_prob=0.4,
                             mask_flaws=True, repair=repair)
    flawed_lines = 0
    for prompt, solution in routes.pretraining_texts(300, mix, seed=8):
        problem = _problem_from_prompt(prompt)
        marked = [line for line in solution.split("\n") if line.startswith(routes.OUT_OF_LOSS)]
        flawed_lines += len(marked)
        text = solution.replace(routes.OUT_OF_LOSS, "")
        assert is_correct(text, problem.answer)  # every flaw is repaired: the answer stays right
        if repair == "fix_line":
            assert text.count(routes.FIX_MARK) == len(marked) and routes.first_route_error(problem, text) is None
        else:
            assert routes.FIX_MARK not in text
            assert (routes.first_route_error(problem, text) is None) == (not marked)
    assert 0.3 < flawed_lines / (300 * 3.5) < 0.5  # about line_flaw_prob of the lines (tiers 2-5: 3.5 on average)
    with pytest.raises(ValueError, match="repair: expected one of"):
        routes.ordered_text(50, [("+", 5)], repair="retry")


def test_misread_operand_edge_cases():
    rng = random.Random(0)
    # 20-20: every wrong operand must stay at or below 20 and differ from 20
    for _ in range(50):
        wrong = routes._misread_operand(rng, 20, "-", 20)
        assert wrong is not None and 0 < wrong < 20
    assert routes._misread_operand(rng, 1, "-", 1) is None  # 1-x >= 0 with x > 0 and x != 1: none
    assert routes._misread_operand(rng, 5, "-", 3, avoid=[("-", 1), ("-", 2), ("-", 4), ("-", 5)]) is None
    problem = routes.make_problem(20, [("+", 5), ("-", 25)], source="t", index=0)
    prefix = routes.flawed_prefix(problem, "misread", rng)
    assert routes.first_route_error(problem, prefix + "\\boxed{0}").kind == "wrong operation"
