"""The route world's task: add/subtract chains with two valid solution routes.

A problem starts from a number and applies `n` additions and subtractions, written as in the
chain task (`scope_lib.worlds.chain`):

    Start with 50. Add 60. Subtract 40. Add 20.

Because addition and subtraction commute, any order of the operations is a valid worked
solution (one line per operation), and all end in the same `\\boxed{}` answer, graded by the
same verifier. Two orders are the named routes:

- route `inorder`: the operations in the order of the question (the usual route);
- route `subfirst`: every subtraction first, then every addition, each in question order
  (a legitimate reordering; it keeps the running value low);
- any other order is `reordered`; and route `direct` writes the answer alone, computed
  without written steps (the short route: a model answers it far less surely).

    inorder            subfirst
    50+60=110          50-40=10
    110-40=70          10+60=70
    70+20=90           70+20=90
    \\boxed{90}         \\boxed{90}

Which route a problem allows depends on the range of numbers a model can write. The student
only ever saw numbers 0..99 (`STUDENT_MAX`); the teacher also saw three-digit values up to
199 (`TEACHER_MAX`), the knowledge gap a larger model has. A problem is of kind

- `both`: both routes stay in 0..99;
- `subfirst_only`: the in-order route passes 99 (a three-digit value the student never
  wrote) while the subtract-first route stays in range. For the student such a problem is
  solved reliably only by the route the teacher rarely takes: this is where distilling the
  teacher's mode can cost coverage (the paper's Pass@k paradox, Fig. 1a);
- `inorder_only`: the subtract-first route would go below 0.

Who learned what (`SolutionMix`): the base student answers directly in 15% of its training
solutions, and writes `subfirst` on 20% of the `both` problems (and always on `subfirst_only`
ones): rarely practised routes, computed less surely, so its correct rollouts on them have a
higher perplexity, which is what Eq. 4 up-weights. The teacher writes `inorder` on 97% of what it can (its own
preferred route, three-digit values included), and also saw *slip-then-fix traces*: in 25%
of its solutions one line's result is wrong and the next line, `fix: a+b=c`, writes it again
correctly before the chain goes on. So the teacher can repair a student prefix that ends in
a wrong result, and cannot repair error kinds it never saw fixed (a wrong value copied into
the next line, a wrong operation); its perplexity on a prefix tells the two apart, which is
what Eq. 5 relies on (Fig. 1b, Tables 6-7).

Every problem has an addition before a subtraction, so its two routes write different lines.
Train and eval are disjoint by content (a content hash of the question, as in the chain
task). Eval sets `routes2`..`routes5` each hold one operation count.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Literal, NamedTuple

from scope_lib.problem import Problem
from scope_lib.worlds.chain import _is_eval_question, collect_problems  # the chain task's split rule

STUDENT_MAX = 99  # largest value in the student's training solutions (two digits)
TEACHER_MAX = 199  # the teacher also learned three-digit values up to here
MIN_START, MAX_START = 20, 90  # start values
MIN_OPERAND, MAX_OPERAND = 5, 50  # large enough that in-order chains often pass 99
TRAIN_TIERS = (2, 3, 4, 5)
EVAL_TIERS = {"routes2": 2, "routes3": 3, "routes4": 4, "routes5": 5}
ROUTES = ("inorder", "subfirst")  # the two step-by-step routes whose validity depends on the range
DIRECT = "direct"  # the short route: the answer alone, computed without written steps
KINDS = ("both", "subfirst_only", "inorder_only")
REPAIR_STYLES = ("fix_line", "carry")
FLAW_KINDS = ("slip", "misread")
OUT_OF_LOSS = "\x00"  # marks a training line left out of the loss (never in a model's text)
FIX_MARK = "fix: "  # starts the line that repeats a slipped line correctly (teacher traces)
RECHECK = "recheck"  # the route label of a solution that works the problem a second time
_RECHECK_LINE = re.compile(r"^Start with (\d+)\.$")  # starts a re-derivation: the question's start again
_WORDS = {"+": "Add {b}.", "-": "Subtract {b}."}
_LINE = re.compile(r"^(fix: )?(\d+)([+\-])(\d+)=(-?\d+)$")

Route = Literal["inorder", "subfirst"]


def route_steps(steps: list[tuple[str, int]], route: str) -> list[tuple[str, int]]:
    """The operations in the order `route` applies them."""
    if route == "inorder":
        return list(steps)
    if route == "subfirst":
        return [s for s in steps if s[0] == "-"] + [s for s in steps if s[0] == "+"]
    raise ValueError(f"route: expected one of {ROUTES}, got {route!r}")


def running_values(start: int, steps: list[tuple[str, int]]) -> list[int]:
    values, value = [], start
    for op, b in steps:
        value = value + b if op == "+" else value - b
        values.append(value)
    return values


def route_valid(start: int, steps: list[tuple[str, int]], route: str, max_value: int) -> bool:
    """Whether every running value of `route` stays in 0..max_value."""
    return all(0 <= v <= max_value for v in running_values(start, route_steps(steps, route)))


def kind_of(start: int, steps: list[tuple[str, int]]) -> str | None:
    """`both`, `subfirst_only`, `inorder_only` (for the student's 0..99), or None if neither."""
    inorder = route_valid(start, steps, "inorder", STUDENT_MAX)
    subfirst = route_valid(start, steps, "subfirst", STUDENT_MAX)
    if inorder and subfirst:
        return "both"
    if subfirst:
        return "subfirst_only"
    if inorder:
        return "inorder_only"
    return None


def routes_differ(steps: list[tuple[str, int]]) -> bool:
    """False when both routes write the same lines (all operations of one sign)."""
    return route_steps(steps, "inorder") != route_steps(steps, "subfirst")


def solution_text(start: int, steps: list[tuple[str, int]], route: str, *, slip: tuple[int, int] | None = None,
                  misread: tuple[int, int] | None = None, repair: str = "fix_line") -> str:
    """The worked solution along `route`; `slip=(line, delta)` writes that line's result off by
    `delta`, `misread=(line, operand)` writes that line with a wrong operand (its own arithmetic
    right); either is followed by a `fix:` line with the right line (teacher traces). Route
    `direct`: the boxed answer alone."""
    if route == DIRECT:
        return f"\\boxed{{{running_values(start, steps)[-1]}}}"
    return ordered_text(start, route_steps(steps, route), slip=slip, misread=misread, repair=repair)


def ordered_text(start: int, ordered: list[tuple[str, int]], *, slip: tuple[int, int] | None = None,
                 misread: tuple[int, int] | None = None, repair: str = "fix_line",
                 flaws: dict[int, tuple[str, int]] | None = None, mark_flaws: bool = False) -> str:
    """The worked solution applying the operations in the order given (`solution_text`'s lines).

    Flawed lines (teacher traces): `slip=(line, delta)`, `misread=(line, operand)`, or several
    at once as `flaws={line: ("slip", delta) or ("misread", operand)}`. `repair="fix_line"`
    follows each with a `fix:` line that writes it right; `"carry"` writes no fix line: the next
    line goes on from the right value. `mark_flaws` starts each flawed line with `OUT_OF_LOSS`
    (training data only: `worlds.routes_build.flaw_masked_batch` leaves those lines out of the loss).
    """
    if repair not in REPAIR_STYLES:
        raise ValueError(f"repair: expected one of {REPAIR_STYLES}, got {repair!r}")
    flaws = dict(flaws or {})
    if slip is not None:
        flaws[slip[0]] = ("slip", slip[1])
    if misread is not None:
        flaws[misread[0]] = ("misread", misread[1])
    lines, value = [], start
    for k, (op, b) in enumerate(ordered):
        new = value + b if op == "+" else value - b
        if k in flaws:
            kind, x = flaws[k]
            if kind == "misread":
                flawed = f"{value}{op}{x}={value + x if op == '+' else value - x}"
            elif kind == "slip":
                flawed = f"{value}{op}{b}={new + x}"
            else:
                raise ValueError(f"flaws: expected kinds {FLAW_KINDS}, got {kind!r} on line {k}")
            lines.append((OUT_OF_LOSS if mark_flaws else "") + flawed)
            if repair == "fix_line":
                lines.append(f"{FIX_MARK}{value}{op}{b}={new}")
        else:
            lines.append(f"{value}{op}{b}={new}")
        value = new
    lines.append(f"\\boxed{{{value}}}")
    return "\n".join(lines)


def make_problem(start: int, steps: list[tuple[str, int]], *, source: str, index: int,
                 max_value: int = STUDENT_MAX) -> Problem:
    """A Problem whose `solution` is the student's usual route (in-order when it is valid).

    `max_value`: the range a valid route must stay in (the teacher's `TEACHER_MAX` admits
    problems only the teacher can write out; their kind is None).
    """
    if not steps:
        raise ValueError("steps: expected at least one (op, operand) pair, got none")
    kind = kind_of(start, steps)
    valid = [r for r in ROUTES if route_valid(start, steps, r, max_value)]
    if not valid:
        raise ValueError(f"start {start}, steps {steps}: neither route stays in 0..{max_value}")
    question = f"Start with {start}. " + " ".join(_WORDS[op].format(b=b) for op, b in steps)
    route = "subfirst" if kind == "subfirst_only" or valid == ["subfirst"] else "inorder"
    answer = running_values(start, steps)[-1]
    return Problem(
        id=f"routes/{source}/{index}", question=question, answer=str(answer),
        solution=solution_text(start, steps, route), source=source, tier=len(steps),
        meta={"start": start, "steps": [list(s) for s in steps], "kind": kind,
              "routes_differ": routes_differ(steps)},
    )


def _draw(rng: random.Random, num_ops: int) -> tuple[int, list[tuple[str, int]]]:
    start = rng.randint(MIN_START, MAX_START)
    return start, [(rng.choice("+-"), rng.randint(MIN_OPERAND, MAX_OPERAND)) for _ in range(num_ops)]


def _sample(rng: random.Random, num_ops: int) -> tuple[int, list[tuple[str, int]]] | None:
    start, steps = _draw(rng, num_ops)
    final = running_values(start, steps)[-1]
    # Every problem has two distinct routes (some addition comes before some subtraction).
    if not 0 <= final <= STUDENT_MAX or not routes_differ(steps) or kind_of(start, steps) is None:
        return None
    return start, steps


def _generate(num: int, tiers: tuple[int, ...], *, seed: int, source: str, split: str, unique: bool) -> list[Problem]:
    rng = random.Random(f"routes:{source}:{seed}")

    def draw(index: int) -> Problem | None:
        drawn = _sample(rng, rng.choice(tiers))
        return None if drawn is None else make_problem(*drawn, source=source, index=index)

    return collect_problems(num, draw, source=source, split=split, unique=unique, attempts_per_problem=500)


def train_pool(num: int = 4096, *, seed: int = 0, tiers: tuple[int, ...] = TRAIN_TIERS) -> list[Problem]:
    """Training prompts: `num` distinct training-side problems, tiers mixed uniformly."""
    return _generate(num, tiers, seed=seed, source="train", split="train", unique=True)


def validation_set(num: int = 200, *, seed: int = 0, tiers: tuple[int, ...] = TRAIN_TIERS) -> list[Problem]:
    """Held-out training-side problems (never an eval question, drawn from their own stream):
    for stopping pretraining at an accuracy target and for choosing learning rates."""
    return _generate(num, tiers, seed=seed, source="validation", split="train", unique=True)


def eval_sets(num_per_set: int = 100, *, seed: int = 0) -> dict[str, list[Problem]]:
    """Held-out sets `routes2`..`routes5`, one operation count each."""
    return {name: _generate(num_per_set, (tier,), seed=seed, source=name, split="eval", unique=True)
            for name, tier in EVAL_TIERS.items()}


# ---------------------------------------------------------------------------------------------
# pretraining data: who writes which route


@dataclass(frozen=True)
class SolutionMix:
    """How one model's pretraining solutions are written."""

    max_value: int  # largest value the model's solutions may contain
    rare_route_prob: float  # P(subfirst) on problems where both step routes are valid for this model
    slip_prob: float  # P(one slip-then-fix line) per step-by-step solution
    direct_prob: float = 0.0  # P(the answer alone, no steps): the short route
    direct_max_ops: int = 5  # ... only on problems with at most this many operations
    misread_prob: float = 0.0  # P(one misread-operand-then-fix line) per step-by-step solution without a slip
    reorder_prob: float = 0.0  # P(another valid order than the two named routes), where one exists
    repair: str = "fix_line"  # how a trace repairs its flawed line: a `fix:` line, or "carry" (the next
    #                           line goes on from the right value, no marker)
    line_flaw_prob: float = 0.0  # > 0: each line is flawed on its own with this P (slip or misread, even
    #                              odds), instead of slip_prob / misread_prob's one flaw per solution
    mask_flaws: bool = False  # flawed lines out of the loss: the model learns to repair, not to err
    recheck_prob: float = 0.0  # P(a re-derivation trace): a first pass whose lines are each flawed with
    #                            P recheck_flaw_prob (slip or misread, carried on as a student would), then
    #                            `Start with S.` and a second, right pass from the question, which is boxed
    recheck_flaw_prob: float = 0.3


STUDENT_MIX = SolutionMix(max_value=STUDENT_MAX, rare_route_prob=0.2, slip_prob=0.0, direct_prob=0.15)
TEACHER_MIX = SolutionMix(max_value=TEACHER_MAX, rare_route_prob=0.03, slip_prob=0.25, direct_prob=0.0)
# The tokenizer's corpus (fixed, so the tokenizer does not change with the models' mixes).
_CORPUS_MIXES = (SolutionMix(max_value=STUDENT_MAX, rare_route_prob=0.2, slip_prob=0.0), TEACHER_MIX)


def _slip_delta(rng: random.Random, value: int) -> int:
    for _ in range(20):
        delta = rng.choice((-10, -2, -1, 1, 2, 10))
        if value + delta >= 0:
            return delta
    return 1


def _misread_operand(rng: random.Random, value: int, op: str, b: int, avoid=()) -> int | None:
    """A wrong operand like the student's misreadings (off by 1, 2 or 10, or digits swapped),
    keeping the line's result non-negative; `(op, operand)` pairs in `avoid` (the problem's
    other operations: writing one would be a valid reordering, not a misreading) are skipped.
    Else the nearest operand that fits; None if none does (e.g. `1-1`)."""
    def fits(wrong: int) -> bool:
        return wrong != b and wrong > 0 and (op == "+" or value - wrong >= 0) and (op, wrong) not in avoid

    for _ in range(20):
        choice = rng.choice(("+1", "-1", "+2", "-2", "+10", "-10", "swap"))
        wrong = int(str(b)[::-1]) if choice == "swap" else b + int(choice)
        if fits(wrong):
            return wrong
    return next((w for w in sorted(range(1, b + 200), key=lambda w: (abs(w - b), w)) if fits(w)), None)


def _other_order(rng: random.Random, start: int, steps: list[tuple[str, int]], max_value: int
                 ) -> list[tuple[str, int]] | None:
    """A random order of the operations, neither named route, whose running values stay in
    0..max_value (None if 20 shuffles find none)."""
    named = [route_steps(steps, r) for r in ROUTES]
    for _ in range(20):
        order = rng.sample(steps, len(steps))
        if order not in named and all(0 <= v <= max_value for v in running_values(start, order)):
            return order
    return None


def pretraining_texts(num: int, mix: SolutionMix, *, seed: int, tiers: tuple[int, ...] = TRAIN_TIERS) -> list[tuple[str, str]]:
    """`num` (prompt, solution) pairs on training-side questions (repeats allowed)."""
    rng = random.Random(f"routes:pretrain:{seed}")
    out = []
    while len(out) < num:
        start, steps = _draw(rng, rng.choice(tiers))
        if not 0 <= running_values(start, steps)[-1] <= STUDENT_MAX or not routes_differ(steps):
            continue
        valid = [r for r in ROUTES if route_valid(start, steps, r, mix.max_value)]
        if not valid:
            continue
        question = f"Start with {start}. " + " ".join(_WORDS[op].format(b=b) for op, b in steps)
        if _is_eval_question(question):
            continue
        if mix.direct_prob > 0 and len(steps) <= mix.direct_max_ops and rng.random() < mix.direct_prob:
            out.append((f"{question}\n", solution_text(start, steps, DIRECT)))
            continue
        if mix.reorder_prob > 0 and rng.random() < mix.reorder_prob:
            order = _other_order(rng, start, steps, mix.max_value)
            if order is not None:
                out.append((f"{question}\n", ordered_text(start, order)))
                continue
        if len(valid) == 2:
            route = "subfirst" if rng.random() < mix.rare_route_prob else "inorder"
        else:
            route = valid[0]
        if mix.recheck_prob > 0 and rng.random() < mix.recheck_prob:
            out.append((f"{question}\n", recheck_text(start, route_steps(steps, route), rng, mix.recheck_flaw_prob,
                                                        mark_flaws=mix.mask_flaws)))
            continue
        if mix.line_flaw_prob > 0:
            ordered = route_steps(steps, route)
            values = [start] + running_values(start, ordered)
            flaws = {}
            for k, (op, b) in enumerate(ordered):
                if rng.random() < mix.line_flaw_prob:
                    wrong = None if rng.random() < 0.5 else _misread_operand(rng, values[k], op, b, avoid=ordered)
                    flaws[k] = ("slip", _slip_delta(rng, values[k + 1])) if wrong is None else ("misread", wrong)
            out.append((f"{question}\n", ordered_text(start, ordered, flaws=flaws, repair=mix.repair,
                                                       mark_flaws=mix.mask_flaws)))
            continue
        slip = None
        if rng.random() < mix.slip_prob:
            line = rng.randrange(len(steps))
            value = running_values(start, route_steps(steps, route))[line]
            slip = (line, _slip_delta(rng, value))
        misread = None
        if slip is None and mix.misread_prob > 0 and rng.random() < mix.misread_prob:
            line = rng.randrange(len(steps))
            ordered = route_steps(steps, route)
            before = ([start] + running_values(start, ordered))[line]
            wrong = _misread_operand(rng, before, *ordered[line], avoid=ordered)
            misread = None if wrong is None else (line, wrong)
        out.append((f"{question}\n", ordered_text(start, route_steps(steps, route), slip=slip, misread=misread,
                                                   repair=mix.repair, mark_flaws=mix.mask_flaws)))
    return out



def carried_pass(start: int, ordered: list[tuple[str, int]], rng: random.Random, flaw_prob: float, *,
                 mark_flaws: bool = False) -> list[str]:
    """The step lines of a first pass in which each line is flawed with P `flaw_prob` (a misread
    operand or a slip, even odds) and the flaw is carried on into the next line, as a student's
    mistakes are (no fix line). `mark_flaws` starts each flawed line with `OUT_OF_LOSS`."""
    lines, value = [], start
    for op, b in ordered:
        flawed = rng.random() < flaw_prob
        misread = _misread_operand(rng, value, op, b, avoid=ordered) if flawed and rng.random() < 0.5 else None
        b_used = b if misread is None else misread
        c = value + b_used if op == "+" else value - b_used
        if flawed and misread is None:
            c += _slip_delta(rng, c)
        lines.append((OUT_OF_LOSS if flawed and mark_flaws else "") + f"{value}{op}{b_used}={c}")
        value = c
    return lines


def recheck_text(start: int, ordered: list[tuple[str, int]], rng: random.Random, flaw_prob: float, *,
                 mark_flaws: bool = False) -> str:
    """A re-derivation trace: a first pass (`carried_pass`, not boxed), then `Start with S.` and a
    right second pass in the same order, whose result is boxed. A model that learned this habit
    repairs a flawed prefix without having to find the flaw: it works the problem again."""
    first = carried_pass(start, ordered, rng, flaw_prob, mark_flaws=mark_flaws)
    return "\n".join(first) + f"\nStart with {start}.\n" + ordered_text(start, ordered)


def _split_recheck(text: str) -> tuple[str, str | None, int]:
    """(first pass, second pass or None, line index where the second pass starts) of a solution;
    the second pass begins after the last `Start with S.` line."""
    lines = text.split("\n")
    marks = [k for k, line in enumerate(lines) if _RECHECK_LINE.match(line.strip())]
    if not marks:
        return text, None, 0
    k = marks[-1]
    return "\n".join(lines[:k]), "\n".join(lines[k + 1:]), k + 1


def flawed_prefix(problem: Problem, kind: str, rng: random.Random) -> str:
    """A prefix of `problem`'s usual route that ends in one flawed line like the teacher's repair
    traces: an arithmetic slip (`kind="slip"`) or a misread operand (`"misread"`), on a random
    line, cut right before the `fix:` line. Ends with a newline."""
    if kind not in FLAW_KINDS:
        raise ValueError(f"kind: expected one of {FLAW_KINDS}, got {kind!r}")
    steps = [tuple(s) for s in problem.meta["steps"]]
    route = "subfirst" if problem.meta["kind"] == "subfirst_only" else "inorder"
    ordered = route_steps(steps, route)
    line = rng.randrange(len(ordered))
    values = [problem.meta["start"]] + running_values(problem.meta["start"], ordered)
    if kind == "slip":
        text = ordered_text(problem.meta["start"], ordered, slip=(line, _slip_delta(rng, values[line + 1])))
    else:
        wrong = _misread_operand(rng, values[line], *ordered[line], avoid=ordered)
        for other in rng.sample(range(len(ordered)), len(ordered)):  # a line that admits no misreading
            if wrong is not None:
                break
            line, wrong = other, _misread_operand(rng, values[other], *ordered[other], avoid=ordered)
        if wrong is None:
            raise ValueError(f"problem {problem.id}: no line of its route admits a misread operand")
        text = ordered_text(problem.meta["start"], ordered, misread=(line, wrong))
    lines = text.split("\n")
    return "\n".join(lines[: lines.index(next(x for x in lines if x.startswith(FIX_MARK)))]) + "\n"


def format_prompt(problem: Problem) -> str:
    return f"{problem.question}\n"


def corpus(num: int = 2000, *, seed: int = 0) -> list[str]:
    """Texts the tokenizer is trained on: both models' kinds of solutions."""
    half = num // 2
    pairs = (pretraining_texts(half, _CORPUS_MIXES[0], seed=seed)
             + pretraining_texts(num - half, _CORPUS_MIXES[1], seed=seed + 1))
    return [p + s for p, s in pairs]


# ---------------------------------------------------------------------------------------------
# reading a written solution: which route, and where it first goes wrong


def parse_lines(text: str) -> list[tuple[int, str, int, int, bool]] | None:
    """(a, op, b, c, is_fix) per step line before `\\boxed`, or None if a line is malformed."""
    out = []
    for line in text.split("\n"):
        line = line.strip()
        if line.startswith("\\boxed"):
            break
        match = _LINE.match(line)
        if match is None:
            return None
        out.append((int(match[2]), match[3], int(match[4]), int(match[5]), match[1] is not None))
    return out


def route_of(problem: Problem, text: str) -> str:
    """`inorder`, `subfirst`, `same` (both write these lines), `reordered` (another order of
    the problem's operations), `direct` (the answer alone), `recheck` (a second pass after
    `Start with S.`) or `other`.

    Judged on the (op, operand) sequence of the non-fix lines, whatever their values.
    """
    if _split_recheck(text)[1] is not None:
        return RECHECK
    if text.strip().startswith("\\boxed"):
        return DIRECT
    lines = parse_lines(text)
    if lines is None:
        return "other"
    steps = [tuple(s) for s in problem.meta["steps"]]
    written = [(op, b) for _, op, b, _, fix in lines if not fix]
    matches = [r for r in ROUTES if written == route_steps(steps, r)]
    if len(matches) == 2:
        return "same"
    if matches:
        return matches[0]
    return "reordered" if sorted(written) == sorted(steps) else "other"


class RouteError(NamedTuple):
    line: int  # 0-based index of the first wrong line in the text
    kind: str  # one of ROUTE_ERROR_KINDS
    detail: str

    def __str__(self) -> str:
        return f"{self.kind} ({self.detail})"


ROUTE_ERROR_KINDS = ("arithmetic slip", "carried a wrong value", "wrong operation", "malformed line",
                     "missing steps", "extra steps", "boxed answer differs", "no final answer", "wrong direct answer")


def first_route_error(problem: Problem, text: str) -> RouteError | None:
    """Where and how a solution first goes wrong, whatever order it takes the operations in.

    Each line `a op b = c` is checked: `a` against the previous result, `op b` against the
    operations not yet used (addition and subtraction commute, so any order is a valid route),
    `c = a op b`. A direct answer (no lines) is checked against the gold answer. A `fix:` line
    right after a slipped line that repeats it correctly repairs the slip, and one right after a
    line with a wrong operation that writes a valid next line instead repairs that (the
    teacher's traces), so neither is an error.

    A re-derivation (`Start with S.` after a first pass, then a second pass) is judged by its
    second pass: a right second pass is a right solution whatever the first pass wrote (the
    re-derivation repaired it). Otherwise the first error of the first pass (which must write
    every operation, unboxed), else of the second pass, with `line` counted in the whole text.
    """
    first, second, offset = _split_recheck(text)
    if second is not None:
        again = first_route_error(problem, second)
        if again is None:
            return None
        before = _first_pass_error(problem, first)
        return before if before is not None else again._replace(line=again.line + offset)
    steps = [tuple(s) for s in problem.meta.get("steps", [])]
    if not steps:
        return None
    lines = text.split("\n")
    if lines[0].strip().startswith("\\boxed"):
        if lines[0].strip() == f"\\boxed{{{problem.answer}}}":
            return None
        return RouteError(0, "wrong direct answer", f"line 1: {lines[0][:30]!r}")
    value, used, k = problem.meta["start"], 0, 0
    remaining = list(steps)  # operations not yet applied
    # a wrong line a fix may still repair: (a, op, b, line, kind, where)
    pending: tuple[int, str, int, int, str, str] | None = None
    while k < len(lines):
        line = lines[k].strip()
        if line.startswith("\\boxed"):
            break
        match = _LINE.match(line)
        where = f"line {k + 1}: {line[:30]!r}"
        if match is None:
            return RouteError(k, "malformed line", where)
        is_fix, a, op, b, c = match[1] is not None, int(match[2]), match[3], int(match[4]), int(match[5])
        true = a + b if op == "+" else a - b
        if pending is not None:
            slip_fixed = pending[4] == "arithmetic slip" and (a, op, b) == pending[:3]
            operation_fixed = pending[4] == "wrong operation" and a == value and (op, b) in remaining
            if is_fix and c == true and (slip_fixed or operation_fixed):
                if operation_fixed:
                    remaining.remove((op, b))
                    used += 1
                value, pending, k = c, None, k + 1
                continue
            return RouteError(pending[3], pending[4], pending[5])
        if used >= len(steps):
            return RouteError(k, "extra steps", where)
        if a != value:
            return RouteError(k, "carried a wrong value", where)
        if (op, b) not in remaining:
            pending = (a, op, b, k, "wrong operation", where)
            k += 1
            continue
        remaining.remove((op, b))
        used += 1
        if c != true:
            pending = (a, op, b, k, "arithmetic slip", f"line {k + 1}")
        else:
            value = c
        k += 1
    if pending is not None:
        return RouteError(pending[3], pending[4], pending[5])
    final = lines[k].strip() if k < len(lines) else ""
    if used < len(steps):
        return RouteError(k, "missing steps" if final.startswith("\\boxed") else "no final answer", f"after line {k}")
    if not final.startswith("\\boxed"):
        return RouteError(k, "no final answer", f"after line {k}")
    if final != f"\\boxed{{{value}}}":
        return RouteError(k, "boxed answer differs", f"last result {value}")
    return None


def _first_pass_error(problem: Problem, first: str) -> RouteError | None:
    """The first error of a re-derivation's first pass (its lines, unboxed): judged as a whole
    solution with the pass's own last value boxed, so only a line error or missing steps count."""
    lines = [line for line in first.split("\n") if line.strip()]
    if not lines:
        return RouteError(0, "missing steps", "an empty first pass")
    last = _LINE.match(lines[-1].strip())
    if last is None or any(line.strip().startswith("\\boxed") for line in lines):
        return first_route_error(problem, first)
    error = first_route_error(problem, "\n".join(lines) + f"\n\\boxed{{{last[5]}}}")
    return None if error is not None and error.kind == "boxed answer differs" else error


first_error = first_route_error  # the name every tiny task gives its error diagnosis (scope_lib.worlds.chain too)
