"""Combine the per-estimator gate records (data/tiny_gate_<estimator>.json, written by
scope_lib/studies/gate.py) into data/tiny_gate.json and data/tiny_gate.md.

Run:  .venv/bin/python -m scope_lib.studies.gate_summary
"""

from __future__ import annotations

import json
from pathlib import Path

DATA = Path("data")
ORDER = ("exact_kl", "sampled", "sft")
LABELS = {"exact_kl": "OPD, exact full-vocabulary reverse KL (tiny-scale option)",
          "sampled": "OPD, sampled-token estimator (paper Eq. 3)",
          "sft": "supervised ceiling: SFT on ground truth, same prompts and steps (not on-policy)"}


# Runs stopped by hand leave no record; what was seen is noted here.
NOTES = [
    "Train seconds were measured on a shared, busy 2-core machine with 1 torch thread.",
    "Not in the sweep table: sampled estimator at lr 3e-3 collapsed (rollout accuracy ~0.06 by step 50); "
    "the run was stopped.",
]


def main():
    records = {e: json.loads((DATA / f"tiny_gate_{e}.json").read_text())
               for e in ORDER if (DATA / f"tiny_gate_{e}.json").exists()}
    if not records:
        raise SystemExit("no data/tiny_gate_<estimator>.json found; run python -m scope_lib.studies.gate first")
    (DATA / "tiny_gate.json").write_text(json.dumps(records, indent=1) + "\n")
    first = next(iter(records.values()))
    names = list(first["before"])
    k = first["settings"]["eval_k"]
    lines = [f"# Tiny gate: held-out Avg@{k} (temperature 0.6, {first['settings']['eval_per_set']} problems per set)", "",
             "| estimator | run | " + " | ".join(names) + " | train s | steps |",
             "|---|---|" + "---|" * len(names) + "---|---|",
             "| (base student) | before | " + " | ".join(f"{first['before'][n]:.3f}" for n in names) + " | | |"]
    for estimator, rec in records.items():
        for r in rec["runs"]:
            lines.append(f"| {estimator} | seed {r['seed']} | " + " | ".join(f"{r['after'][n]:.3f}" for n in names)
                         + f" | {r['train_seconds']} | {r['steps_done']} |")
    lines += ["", "| estimator | mean after | mean gain | seed std | seed range | gain > spread |", "|---|---|---|---|---|---|"]
    for estimator, rec in records.items():
        lines.append(f"| {estimator} | {rec['mean_after']:.4f} | {rec['mean_gain']:+.4f} | {rec['spread_after_std']:.4f} "
                     f"| {rec['range_after']:.4f} | {rec['gate_passed']} |")
    lines += [""] + [f"- `{e}`: {LABELS[e]}" for e in records]
    sweep = sorted(p for p in (DATA / "tiny_gate_sweep").glob("*.json") if not p.name.endswith(".history.json"))
    if sweep:
        lines += ["", "## Optimiser / estimator sweep (held-out Avg@k average; single runs unless seeds say otherwise)", "",
                  "| estimator | lr | adam eps | rollout T | prompts x samples | steps done | seeds | before | mean after | mean gain |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for path in sweep:
            rec = json.loads(path.read_text())
            st = rec["settings"]
            steps = "/".join(str(r["steps_done"]) for r in rec["runs"])
            lines.append(f"| {st['estimator']} | {st['lr']} | {st['adam_eps']} | {st['rollout_temperature']} | "
                         f"{st['prompts']} x {st['samples']} | {steps} | {len(rec['runs'])} | {rec['before']['average']:.3f} | "
                         f"{rec['mean_after']:.3f} | {rec['mean_gain']:+.3f} |")
    lines += ["", "Settings of the gate runs (grad-norm clip 1.0 and eval seed as recorded):"]
    for estimator, rec in records.items():
        st = rec["settings"]
        lines.append(f"- {estimator}: {st['prompts']} prompts x {st['samples']} rollout per step, rollout temperature "
                     f"{st['rollout_temperature']}, {st['optimizer']} lr {st['lr']} (eps {st['adam_eps']}, warm-up "
                     f"{st['warmup']} steps, weight decay {st['weight_decay']}), {st['steps']} steps, eval seed {st['eval_seed']}")
    lines += ["", *NOTES, ""]
    (DATA / "tiny_gate.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
