"""Re-measure the SmolLM2-135M HumanEval slice under the entry-point extraction.

Runs `scope_lib.smol.humaneval_slice` once (the samples of `python -m scope_lib.smol humaneval
--problems 10 --k 4`) and grades the very same responses again with the old extractor (the last
fenced ```python block), so the two verdicts differ only by the program taken. Writes
`<out>/slice.txt` (the slice's lines and details) and `<out>/extraction.json` (per sample: both
programs' statuses; the samples graded differently and why).

    python bench/smol_extraction.py --out data/smol_extraction_<date>
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import time
from pathlib import Path

from scope_lib import grading, smol
from scope_lib.worlds.code_benchmarks import load_code_benchmark

_OLD_FENCE = re.compile(r"^```[ \t]*([\w+.-]*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def last_block(response: str) -> str | None:
    """The extractor before the entry-point extraction: the last fenced Python block, whatever it defines."""
    blocks = [body for language, body in _OLD_FENCE.findall(response)
              if language.lower() in ("", "python", "python3", "py", "py3")]
    return blocks[-1] if blocks else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--problems", type=int, default=10)
    parser.add_argument("--k", type=int, default=4)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    found = smol.humaneval_slice(args.problems, args.k)
    problems = load_code_benchmark("humaneval", limit=args.problems)
    texts = [t for row in found.texts for t in row]
    per_sample = [p for p in problems for _ in range(args.k)]
    new = grading.code_reports(texts, per_sample)
    # the old extractor, through the same sandbox path
    from scope_lib.grading.code import grade_many
    from scope_lib.grading import _code_tests

    tests = _code_tests(per_sample, 0.0)
    old_programs = [last_block(t) for t in texts]
    runnable = [i for i, p in enumerate(old_programs) if p is not None and p.strip()]
    old_reports = dict(zip(runnable, grade_many([old_programs[i] for i in runnable], [tests[i] for i in runnable])))
    rows, changed = [], []
    for i, text in enumerate(texts):
        new_program, new_report = new[i]
        old_report = old_reports.get(i)
        row = {"sample": f"{per_sample[i].id} #{i % args.k}",
               "old": old_report.status if old_report else "no code found",
               "new": new_report.status if new_report else "no code found",
               "same_program": (old_programs[i] or None) == (new_program or None)}
        rows.append(row)
        if not row["same_program"] or row["old"] != row["new"]:
            changed.append(row)
    count = lambda reports: sum(bool(r and r.correct) for r in reports)  # noqa: E731
    summary = {"samples": len(texts), "correct_old": count(old_reports.values()), "correct_new": count(r for _, r in new),
               "program_changed": sum(not r["same_program"] for r in rows),
               "verdict_changed": sum(r["old"] != r["new"] and ("passed" in (r["old"], r["new"])) for r in rows),
               "status_changed": sum(r["old"] != r["new"] for r in rows),
               "seconds": round(time.perf_counter() - start, 1), "machine": platform.processor() or platform.machine(),
               "settings": found.settings}
    (out / "extraction.json").write_text(json.dumps({"summary": summary, "changed": changed, "samples": rows}, indent=1))
    (out / "slice.txt").write_text("\n".join(found.details() + found.lines()) + "\n")
    (out / "responses.json").write_text(json.dumps(texts, indent=1))
    print(json.dumps(summary, indent=1))
    for row in changed:
        print(row)


if __name__ == "__main__":
    main()
