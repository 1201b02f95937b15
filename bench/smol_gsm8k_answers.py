"""What SmolLM2-135M-Instruct writes on GSM8K, and how the verifier reads it.

The Eq. 4 regime record (`data/eq4_regime_smol/`) graded 0 of 400 SmolLM2 answers correct, and
did not keep the texts. This samples answers the same way (`scope_lib.studies.preconditions.
measure_lm_regime`: the chat prompt asking for a `\\boxed{}` answer, `--k` answers to each of the
first `--problems` GSM8K test problems at `--temperature`, up to 256 new tokens, plain sampling
without top-p or top-k) and keeps, per answer: its text, whether it has a `\\boxed{}`, its verdict
with the verifier's default extraction (`boxed`, as the record and the `smol` preset grade) and
with `extract="last_number"` (GSM8K's `#### 18`, "the answer is 18", else the last number).

    SCOPE_BENCHMARKS_DIR=DIR python bench/smol_gsm8k_answers.py --problems 8 --k 4 --temperature 1.0 --out FILE.json

DIR/gsm8k/test.jsonl is GSM8K's test split. Writes JSON with the date, the CPU, the settings, the
counts and the answers.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
from scope_lib.common.machine import cpu_model  # noqa: E402  (after the path above)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=8)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    from scope_lib.studies.preconditions import measure_lm_regime
    from scope_lib.verify import extract_boxed, is_correct
    from scope_lib.worlds.benchmarks import load_benchmark

    start = time.perf_counter()
    _, table = measure_lm_regime(problems=args.problems, group_size=args.k, temperature=args.temperature, seed=args.seed)
    gold = {p.id: p.answer for p in load_benchmark("gsm8k", None, limit=args.problems)}
    answers = [{"problem": row.problem_id, "gold": gold[row.problem_id], "has_boxed": extract_boxed(row.text) is not None,
                "correct_boxed": bool(row.correct),
                "correct_last_number": is_correct(row.text, gold[row.problem_id], extract="last_number"),
                "text": row.text} for row in table.itertuples()]
    counts = {key: sum(a[key] for a in answers) for key in ("has_boxed", "correct_boxed", "correct_last_number")}
    record = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "machine": cpu_model(),
              "cores": os.cpu_count(), "seconds": round(time.perf_counter() - start, 1),
              "settings": {"problems": args.problems, "k": args.k, "temperature": args.temperature, "seed": args.seed,
                           "max_new_tokens": 256, "prompt": "scope_lib.smol.format_chat_prompt (boxed instruction)"},
              "answers_count": len(answers), "counts": counts, "answers": answers}
    print(json.dumps({k: v for k, v in record.items() if k != "answers"}, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
