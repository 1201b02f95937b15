"""Probe: a tiny_routes student trained on another solution mix, and its Eq. 4 preconditions.

    python data/world_tiny_routes/probes/student_mix.py OUT RARE_ROUTE_PROB REORDER_PROB

Builds a route world into OUT reusing the shipped tokenizer and teacher (route_world's
reuse_teacher), with the student trained on STUDENT_MIX except rare_route_prob and reorder_prob
(its stop rule unchanged), then measures the student-path preconditions on the first 256
training prompts (G = 8, temperature 1, as `python -m scope_lib.studies.preconditions`). Prints the
statistics and the log-PPL of correct rollouts per route; writes OUT/student_path.parquet.
"""
import dataclasses
import json
import sys
from pathlib import Path

import torch

from scope_lib.worlds import routes
from scope_lib.worlds.models import load_world_folder
from scope_lib.studies.preconditions import measure_student_path
from scope_lib.worlds.routes_build import ROUTE_WORLD, build_route_world

WORLD = Path(__file__).resolve().parents[3] / "worlds" / "tiny_routes"


def main():
    dest, rare, reorder = Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
    mix = dataclasses.replace(routes.STUDENT_MIX, rare_route_prob=rare, reorder_prob=reorder)
    config = dataclasses.replace(ROUTE_WORLD, student_mix=mix)
    if not (dest / "done.json").exists():
        build_route_world(config, dest, progress=False, reuse_teacher=WORLD)
    world = load_world_folder(dest, config)
    torch.set_num_threads(1)
    table, stats = measure_student_path(world.student, world.tokenizer, routes.train_pool()[:256], routes.format_prompt,
                                        routes.route_of, seed=0)
    print(json.dumps(stats, indent=1))
    table.to_parquet(dest / "student_path.parquet")
    print(table[table.correct].groupby("route")["log_ppl"].agg(["count", "mean", "std"]))


if __name__ == "__main__":
    main()
