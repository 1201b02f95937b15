"""Choose each method's learning rate on a validation split, with the same budget for every method.

    python -m scope_lib.lr_selection --out data/lr_selection_tiny_routes [--model tiny_routes]

Every method of Table 1 (and OPD matched in rollouts) trains once per learning rate of one grid
(`LR_GRID`, the same trials for every method), on seed `SELECTION_SEED` (not one of the
evaluation seeds), and is scored by Avg@k on `tiny_validation`: training-side problems held out
from training, disjoint from the evaluation tiers. The best learning rate per method is written
to `configs/tiny_lr.yaml`, which `scope_lib.experiments` applies at `tiny` scale. A method that
collapses (validation Avg@k below the base student's) at every learning rate is reported as such.
The validation split exists for the route task (`scope_lib.routes.validation_set`), so the
models are a route world's (`--model`, default `tiny_routes`).

Not yet run: no world has passed its preconditions (`data/world_tiny_routes/`), and methods are
compared only on one that has.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

LR_GRID = (3e-4, 1e-3, 3e-3)
SELECTION_SEED = 100  # not an evaluation seed
VARIANTS = ("grpo", "kd", "opd", "opd_g8", "scope")
LR_FILE = Path(__file__).resolve().parents[1] / "configs" / "tiny_lr.yaml"


def select(scale: str = "tiny", *, model: str = "tiny_routes", variants=VARIANTS, grid=LR_GRID,
           seed: int = SELECTION_SEED, k: int = 4, smoke: bool = False, **overrides):
    """Train every variant x lr and score it on the validation split: (table, {variant: best lr})."""
    import pandas as pd

    from scope_lib.experiments import run_grid

    frames = []
    for lr in grid:
        df, _ = run_grid(scale, list(variants), [seed], smoke=smoke, include_base=True,
                         **{"optim.lr": lr, "data.eval_sets": ["tiny_validation"], "eval.k": k,
                            "model.student": model, "model.teacher": model, **overrides})
        frames.append(df.assign(lr=lr))
    table = pd.concat(frames, ignore_index=True)
    base = float(table.loc[table.variant == "base", "avg@k"].mean())
    runs = table[table.variant != "base"]
    wide = runs.pivot_table(index="variant", columns="lr", values="avg@k").reindex(list(variants))
    best = {variant: float(wide.loc[variant].idxmax()) for variant in wide.index}
    wide["best lr"] = [best[v] for v in wide.index]
    wide["collapsed at every lr"] = [bool((wide.loc[v, list(grid)] < base).all()) for v in wide.index]
    return wide, best, base


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for lr_selection.md")
    parser.add_argument("--model", default="tiny_routes", help="a route world (tiny_routes, tiny_routes_smoke)")
    parser.add_argument("--smoke", action="store_true", help="seconds-sized runs (with --model tiny_routes_smoke: tests)")
    parser.add_argument("--write-config", action="store_true", help=f"write the chosen lrs to {LR_FILE}")
    args = parser.parse_args(argv)
    wide, best, base = select(model=args.model, smoke=args.smoke)
    shown = wide.copy()
    for lr in LR_GRID:
        shown[lr] = (100 * shown[lr]).map(lambda v: f"{v:.1f}")
    shown.columns = [f"lr {c:g}" if isinstance(c, float) else c for c in shown.columns]
    text = (f"# Learning-rate selection ({'smoke' if args.smoke else 'tiny'} scale)\n\n"
            f"Validation Avg@4 (%) on `tiny_validation` (training-side problems held out from training, disjoint "
            f"from the eval tiers), seed {SELECTION_SEED}, one run per method and lr (the same {len(LR_GRID)} trials "
            f"for every method). Base student: {100 * base:.1f}.\n\n" + shown.to_markdown() + "\n\n"
            "Made by `python -m scope_lib.lr_selection --out <folder> --write-config`.\n")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "lr_selection.md").write_text(text)
    print(text)
    if args.write_config:
        LR_FILE.write_text("# Per-method learning rates at tiny scale, chosen by scope_lib.lr_selection on the\n"
                           "# validation split (see data/ for the table). Ablations and tau variants use scope's.\n"
                           + yaml.safe_dump({"lr": best}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
