"""Choose each method's learning rate on a validation split, with the same budget for every method.

    python -m scope_lib.experiments.lr_selection --out data/lr_selection_tiny_routes [--scale tiny] [--model tiny_routes] --write-config
    python -m scope_lib.experiments.lr_selection --out data/lr_selection_tiny_code --scale tiny_code --write-config
    ... --grid 3e-5,1e-4,3e-4,1e-3,3e-3   # another grid, the same for every method (e.g. one point
                                          # more where the best lrs sat at the grid's edge)

Every method of Table 1 (and OPD matched in rollouts) trains once per learning rate of one grid
(`LR_GRID`, the same trials for every method), on seed `SELECTION_SEED` (not one of the
evaluation seeds), and is scored by Avg@k on `tiny_validation`: training-side problems held out
from training, disjoint from the evaluation tiers. The best learning rate per method is written
to `configs/<scale>_lr.yaml`, which `scope_lib.experiments.grid` applies at that scale. A method that
collapses (validation Avg@k below the base student's) at every learning rate it tried is reported
as such.

The hybrid baseline (`hybrid`, docs/DESIGN.md §2.9) has a second setting, its teacher weight
`hybrid.beta`, chosen within the same number of trials (`hybrid_plan`): its learning rate on
the grid at the default beta with as many grid points left out as there are other betas to try
(the largest ones: its advantage is GRPO's plus a teacher term, so its steps are at least
GRPO's), then each other beta of `HYBRID_BETAS` at the chosen learning rate. The chosen beta
is written beside the learning rates (`hybrid_beta`).

The validation split exists for the route task and the code task (`routes.validation_set`,
`worlds.code.validation_set`), so at `tiny` scale the models are a route world's (`--model`,
default `tiny_routes`) and at `tiny_code` scale the code world's (`tiny_code`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import yaml

from scope_lib.experiments import grid as experiments
from scope_lib.common.paths import CONFIGS_DIR

LR_GRID = (1e-4, 3e-4, 1e-3, 3e-3)  # half-decades; 1e-4 since a three-point grid from 3e-4 put most best lrs at its lower edge
SELECTION_SEED = 100  # not an evaluation seed
VARIANTS = ("grpo", "kd", "opd", "opd_g8", "scope", "hybrid")
HYBRID_BETAS = (1.0, 0.3)  # the default (the lr stage runs at it) first, then the ones tried at the chosen lr
CONFIGS = CONFIGS_DIR
# The validation split's worlds per scale: (full, smoke).
MODELS = {"tiny": ("tiny_routes", "tiny_routes_smoke"), "tiny_code": ("tiny_code", "tiny_code_smoke")}
LR_FILE = CONFIGS / "tiny_lr.yaml"  # the default scale's
# Validation problems scored per trial (k samples each), apart from the eval tiers' size: a
# selection needs less noise than the preset's eval sets carry per seed.
VALIDATION_PROBLEMS = {"tiny": 400, "tiny_code": 200}


def lr_file(scale: str) -> Path:
    """The preset file `scope_lib.experiments.grid` reads the chosen settings of `scale` from."""
    return CONFIGS / f"{scale}_lr.yaml"


def hybrid_plan(grid=LR_GRID, betas=HYBRID_BETAS) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(the hybrid's lrs, tried at `betas[0]`; the betas then tried at the best of them): together
    `len(grid)` trials, every other method's budget. The largest lrs of `grid` are left out."""
    extra = len(betas) - 1
    if extra < 0 or len(set(betas)) != len(betas):
        raise ValueError(f"betas: expected distinct values, the default first, got {betas!r}")
    if len(grid) <= extra:
        raise ValueError(f"grid: {len(grid)} lrs leave no trial for the hybrid's lr beside {extra} other beta(s)")
    return tuple(sorted(grid)[: len(grid) - extra]), tuple(betas[1:])


