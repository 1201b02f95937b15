"""Power pilot: Table 1's own OPD and SCOPE runs (seeds 0-4, the preset's eval tiers, k = 16), cached
in the registry for the main job; prints the paired SCOPE - OPD Avg@k spread and the seeds 4% needs."""
import json, math, sys
import numpy as np
from scope_lib.experiments.grid import run_grid
from scope_lib.notebook import report
from scope_lib.common.stats import t_quantile

if __name__ == "__main__":
    seeds = list(range(int(sys.argv[1]) if len(sys.argv) > 1 else 5))
    df, _ = run_grid("tiny", ["opd", "scope"], seeds, include_base=True, **{"eval.k": 16})
    opd, scope = report.per_seed(df, "opd"), report.per_seed(df, "scope")
    d = np.array([scope[s] - opd[s] for s in seeds]) * 100
    sd = d.std(ddof=1); n = len(d)
    hw = t_quantile(0.95, n - 1) * sd / math.sqrt(n)
    level = 100 * np.mean([opd[s] for s in seeds])
    out = {"seeds": seeds, "opd": {s: 100 * opd[s] for s in seeds}, "scope": {s: 100 * scope[s] for s in seeds},
           "base": 100 * float(df[(df.variant == "base") & (df.eval_set == "average")]["avg@k"].mean()),
           "diff_mean": float(d.mean()), "diff_sd": float(sd), "half_width": float(hw), "opd_level": float(level),
           "half_width_relative_percent": float(100 * hw / level),
           "seeds_for_4pct": report.seeds_for_half_width(float(sd), 0.04 * level)}
    print(json.dumps(out, indent=1))
    json.dump(out, open("/work/build/pilot.json", "w"), indent=1)
