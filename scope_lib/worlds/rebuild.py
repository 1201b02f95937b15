"""Rebuild a shipped tiny world from nothing and say how it compares with the shipped one.

    python -m scope_lib.worlds.rebuild tiny_routes            # build into the cache, compare
    python -m scope_lib.worlds.rebuild tiny_routes --ship     # ... and replace worlds/tiny_routes
    python -m scope_lib.worlds.rebuild tiny_routes --reuse-teacher DIR   # keep a built world's first
                                                             # teacher (route_world.FIRST_ROUTE_WORLD)
    python -m scope_lib.worlds.rebuild tiny_code --ship       # the code world (scope_lib.worlds.code_build)

The build stops each model at a measured accuracy (`scope_lib.worlds.routes_build.StopRule`; for the
code world, the greedy pass rate of hidden tests in the sandbox), not at a fixed step count, so a rebuild on another CPU lands near the same accuracy even where its
weights differ. The printed comparison gives, per model, whether the weights are bit-identical,
the largest parameter difference, and the greedy accuracy per eval set of both worlds.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from scope_lib.worlds import routes
from scope_lib.worlds.routes_build import greedy_accuracy
from scope_lib.worlds.tokenizer import load_tokenizer
from scope_lib.worlds.shipped import compare_worlds, export_world, format_comparison
from scope_lib.worlds import code_build as code_world
from scope_lib.worlds.routes_build import ROUTE_WORLD, build_route_world
from scope_lib.common.paths import WORLDS_DIR

BUILDABLE = ("tiny_routes", "tiny_code")


def accuracy_table(world_path: Path, *, per_set: int = 100, max_new_tokens: int = 96) -> dict[str, dict[str, float]]:
    """{model: {eval set or kind: greedy accuracy}} on the route world's eval sets."""
    import torch
    from transformers import LlamaForCausalLM

    torch.set_num_threads(max(1, torch.get_num_threads()))
    tokenizer = load_tokenizer(world_path / "tokenizer")
    sets = routes.eval_sets(per_set)
    table: dict[str, dict[str, float]] = {}
    for name in ("teacher", "student"):
        model = LlamaForCausalLM.from_pretrained(world_path / name).eval()
        row = {}
        for set_name, problems in sets.items():
            row[set_name] = greedy_accuracy(model, tokenizer, problems, max_new_tokens=max_new_tokens)
        pooled = [p for problems in sets.values() for p in problems]
        for kind in routes.KINDS:
            chosen = [p for p in pooled if p.meta["kind"] == kind]
            if chosen:
                row[f"kind:{kind}"] = greedy_accuracy(model, tokenizer, chosen, max_new_tokens=max_new_tokens)
        table[name] = row
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=BUILDABLE, help="the world to rebuild (a folder of worlds/)")
    parser.add_argument("--out", type=Path, default=None, help="build folder (default: a temporary folder)")
    parser.add_argument("--ship", action="store_true", help=f"replace {WORLDS_DIR}/<name> with the rebuilt world")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--reuse-teacher", type=Path, default=None,
                        help="tiny_routes: a built world (e.g. a checkout's worlds/tiny_routes before the re-derivation "
                             "stage) whose tokenizer and first teacher are copied instead of trained")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix=f"rebuild-{args.name}-"))
    out = args.out or work / "world"
    print(f"building {args.name} into {out} (teacher and student side by side, one thread each)", flush=True)
    if args.name == "tiny_code":
        code_world.build_code_world(code_world.CODE_WORLD, out, progress=not args.quiet)
        accuracy = code_world.accuracy_table(out)
    else:
        build_route_world(ROUTE_WORLD, out, progress=not args.quiet, reuse_teacher=args.reuse_teacher)
        accuracy = accuracy_table(out, max_new_tokens=ROUTE_WORLD.max_new_tokens)
    exported = work / "export"
    export_world(out, exported, build_record={"accuracy": accuracy})
    shipped = WORLDS_DIR / args.name
    if shipped.exists():
        print(format_comparison(compare_worlds(shipped, exported), labels=("shipped", "rebuilt")))
    else:
        print(f"no shipped world at {shipped} to compare with")
    if args.ship:
        if shipped.exists():
            shutil.rmtree(shipped)
        shutil.copytree(exported, shipped)
        print(f"shipped: {shipped}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
