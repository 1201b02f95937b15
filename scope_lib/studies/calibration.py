"""Calibration of the tiny world: teacher and base student measured with the
project's evaluator at the paper's evaluation settings scaled down (k samples, temperature 0.6).

Targets: teacher Avg@k >= 0.75 over all eval sets; base student Avg@k in [0.25, 0.55],
falling with difficulty; student Pass@k well above its Avg@k.

Writes data/tiny_calibration.csv (one row per model and set) and data/tiny_calibration.md.
Run:  .venv/bin/python -m scope_lib.studies.calibration [--k 8] [--per-set 100]
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import torch

from scope_lib.worlds import chain as tasks
from scope_lib.evaluate import evaluate
from scope_lib.worlds.models import build_tiny_world
from scope_lib.rollout import Sampling


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--per-set", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="1 is fastest on a shared 2-core machine")
    ap.add_argument("--out", type=Path, default=Path("data/tiny_calibration.csv"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    world = build_tiny_world()
    built = json.loads((world.path / "done.json").read_text())
    eval_sets = tasks.eval_sets(args.per_set)
    rows = []
    for name, model in (("teacher", world.teacher), ("student", world.student)):
        start = time.time()
        result = evaluate(model, world.tokenizer, eval_sets, k=args.k,
                          sampling=Sampling(temperature=0.6, max_new_tokens=64), seed=args.seed, progress=False)
        seconds = time.time() - start
        n_seq = args.k * sum(map(len, eval_sets.values()))
        for set_name, row in result.summary().items():
            rows.append({"model": name, "params": built[name]["params"], "set": set_name,
                         f"avg@{args.k}": round(row[f"avg@{args.k}"], 4),
                         f"pass@{args.k}": round(row[f"pass@{args.k}"], 4)})
        print(f"{name}: {result.summary()['average']}  ({n_seq / seconds:.0f} sequences/s)")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    sets = list(eval_sets) + ["average"]
    lines = [f"# Tiny-world calibration (k={args.k}, temperature 0.6, {args.per_set} problems per set)", "",
             "| model | params | " + " | ".join(f"{s} avg/pass" for s in sets) + " |",
             "|---|---|" + "---|" * len(sets)]
    for name in ("teacher", "student"):
        cells = {r["set"]: r for r in rows if r["model"] == name}
        lines.append(f"| {name} | {built[name]['params']:,} | " + " | ".join(
            f"{cells[s][f'avg@{args.k}']:.3f} / {cells[s][f'pass@{args.k}']:.3f}" for s in sets) + " |")
    lines += ["", f"World {world.path.name}; pretraining seconds: teacher {built['teacher']['seconds']}, "
              f"student {built['student']['seconds']} (on the machine that built it).", ""]
    args.out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
