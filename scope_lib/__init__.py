"""scope_lib: companion library for SCOPE (Signal-Calibrated On-Policy Distillation Enhancement
with Dual-Path Adaptive Weighting).

Modules are small and flat, one paper concept each: `weights` (DPAW, Eq. 4-5), `losses`
(Eq. 1-3, 6 and the GRPO/OPD/KD baselines), `metrics` (Avg@k, Pass@k), `verify` (answer
checking), `tasks` (the tiny world's synthetic task), `benchmarks` (real benchmark loaders),
`models`, `rollout`, `evaluate`, `config` and `trainer`.
"""

__version__ = "0.1.0"