class Selection(NamedTuple):
    wide: "object"  # DataFrame: validation Avg@k per variant (rows) and lr (columns), best lr, collapse flag
    best: dict[str, float]  # variant -> chosen lr
    base: float  # the base student's validation Avg@k
    hybrid_trials: "object"  # DataFrame: the hybrid's trials (lr, beta, avg@k); empty without it
    hybrid_beta: float | None  # the chosen beta (None without the hybrid)

    @property
    def trials(self) -> dict[str, int]:
        """Trained runs per variant (equal for every variant)."""
        counts = {v: int(self.wide.loc[v, [c for c in self.wide.columns if isinstance(c, float)]].notna().sum())
                  for v in self.wide.index}
        if len(self.hybrid_trials):
            counts["hybrid"] = len(self.hybrid_trials)
        return counts


def select(scale: str = "tiny", *, model: str | None = None, variants=VARIANTS, grid=LR_GRID, betas=HYBRID_BETAS,
           seed: int = SELECTION_SEED, k: int = 4, smoke: bool = False, **overrides) -> Selection:
    """Train every variant x lr (the hybrid: `hybrid_plan`) and score it on the validation split."""
    if model is None:
        if scale not in MODELS:
            raise ValueError(f"scale {scale!r}: the validation split needs a route or code world; name one with model=")
        model = MODELS[scale][smoke]
    hybrid_lrs, other_betas = hybrid_plan(grid, betas)
    common = {"data.eval_sets": ["tiny_validation"], "eval.k": k, "model.student": model, "model.teacher": model,
              **overrides}

    def scored(names, lr, beta):
        df, _ = experiments.run_grid(scale, list(names), [seed], smoke=smoke, include_base=True,
                         **{**common, "optim.lr": lr, "hybrid.beta": beta})
        return df[df.eval_set == "average"].assign(lr=lr, beta=beta)  # one row a run (the one set's score)

    frames = [scored([v for v in variants if v != "hybrid" or lr in hybrid_lrs], lr, betas[0]) for lr in grid]
    table = pd.concat(frames, ignore_index=True)
    base = float(table.loc[table.variant == "base", "avg@k"].mean())
    runs = table[table.variant != "base"]
    wide = runs.pivot_table(index="variant", columns="lr", values="avg@k").reindex(index=list(variants),
                                                                                  columns=list(grid))
    best = {variant: float(wide.loc[variant].idxmax()) for variant in wide.index}
    hybrid_trials, hybrid_beta = pd.DataFrame(columns=["lr", "beta", "avg@k"]), None
    if "hybrid" in variants:
        stage = [runs[runs.variant == "hybrid"]] + [scored(["hybrid"], best["hybrid"], b) for b in other_betas]
        trials = pd.concat(stage, ignore_index=True)
        hybrid_trials = trials[trials.variant == "hybrid"][["lr", "beta", "avg@k"]].reset_index(drop=True)
        at_lr = hybrid_trials[hybrid_trials.lr == best["hybrid"]]  # beta0 first: a tie keeps the default
        hybrid_beta = float(at_lr.loc[at_lr["avg@k"].idxmax(), "beta"])
    wide["best lr"] = [best[v] for v in wide.index]
    wide["collapsed at every lr"] = [bool((wide.loc[v, list(grid)].dropna() < base).all()) for v in wide.index]
    return Selection(wide, best, base, hybrid_trials, hybrid_beta)


def write_config(scale: str, selection: Selection, path: Path | None = None) -> Path:
    """Write the chosen lrs (and the hybrid's beta) where `scope_lib.experiments.grid` reads them."""
    path = path or lr_file(scale)
    chosen: dict = {"lr": dict(selection.best)}
    if selection.hybrid_beta is not None:
        chosen["hybrid_beta"] = selection.hybrid_beta
    path.write_text(f"# Per-method learning rates at {scale} scale (and the hybrid's teacher weight hybrid.beta), chosen\n"
                    "# by scope_lib.experiments.lr_selection on the validation split (see data/ for the table). Ablations and tau\n"
                    "# variants use scope's lr; hybrid_beta<value> variants the hybrid's.\n"
                    + yaml.safe_dump(chosen, sort_keys=True))
    return path


