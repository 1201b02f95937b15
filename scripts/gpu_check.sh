#!/usr/bin/env bash
# The vLLM rollout path on one CUDA GPU, in under 8 minutes (install included, if the wheels are
# reachable): sets up .venv-vllm/ with the `vllm` extra (scope_lib/bootstrap.py picks it where
# nvidia-smi answers), runs the tests marked `vllm` on CUDA (tests/test_vllm_engine.py), trains a
# few SCOPE steps of the smol world with vLLM rollouts, and prints rollout tokens/s of vLLM beside
# transformers on the same prompts (bench/vllm_rollouts.py, record under $OUT or /tmp).
#
#     bash scripts/gpu_check.sh            # from the repository root, on a machine with a GPU
set -euo pipefail
cd "$(dirname "$0")/.."
export SCOPE_VLLM_TARGET=cuda
nvidia-smi -L
start=$(date +%s)
stamp() { echo "[gpu_check +$(( $(date +%s) - start )) s] $*"; }

stamp "install + tests marked vllm (python3 -m scope_lib.bootstrap test-vllm)"
timeout 360 python3 -m scope_lib.bootstrap test-vllm -x -q

PY=.venv-vllm/bin/python
OUTDIR=${OUT:-/tmp}/gpu_check
mkdir -p "$OUTDIR"
stamp "3 SCOPE steps of the smol world with vLLM rollouts"
rm -rf "$OUTDIR/smol_run"
timeout 240 "$PY" -m scope_lib.train --config configs/smol.yaml --rollout.engine vllm --steps 3 \
  --optim.prompts_per_step 4 --optim.mini_batch_prompts 4 --rollout.group_size 4 --checkpoint_every 0 \
  --rollout.vllm_gpu_memory_utilization 0.3 --progress false --output_dir "$OUTDIR/smol_run"
"$PY" - "$OUTDIR/smol_run/metrics.jsonl" <<'PYEOF'
import json, sys
for line in open(sys.argv[1]):
    row = json.loads(line)
    print(f"step {row['step']}: accuracy {row.get('accuracy', float('nan')):.3f}, generation {row['time/generation']:.2f} s, "
          f"step {row['time/step']:.2f} s")
PYEOF

stamp "rollout tokens/s: vLLM beside transformers (smol, routes)"
timeout 180 "$PY" bench/vllm_rollouts.py --models smol routes --prompts 16 --samples 8 --max-new-tokens 128 \
  --repeats 2 --out "$OUTDIR/bench_vllm"
stamp "done"