def report(scale: str, model: str, selection: Selection, *, k: int, smoke: bool, grid=LR_GRID,
           problems: int | None = None) -> str:
    """The markdown record of a selection."""
    shown = selection.wide.copy()
    for lr in grid:
        shown[lr] = (100 * shown[lr]).map(lambda v: "" if v != v else f"{v:.1f}")
    shown.columns = [f"lr {c:g}" if isinstance(c, float) else c for c in shown.columns]
    text = (f"# Learning-rate selection ({scale} scale{', smoke' if smoke else ''}, world {model})\n\n"
            f"Validation Avg@{k} (%) on `tiny_validation` ({f'{problems} ' if problems else ''}training-side problems held "
            f"out from training, disjoint "
            f"from the eval tiers), seed {SELECTION_SEED}, the same {len(grid)} trials for every method: one run per lr "
            f"of the grid, the hybrid's split between lrs and its teacher weight (scope_lib.experiments.lr_selection.hybrid_plan). "
            f"Base student: {100 * selection.base:.1f}.\n\n" + shown.to_markdown() + "\n\n")
    if selection.hybrid_beta is not None:
        trials = selection.hybrid_trials.assign(**{f"avg@{k} (%)": lambda d: (100 * d["avg@k"]).round(1)})
        text += (f"Hybrid trials (lr, then hybrid.beta at the chosen lr); chosen: lr {selection.best['hybrid']:g}, "
                 f"beta {selection.hybrid_beta:g}.\n\n" + trials.drop(columns=["avg@k"]).to_markdown(index=False) + "\n\n")
    scale_flag = "" if scale == "tiny" else f" --scale {scale}"
    grid_flag = "" if tuple(grid) == LR_GRID else " --grid " + ",".join(f"{lr:g}" for lr in grid)
    return text + f"Made by `python -m scope_lib.experiments.lr_selection --out <folder>{scale_flag}{grid_flag} --write-config`.\n"


def _grid(text: str) -> tuple[float, ...]:
    """`--grid`'s value: distinct, positive, finite learning rates, sorted."""
    try:
        lrs = [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--grid {text!r}: expected comma-separated numbers") from None
    if len(lrs) < 2 or len(set(lrs)) != len(lrs) or not all(0 < lr < float("inf") for lr in lrs):
        raise argparse.ArgumentTypeError(f"--grid {text!r}: expected at least two distinct positive finite learning rates")
    return tuple(sorted(lrs))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for lr_selection.md")
    parser.add_argument("--scale", default="tiny", choices=sorted(MODELS), help="the preset scale (configs/<scale>.yaml)")
    parser.add_argument("--model", default=None, help="the world scored on (default: tiny_routes at tiny scale, "
                                                      "tiny_code at tiny_code; their _smoke worlds with --smoke)")
    parser.add_argument("--smoke", action="store_true", help="seconds-sized runs (tests)")
    parser.add_argument("--grid", type=_grid, default=LR_GRID,
                        help=f"comma-separated learning rates tried for every method (default: {','.join(f'{lr:g}' for lr in LR_GRID)})")
    parser.add_argument("--write-config", action="store_true", help="write the chosen settings to configs/<scale>_lr.yaml")
    args = parser.parse_args(argv)
    model = args.model or MODELS[args.scale][args.smoke]
    k = 4
    sizes = {} if args.smoke else {"data.eval_problems_per_set": VALIDATION_PROBLEMS[args.scale]}
    selection = select(args.scale, model=model, smoke=args.smoke, k=k, grid=args.grid, **sizes)
    text = report(args.scale, model, selection, k=k, smoke=args.smoke, grid=args.grid,
                  problems=sizes.get("data.eval_problems_per_set"))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "lr_selection.md").write_text(text)
    print(text)
    if args.write_config:
        print(f"wrote {write_config(args.scale, selection)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
